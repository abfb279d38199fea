"""`fanout run` against real servers: costs only with known prices, structured output by default
on llama_cpp.server, and a hint when a base model sits behind a chat endpoint."""

import json
from pathlib import Path

import pytest

from fanout.evals.bench.loopback import LoopbackServer
from tests.conftest import EXAMPLES, LlamaServer
from tests.orchestrator.test_cli import SUPPLIERS, assert_one_line_error, run_cli

QUESTION = "Who is the account manager?"
NAMES = {"harbor.md": "Tom Becker", "lumen.md": "Ana Ribeiro", "northwind.md": "Priya Shah"}


@pytest.fixture(scope="module")
def loopback() -> object:
    with LoopbackServer(0.0, in_process=True) as server:
        yield server


def loop_args(server: LoopbackServer, *extra: str) -> list[str]:
    return ["run", SUPPLIERS, "-q", QUESTION, "--backend", "openai", "--model", "loopback",
            "--base-url", server.base_url, "--synthesis", "collect", *extra]  # fmt: skip


def test_cost_is_shown_only_when_prices_are_known(
    capsys: pytest.CaptureFixture[str], loopback: LoopbackServer, tmp_path: Path
) -> None:
    code, out, _ = run_cli(capsys, *loop_args(loopback))
    assert code == 0 and "tokens" in out and "cost" not in out

    prices = tmp_path / "prices.toml"
    prices.write_text("[loopback]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n")
    code, out, _ = run_cli(capsys, *loop_args(loopback, "--prices", str(prices), "--json"))
    assert code == 0
    usage = json.loads(out)["usage"]
    expected = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 8.0) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected) and expected > 0
    code, out, _ = run_cli(capsys, *loop_args(loopback, "--prices", str(prices)))
    assert f"cost ${expected:.4f}" in out


def test_a_price_table_without_the_model_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], loopback: LoopbackServer, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}')
    code, _, err = run_cli(capsys, *loop_args(loopback, "--prices", str(prices)))
    assert code == 2
    assert_one_line_error(err, "has no entry for model 'loopback' (it lists: gpt-4o-mini)")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("missing.json", "cannot read output schema"),
        ("nomodule_xyz:Model", "cannot import nomodule_xyz"),
        ("json:JSONDecoder", "is not a pydantic model"),
        ("justaword", "takes module:Model or a JSON Schema file"),
    ],
)
def test_bad_output_schema_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], loopback: LoopbackServer, spec: str, fragment: str
) -> None:
    code, _, err = run_cli(capsys, *loop_args(loopback, "--output-schema", spec))
    assert code == 2
    assert_one_line_error(err, fragment)


@pytest.mark.integration
@pytest.mark.parametrize(
    "spec", [str(EXAMPLES / "schemas" / "contact.json"), "examples.schemas.contact:Contact"]
)
def test_output_schema_works_on_llama_cpp_server_by_default(
    capsys: pytest.CaptureFixture[str], smollm2_server: LlamaServer, spec: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(EXAMPLES.parent)  # module:Model is imported as from the project folder
    argv = ["run", SUPPLIERS, "-q", QUESTION, "--backend", "openai", "--model", "smollm2",
            "--base-url", smollm2_server.base_url, "--output-schema", spec,
            "--synthesis", "collect", "--json"]  # fmt: skip
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    result = json.loads(out)
    for sub in result["sub_results"]:
        assert sub["status"] == "ok" and set(sub["data"]) == {"name", "role"}
    # The 135M model fills the schema; it names the right person for most documents.
    right = [s for s in result["sub_results"] if NAMES[s["document_id"]] in s["data"]["name"]]
    assert len(right) >= 2, result["sub_results"]


@pytest.mark.integration
def test_base_model_behind_chat_endpoint_gets_a_hint(
    capsys: pytest.CaptureFixture[str], llama_server: LlamaServer
) -> None:
    argv = ["run", SUPPLIERS, "-q", QUESTION, "--backend", "openai", "--model", "gemma",
            "--base-url", llama_server.base_url, "--synthesis", "collect"]  # fmt: skip
    code, out, err = run_cli(capsys, *argv)
    # The run says what to do: each echoing call fails with EndpointMismatch naming the fix, or
    # (when the model answers "not found" to everything instead) a hint follows on stderr.
    assert code != 0 or "try --endpoint completions" in err, (out, err)
    assert "--endpoint completions" in " ".join((out + err).split()), (out, err)
    code, out, err = run_cli(capsys, *argv, "--endpoint", "completions")
    assert code == 0 and "--endpoint" not in err
    assert all(name in out for name in NAMES.values())


@pytest.mark.integration
def test_an_echoing_base_model_fails_with_what_to_do(llama_server: LlamaServer) -> None:
    import asyncio

    from fanout.agents.backend import CompletionRequest, Prompt
    from fanout.agents.errors import EndpointMismatch
    from fanout.agents.openai import OpenAIBackend

    # Without worked examples, the base model continues the server's default chat markup.
    prompt = Prompt(
        instruction="Answer the question using only the document.",
        context="Harbor Plastics. The account manager is Tom Becker.",
        task="Who is the account manager?",
    )
    backend = OpenAIBackend("gemma", base_url=llama_server.base_url, endpoint="chat")
    with pytest.raises(EndpointMismatch, match="use --endpoint completions") as raised:
        asyncio.run(backend.complete(CompletionRequest(prompt=prompt, max_tokens=60)))
    assert not raised.value.transient
