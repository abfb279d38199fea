"""One contract every backend passes: the scripted fake, llama.cpp in-process, an OpenAI-compatible
server (a real llama_cpp.server on loopback), LangChain's chat and completion models on that server,
and the wrappers (fallback, eval fault injection) around them."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fanout.agents._portal import run_sync
from fanout.agents.backend import Backend, Completion, CompletionRequest, Example, Prompt
from fanout.agents.errors import AuthenticationFailed, BackendUnavailable
from fanout.agents.fallback import FallbackBackend
from fanout.agents.testing import ScriptedBackend
from fanout.evals.faults import FaultSpec, FaultyBackend
from tests.conftest import LlamaServer, close_langchain_clients, free_port

PROMPT = Prompt(
    instruction="Answer the question using only the document.",
    context="The capital of France is Paris.",
    task="What is the capital of France?",
    examples=(Example(context="The sky is blue.", task="What colour is the sky?", answer="blue"),),
)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def scripted() -> Backend:
    return ScriptedBackend(fn=lambda r: '{"city": "Paris"}' if r.json_schema else "Paris")


@pytest.fixture(scope="session")
def langchain_backends(request: pytest.FixtureRequest) -> Iterator[dict[str, Backend]]:
    """LangChain's OpenAI chat and completion models on the real servers, one client each.

    langchain-openai's completion model owns its HTTP client: it lives as long as the model, as a
    user's would, instead of being dropped with open sockets after every test.
    """
    from langchain_openai import ChatOpenAI, OpenAI

    from fanout.agents.langchain import LangChainBackend

    chat_server: LlamaServer = request.getfixturevalue("smollm2_server")
    base_server: LlamaServer = request.getfixturevalue("llama_server")
    chat = ChatOpenAI(model="smollm2", base_url=chat_server.base_url, api_key="x", temperature=0)  # type: ignore[arg-type]
    llm = OpenAI(model="gemma", base_url=base_server.base_url, api_key="x", temperature=0)  # type: ignore[arg-type]
    yield {"langchain-chat": LangChainBackend(chat), "langchain-llm": LangChainBackend(llm)}
    close_langchain_clients(chat, llm)


@pytest.fixture(
    params=[
        pytest.param("scripted"),
        pytest.param("llama", marks=pytest.mark.integration),
        pytest.param("openai-completions", marks=pytest.mark.integration),
        pytest.param("openai-chat", marks=pytest.mark.integration),
        pytest.param("llama-chat", marks=pytest.mark.integration),
        pytest.param("openai-chat-instruct", marks=pytest.mark.integration),
        pytest.param("langchain-chat", marks=pytest.mark.integration),
        pytest.param("langchain-llm", marks=pytest.mark.integration),
        pytest.param("fallback"),
        pytest.param("fallback-to-llama", marks=pytest.mark.integration),
        pytest.param("faults-none"),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    from fanout.agents.openai import OpenAIBackend

    kind: str = request.param
    if kind == "scripted":
        return scripted()
    if kind == "fallback":  # every call fails on the primary and is answered by the fallback
        down = ScriptedBackend(fn=lambda r: BackendUnavailable("HTTP 503", status_code=503))
        return FallbackBackend(down, scripted())
    if kind == "fallback-to-llama":  # a dead endpoint first, the real local model second
        dead = OpenAIBackend(
            "m", base_url=f"http://127.0.0.1:{free_port()}/v1", schema_format="json_object"
        )
        return FallbackBackend(dead, request.getfixturevalue("llama_backend"))
    if kind == "faults-none":  # the eval's fault wrapper at rate zero is the backend it wraps
        return FaultyBackend(scripted(), FaultSpec())
    if kind in ("langchain-chat", "langchain-llm"):
        return request.getfixturevalue("langchain_backends")[kind]  # type: ignore[no-any-return]
    if kind == "openai-chat-instruct":
        server: LlamaServer = request.getfixturevalue("smollm2_server")
        # schema_format is left to detection: llama-cpp-python's server rejects the default one.
        return OpenAIBackend("smollm2", base_url=server.base_url, endpoint="chat")
    server = request.getfixturevalue("llama_server")
    return OpenAIBackend(
        "gemma",
        base_url=server.base_url,
        endpoint="completions" if kind == "openai-completions" else "chat",
    )


def complete(backend: Backend, **kwargs: Any) -> Completion:
    return asyncio.run(backend.complete(CompletionRequest(prompt=PROMPT, **kwargs)))


def test_completion_is_typed_and_counted(backend: Backend) -> None:
    c = complete(backend, max_tokens=8)
    assert isinstance(c, Completion)
    assert c.text == c.text.strip()
    assert c.prompt_tokens > 0
    assert 0 < c.completion_tokens <= 8 or c.text == ""
    assert c.latency_s >= 0
    assert backend.count_tokens("hello world") > 0


def test_model_answers_from_the_document(backend: Backend) -> None:
    """Base models through completion prompts, instruct models through their chat template."""
    if backend.name == "gemma" and backend.prompt_style == "chat":
        pytest.skip(
            "a base model behind a chat endpoint cannot answer: see test_base_model_on_chat"
        )
    assert "Paris" in complete(backend, max_tokens=16).text


@pytest.mark.integration
def test_in_process_chat_model_uses_its_template_and_stops_on_time(smollm2_backend: Any) -> None:
    assert smollm2_backend.prompt_style == "chat"
    out = complete(smollm2_backend, max_tokens=16)
    assert "Paris" in out.text and "<|im_end|>" not in out.text
    # A timeout cancels the worker thread's generation at its next token, chat path included.
    # The ~1,200-token document makes the call outlast the timeout whatever the model writes
    # (a short essay once finished inside 0.5 s on a quiet machine).
    document = " ".join(f"Fact {i}: the river {i} flows north." for i in range(80))
    long = CompletionRequest(
        prompt=PROMPT.model_copy(update={"context": document, "task": "Write a long essay."}),
        max_tokens=2000,
    )

    async def timed_out() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(smollm2_backend.complete(long), timeout=0.1)

    from fanout.agents._compute import compute_thread

    asyncio.run(timed_out())
    # The call may still be evaluating the prompt; once the compute thread is free, the context
    # holds the prompt and at most a token or two: an essay would have added hundreds.
    compute_thread().submit(lambda: None).result(timeout=60)
    generated = smollm2_backend.llama.n_tokens - smollm2_backend.count_tokens(document)
    assert generated < 150, f"generation went on after the timeout ({generated} tokens)"


@pytest.mark.integration
def test_in_process_calls_free_their_native_sampler_at_once(
    llama_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp-python leaves each call's sampler to the cyclic GC; the backend frees it itself."""
    llama = llama_backend.llama
    made: list[Any] = []
    original = llama._init_sampler

    def recording(*args: Any, **kwargs: Any) -> Any:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(llama, "_init_sampler", recording)
    complete(llama_backend, max_tokens=4)
    complete(llama_backend, max_tokens=24, json_schema=SCHEMA)
    assert len(made) == 2
    assert all(s.sampler is None for s in made), "a native sampler outlived its call"
    assert llama._sampler is None


