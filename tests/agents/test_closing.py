"""close()/aclose() and with/async with on backends, the coordinator and checkpoints.

A process that uses fanout, closing things or not, exits with nothing on stderr: no ResourceWarning,
no ``Llama.__del__`` traceback.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import BackendError
from fanout.agents.fallback import FallbackBackend
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import Coordinator, Document, Request
from fanout.orchestrator.checkpoint import open_checkpoint
from tests.conftest import ROOT, LlamaServer

CALL = CompletionRequest(prompt=Prompt(instruction="Answer.", task="Q?", context="A."))
REQUEST = Request(documents=[Document(id="a.md", text="A.")], question="Q?")


def test_with_closes_and_a_closed_backend_refuses_calls() -> None:
    with ScriptedBackend(["yes"]) as backend:
        assert asyncio.run(backend.complete(CALL)).text == "yes"
    assert backend.closed
    backend.close()  # twice is harmless
    with pytest.raises(BackendError, match="closed"):
        asyncio.run(backend.complete(CALL))


def test_async_with_and_fallback_closes_both() -> None:
    primary, spare = ScriptedBackend(), ScriptedBackend()

    async def use() -> None:
        async with FallbackBackend(primary, spare):
            pass

    asyncio.run(use())
    assert primary.closed and spare.closed


def test_coordinator_owns_its_backend() -> None:
    backend = ScriptedBackend(["yes"])
    with Coordinator(backend, synthesis="collect") as coordinator:
        assert coordinator.run(REQUEST).answers[0].answer == "yes"
        assert not backend.closed
    assert backend.closed


def test_checkpoint_closes_both_connections(tmp_path: Path) -> None:
    with open_checkpoint(tmp_path / "run.db") as saved:
        coordinator = Coordinator(ScriptedBackend(["yes"]), synthesis="collect", **vars(saved))
        coordinator.run(REQUEST, run_id="r")
    with pytest.raises(sqlite3.ProgrammingError):
        saved.result_store.get("r", "x", "k")


@pytest.mark.integration
def test_llama_backends_share_a_model_until_the_last_closes(gemma_path: Path) -> None:
    from fanout.agents import llama_cpp

    first = llama_cpp.LlamaCppBackend(gemma_path, n_ctx=512, n_threads=2)
    second = llama_cpp.LlamaCppBackend(gemma_path, n_ctx=512, n_threads=2)
    assert first.llama is second.llama
    key = first._key
    first.close()
    assert key in llama_cpp._models
    assert asyncio.run(second.complete(CALL)).completion_tokens > 0
    with pytest.raises(BackendError, match="closed"):
        asyncio.run(first.complete(CALL))
    asyncio.run(second.aclose())
    assert key not in llama_cpp._models


@pytest.mark.integration
def test_openai_backends_close_the_shared_connections(
    llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fanout.agents import openai as openai_backend

    # A pool of this test's own: other tests' backends in this process may still use the shared one.
    monkeypatch.setattr(openai_backend, "_shared_http", None)
    monkeypatch.setattr(openai_backend, "_http_users", 0)

    async def use_two() -> None:
        async with (
            openai_backend.OpenAIBackend(
                "gemma", base_url=llama_server.base_url, endpoint="completions"
            ) as one,
            openai_backend.OpenAIBackend(
                "gemma", base_url=llama_server.base_url, endpoint="completions"
            ) as two,
        ):
            await asyncio.gather(one.complete(CALL), two.complete(CALL))
            assert openai_backend._shared_http is not None

    asyncio.run(use_two())
    assert openai_backend._shared_http is None


LIBRARY = textwrap.dedent(
    """
    import sys
    from fanout import Coordinator, Document, LlamaCppBackend, OpenAIBackend, Request

    request = Request(documents=[Document(id="a.md", text="Tom Becker manages it.")], question="Who?")
    local = LlamaCppBackend.default(n_ctx=512, n_threads=2)
    api = OpenAIBackend("gemma", base_url=sys.argv[1], endpoint="completions")
    if sys.argv[2] == "close":
        with Coordinator(local) as a, Coordinator(api) as b:
            a.run(request), b.run(request)
    else:  # left to interpreter exit
        Coordinator(local).run(request), Coordinator(api).run(request)
    print("done")
    """
)


@pytest.mark.integration
@pytest.mark.parametrize("ending", ["close", "exit"])
def test_a_library_user_exits_with_clean_stderr(llama_server: LlamaServer, ending: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", LIBRARY,
         llama_server.base_url, ending],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr
    assert proc.stderr == ""
