"""Token counts for OpenAI-compatible backends: the server's tokenizer where it has one, tiktoken for
OpenAI's models when its encoding can be loaded, else the estimate with one warning."""

from typing import Any

import pytest

from fanout.agents.backend import estimate_tokens
from fanout.agents.openai import OpenAIBackend
from fanout.evals.bench.loopback import LoopbackServer
from tests.conftest import LlamaServer
from tests.conftest import capture_events as capture_logs

TEXT = "Harbor Plastics raised its prices by 12 percent; granules now cost $1,450 per tonne."


def warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "tokens.estimated"]


@pytest.mark.integration
def test_llama_cpp_server_counts_with_the_models_tokenizer(
    llama_server: LlamaServer, llama_backend: Any
) -> None:
    backend = OpenAIBackend("gemma", base_url=llama_server.base_url, endpoint="completions")
    info = backend.server_info()
    assert info.kind == "llama-cpp-python" and info.schema_format == "json_object"
    with capture_logs() as logs:
        counts = [backend.count_tokens(t) for t in (TEXT, "", "one")]
    assert counts == [llama_backend.count_tokens(t) for t in (TEXT, "", "one")]
    assert counts[0] != estimate_tokens(TEXT)  # the estimate would have been something else
    assert backend.tokens.exact and not warnings(logs)


def test_a_server_without_a_tokenizer_estimates_and_says_so_once() -> None:
    with LoopbackServer(0.0, in_process=True) as server:
        backend = OpenAIBackend("loopback", base_url=server.base_url)
        with capture_logs() as logs:
            counts = [backend.count_tokens(TEXT) for _ in range(3)]
        assert backend.server_info().kind == "unknown"
        assert backend.server_info().schema_format == "json_schema"
    assert counts == [estimate_tokens(TEXT)] * 3
    (warning,) = warnings(logs)
    assert "has no tokenizer route" in warning["reason"] and warning["model"] == "loopback"


def test_openai_models_count_with_tiktoken_or_say_why_not(tmp_path: Any, monkeypatch: Any) -> None:
    """tiktoken downloads its encodings once; offline (as here) that fails and is logged once."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # nothing cached: a real first load
    backend = OpenAIBackend("gpt-4o-mini", api_key="sk-test")
    with capture_logs() as logs:
        counts = [backend.count_tokens(TEXT) for _ in range(2)]
    if backend.tokens.exact:  # the encoding could be downloaded: counts are tiktoken's
        import tiktoken

        assert counts == [len(tiktoken.get_encoding("o200k_base").encode(TEXT))] * 2
        assert not warnings(logs)
    else:
        assert counts == [estimate_tokens(TEXT)] * 2
        (warning,) = warnings(logs)
        assert "tiktoken could not load its encoding" in warning["reason"]