def test_json_schema_is_enforced(backend: Backend) -> None:
    c = complete(backend, max_tokens=24, json_schema=SCHEMA)
    parsed = json.loads(c.text)
    assert isinstance(parsed, dict) and isinstance(parsed["city"], str)
    assert c.data == parsed


@pytest.mark.integration
def test_openai_errors_map_to_transient_and_permanent(gemma_path: Any, tmp_path: Any) -> None:
    from fanout.agents.openai import OpenAIBackend

    dead = OpenAIBackend("m", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(BackendUnavailable) as unreachable:
        asyncio.run(dead.complete(CompletionRequest(prompt=PROMPT)))
    assert unreachable.value.transient

    server = LlamaServer(gemma_path, api_key="right-key", log=tmp_path / "auth.log")
    try:
        wrong = OpenAIBackend("gemma", base_url=server.base_url, api_key="wrong-key")
        with pytest.raises(AuthenticationFailed) as rejected:
            asyncio.run(wrong.complete(CompletionRequest(prompt=PROMPT)))
        assert rejected.value.status_code == 401 and not rejected.value.transient
        from fanout.agents.errors import UserError

        with pytest.raises(UserError, match="API key rejected"):
            asyncio.run(wrong.check())
        right = OpenAIBackend("gemma", base_url=server.base_url, api_key="right-key",
                              endpoint="completions")  # fmt: skip
        assert asyncio.run(right.complete(CompletionRequest(prompt=PROMPT, max_tokens=4))).text
    finally:
        server.stop()


@pytest.mark.integration
def test_langchain_chat_model(llama_server: LlamaServer) -> None:
    from langchain_openai import ChatOpenAI

    from fanout.agents.langchain import LangChainBackend

    # The chat model and its HTTP client are the application's to close, on the loop that used
    # them (fanout's): LangChain models have no close method.
    http = httpx.AsyncClient()
    model = ChatOpenAI(
        model="gemma", base_url=llama_server.base_url, api_key="x", max_tokens=8, temperature=0,
        http_async_client=http,
    )  # type: ignore[call-arg]  # fmt: skip
    with LangChainBackend(model) as backend:
        c = asyncio.run(backend.complete(CompletionRequest(prompt=PROMPT)))
    run_sync(http.aclose())
    assert c.prompt_tokens > 0 and c.completion_tokens > 0
    assert c.model == "gemma"


def test_api_key_never_in_repr() -> None:
    from fanout.agents.openai import OpenAIBackend

    backend = OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", api_key="sk-secret-marker")
    assert "sk-secret-marker" not in repr(backend)
    assert "sk-secret-marker" not in str(vars(backend))


def test_scripted_backend_fails_loudly_on_unscripted_calls() -> None:
    backend = ScriptedBackend(["one"])
    assert complete(backend).text == "one"
    with pytest.raises(AssertionError):
        complete(backend)
    with pytest.raises(AssertionError, match="after the script ended"):
        backend.assert_consumed()


def test_a_2xx_answer_that_is_not_json_is_invalid_response() -> None:
    from fanout.agents.errors import InvalidResponse
    from fanout.agents.openai import OpenAIBackend
    from tests.conftest import StubHTTPServer

    def web_page(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, b"<html>a captive portal</html>"

    async def call(base_url: str) -> None:
        async with OpenAIBackend("m", base_url=base_url) as backend:
            await backend.complete(CompletionRequest(prompt=PROMPT))

    with StubHTTPServer(web_page) as server:
        with pytest.raises(InvalidResponse, match="not the API's JSON") as failure:
            asyncio.run(call(server.base_url))
    assert not failure.value.transient
