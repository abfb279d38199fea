"""Class 1 of issue 17: interrupts and cancellation lose no data.

Any signal (SIGINT, SIGTERM, SIGHUP, a second one) or cancellation stops the run, starts no new
call, prints one line and exits 128 + the signal; nothing cut off is recorded as a result, and a
rerun under the same run id answers every document (only successes are final).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import BackendClosed, BackendRejected, UserError
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import (
    CallPolicy,
    Coordinator,
    Document,
    MemoryResultStore,
    Request,
    RunContext,
)
from fanout.orchestrator._fingerprint import sub_task_key
from fanout.orchestrator.checkpoint import checkpoint_types
from tests.conftest import EXAMPLES, ROOT
from tests.hostile.runtime_support import (
    HoldingServer,
    exit_for,
    finish,
    start_cli,
    stored_ids,
    wait_for,
    write_docs,
)

QUESTION = "What is the access code for the ivory chest?"


def saver() -> InMemorySaver:
    return InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types()))


def docs(n: int) -> list[Document]:
    return [Document(id=f"d{i}", text=f"Document {i}: the code is {i}.") for i in range(n)]


def answer_by_document(request: CompletionRequest) -> str:
    return f"the code is {request.tags['document_id'][1:]}"


def stored(
    store: MemoryResultStore, coordinator: Coordinator, request: Request, run_id: str, i: int
) -> bool:
    """Whether document i's sub-result is in `store`, under its content key."""
    task = next(t for t in coordinator.plan(request).tasks if t.document_id == f"d{i}")
    key = sub_task_key(coordinator.kit.settings, task, coordinator.backend.prompt_style)
    return store.get(run_id, task.id, key) is not None


# -- the command line, on the real embedded model -------------------------------------------------


@pytest.mark.integration
def test_ctrl_c_on_the_embedded_model_stops_cleanly_and_a_rerun_answers_every_document(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "chests"
    folder.mkdir()
    for note in sorted((EXAMPLES / "chests").iterdir())[:4]:
        shutil.copy(note, folder / note.name)
    db = tmp_path / "rs.db"
    args = ["run", str(folder), "-q", QUESTION, "--run-id", "rs", "--checkpoint", str(db)]
    args += ["--threads", "2", "--max-tokens", "32"]
    first = start_cli(*args)
    wait_for(lambda: len(stored_ids(db)) >= 1, first, timeout_s=240)  # a sub-agent has finished
    os.killpg(first.pid, signal.SIGINT)  # to the whole process group, as Ctrl-C does
    _, err = finish(first, 240)

    assert first.returncode == 130, err  # not 139: no segmentation fault
    assert "Traceback" not in err and "is closed" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1] == f"fanout: interrupted; rerun with --run-id rs --checkpoint {db} to resume"
    assert sum("interrupted" in line for line in lines) == 1
    finished = stored_ids(db)
    assert 1 <= len(finished) < 4

    rerun = subprocess.run(
        [sys.executable, "-m", "fanout", *args, "--json", "--log-json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert [r["status"] for r in result["sub_results"]] == ["ok"] * 4
    events = [json.loads(line) for line in rerun.stderr.splitlines() if line.startswith("{")]
    sub_agents = {r["sub_agent_id"] for r in result["sub_results"]}
    called = {e.get("sub_agent_id") for e in events if e.get("event") == "sub_agent.call"}
    assert called & sub_agents == sub_agents - finished  # exactly the ones cut off


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGTERM],
        [signal.SIGHUP],
        [signal.SIGINT, signal.SIGINT],
        [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
    ],
    ids=["sigterm", "sighup", "ctrl-c-twice", "one-of-each"],
)
def test_any_stop_signal_cuts_the_call_in_flight_starts_none_and_loses_nothing(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    folder = write_docs(tmp_path / "docs", 5)
    db = tmp_path / "run.db"
    server = HoldingServer(hold_after=2)
    try:
        args = [
            "run", str(folder), "-q", "What is the code?", "--backend", "openai", "--model", "m",
            "--base-url", server.stub.base_url, "--synthesis", "collect",
            "--max-concurrency", "1", "--retries", "0", "--run-id", "r", "--checkpoint", str(db),
        ]  # fmt: skip
        first = start_cli(*args)
        wait_for(server.holding.is_set, first, timeout_s=60)  # the third call is in flight
        signalled_at = time.monotonic()
        for sig in signals:
            os.killpg(first.pid, sig)
        _, err = finish(first, 60)
        # It did not wait for the held call (the server never answered it) nor start another.
        assert not server.release.is_set()
        assert server.arrived_after(signalled_at) == 0
        # Signals pending together are handled lowest number first: any of them may be the one.
        assert first.returncode in {exit_for(sig) for sig in signals}, err
        lines = err.strip().splitlines()
        assert (
            lines[-1] == f"fanout: interrupted; rerun with --run-id r --checkpoint {db} to resume"
        )
        assert sum("interrupted" in line for line in lines) == 1 and "Traceback" not in err
        assert len(stored_ids(db)) == 2

        server.release.set()
        server.hold_after = None
        rerun = subprocess.run(
            [sys.executable, "-m", "fanout", *args, "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr
        # None lost, none computed twice; the cut-off call's late answer reached nobody.
        assert server.answered == {str(i): 1 + (str(i) in server.held) for i in range(5)}
        assert len(server.held) == 1
        result = json.loads(rerun.stdout)
        assert all(r["status"] == "ok" for r in result["sub_results"])
    finally:
        server.close()


def test_an_interrupted_run_without_a_checkpoint_says_nothing_was_saved(tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", 3)
    server = HoldingServer(hold_after=0)
    try:
        proc = start_cli(
            "run", str(folder), "-q", "What is the code?", "--backend", "openai", "--model", "m",
            "--base-url", server.stub.base_url, "--max-concurrency", "1",
        )  # fmt: skip
        wait_for(server.holding.is_set, proc, timeout_s=60)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = finish(proc, 60)
    finally:
        server.close()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "fanout: interrupted; nothing was saved (--run-id ID --checkpoint FILE.db make a run "
        "resumable)"
    )


# -- the library ----------------------------------------------------------------------------------


def test_a_blocking_run_interrupted_by_ctrl_c_stops_its_background_work() -> None:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("interrupt_run.py"))],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = json.loads(proc.stdout)
    assert 3 <= calls["at_interrupt"] < calls["of"]
    assert calls["after"] == calls["at_interrupt"], "calls started after the KeyboardInterrupt"


def test_cancelling_arun_starts_no_new_call_and_records_nothing_it_cut_off() -> None:
    asyncio.run(cancel_then_resume())


async def cancel_then_resume() -> None:
    both_slots_busy = asyncio.Event()

    async def answer(request: CompletionRequest) -> str:
        if request.tags["document_id"] != "d0":  # d0 answers at once; the others take a while
            if backend.n_calls == 3:
                both_slots_busy.set()  # cancelled now, no slot frees before the cancel lands
            await asyncio.sleep(1.0)
        return answer_by_document(request)

    backend = ScriptedBackend(fn=answer)
    checkpointer, store = saver(), MemoryResultStore()
    coordinator = Coordinator(
        backend,
        synthesis="collect",
        policy=CallPolicy(max_concurrency=2),
        checkpointer=checkpointer,
        result_store=store,
    )
    request = Request(documents=docs(10), question="What is the code?")
    run = asyncio.ensure_future(coordinator.arun(request, run_id="c"))
    await both_slots_busy.wait()
    run.cancel()
    at_cancel = backend.n_calls
    with pytest.raises(asyncio.CancelledError):
        await run
    left = asyncio.all_tasks() - {asyncio.current_task()}
    if left:  # whatever the run left behind runs out first
        await asyncio.wait(left, timeout=30)
    assert backend.n_calls == at_cancel, "calls started after the cancellation"
    state = (await coordinator.graph.aget_state(coordinator.config("c"))).values
    assert all(r.status == "ok" for r in state.get("sub_results", []))

    assert at_cancel == 3
    assert [i for i in range(10) if stored(store, coordinator, request, "c", i)] == [0]

    again = ScriptedBackend(fn=answer_by_document)
    resumed = await Coordinator(
        again, synthesis="collect", checkpointer=checkpointer, result_store=store
    ).arun(request, run_id="c")
    assert all(r.status == "ok" for r in resumed.sub_results) and len(resumed.sub_results) == 10
    assert sorted(c.tags["document_id"] for c in again.calls) == [f"d{i}" for i in range(1, 10)]


def test_a_sub_agent_raising_cancelled_error_is_that_sub_agents_failure() -> None:
    async def cancels_itself(ctx: RunContext) -> str:
        task, llm = ctx.task, ctx.model
        if task.document_id == "d1":
            raise asyncio.CancelledError
        return (await llm.complete(Prompt(instruction="i", task=task.task))).text

    result = Coordinator(
        ScriptedBackend(fn=answer_by_document), sub_agent=cancels_itself, synthesis="collect"
    ).run(Request(documents=docs(3), question="What is the code?"))
    assert [r.status for r in result.sub_results] == ["ok", "failed", "ok"]
    assert (result.sub_results[1].error or "").startswith("SubAgentCancelled: ")
    assert "the code is 2" in result.answer


@pytest.mark.parametrize("blocking", ["sleep", "spin"])
def test_a_sub_agent_that_blocks_its_thread_times_out_without_stalling_the_others(
    blocking: str,
) -> None:
    stop = threading.Event()

    async def blocks(ctx: RunContext) -> str:

        task, llm = ctx.task, ctx.model
        if task.document_id == "d0":
            if blocking == "sleep":
                stop.wait(60)  # time.sleep that a test can end: blocks the thread, not awaitable
            else:
                while not stop.is_set():  # a busy loop: never yields
                    pass
            return "the code is 0"
        return (await llm.complete(Prompt(instruction="i", task=task.task))).text

    try:
        result = Coordinator(
            ScriptedBackend(fn=answer_by_document),
            sub_agent=blocks,
            synthesis="collect",
            policy=CallPolicy(sub_agent_timeout_s=0.5),
        ).run(Request(documents=docs(4), question="What is the code?"))
        returned_while_blocked = not stop.is_set()
    finally:
        stop.set()
    assert returned_while_blocked
    assert [r.status for r in result.sub_results] == ["failed", "ok", "ok", "ok"]
    assert (result.sub_results[0].error or "").startswith("SubAgentTimeout: ")


def test_an_abandoned_sub_agent_starts_no_new_call() -> None:
    stop, resumed = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    async def slow_then_calls(ctx: RunContext) -> str:

        task, llm = ctx.task, ctx.model
        stop.wait(60)  # blocks past its deadline
        try:
            await llm.complete(Prompt(instruction="i", task=task.task))
            outcome["call"] = "made"
        except BaseException as exc:  # cancelled at its first await, or refused the call
            outcome["call"] = type(exc).__name__
            raise
        finally:
            resumed.set()
        return "late"

    backend = ScriptedBackend(fn=answer_by_document)
    result = Coordinator(
        backend,
        sub_agent=slow_then_calls,
        synthesis="collect",
        policy=CallPolicy(sub_agent_timeout_s=0.3),
    ).run(Request(documents=docs(1), question="Q"))
    stop.set()
    assert resumed.wait(30)
    assert result.sub_results[0].status == "failed"
    assert outcome["call"] in ("CancelledError", "BackendClosed") and backend.n_calls == 0


def test_a_resume_retries_stored_failures_whether_the_run_finished_or_stopped() -> None:
    request = Request(documents=docs(3), question="What is the code?")

    def d1_fails(request: CompletionRequest) -> str | BaseException:
        if request.tags["document_id"] == "d1":
            return BackendRejected("HTTP 400: refused")
        return answer_by_document(request)

    for policy in ("best_effort", "quorum=3"):
        checkpointer = saver()
        first = Coordinator(
            ScriptedBackend(fn=d1_fails),
            synthesis="collect",
            checkpointer=checkpointer,
            failure_policy=policy,
        )
        try:
            assert first.run(request, run_id="r").sub_results[1].status == "failed"
        except Exception as exc:  # quorum not met: the run stopped after its fan-out
            assert policy.startswith("quorum"), exc
        again = ScriptedBackend(fn=answer_by_document)
        result = Coordinator(
            again, synthesis="collect", checkpointer=checkpointer, failure_policy=policy
        ).run(request, run_id="r")
        assert [c.tags["document_id"] for c in again.calls] == ["d1"], policy
        assert [r.status for r in result.sub_results] == ["ok"] * 3
        assert "the code is 1" in result.answer
        done = ScriptedBackend()  # a finished run with no failure calls nothing
        Coordinator(done, synthesis="collect", checkpointer=checkpointer).run(request, run_id="r")
        assert done.n_calls == 0


def test_a_backend_closed_under_a_run_stops_it_and_records_nothing() -> None:
    backends: list[ScriptedBackend] = []

    def close_after_two(request: CompletionRequest) -> str:
        if backends[0].n_calls == 2:
            backends[0].closed = True  # as `close()` from another thread would
        return answer_by_document(request)

    backends.append(ScriptedBackend(fn=close_after_two))
    store = MemoryResultStore()
    coordinator = Coordinator(
        backends[0], synthesis="collect", policy=CallPolicy(max_concurrency=1), result_store=store
    )
    with pytest.raises(BackendClosed, match="closed"):
        coordinator.run(Request(documents=docs(5), question="Q"), run_id="x")
    request = Request(documents=docs(5), question="Q")
    kept = [i for i in range(5) if stored(store, coordinator, request, "x", i)]
    assert kept == [0, 1]  # the two answers are kept; the refused call is no result


def test_run_after_close_is_one_clear_error() -> None:
    backend = ScriptedBackend()
    coordinator = Coordinator(backend)
    coordinator.close()
    with pytest.raises(UserError, match="this Coordinator is closed"):
        coordinator.run(Request(documents=docs(2), question="Q"))
    assert backend.n_calls == 0


# -- the local model: closing while calls are queued ----------------------------------------------

CLOSE_WHILE_QUEUED = """
import asyncio, sys
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.llama_cpp import LlamaCppBackend

async def main():
    backend = LlamaCppBackend(sys.argv[1], n_ctx=512, n_threads=2, seed=17, n_parallel=1)
    request = CompletionRequest(prompt=Prompt(instruction="Write.", task="Count to fifty."),
                                max_tokens=48)
    calls = [asyncio.ensure_future(backend.complete(request)) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.to_thread(backend.close)  # frees the model once the running call is done
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    print(" ".join("ok" if not isinstance(o, BaseException) else type(o).__name__
                   for o in outcomes))

asyncio.run(main())
"""


@pytest.mark.integration
def test_closing_the_local_model_under_queued_calls_fails_them_instead_of_crashing(
    gemma_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLOSE_WHILE_QUEUED, str(gemma_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stderr)  # -11 was a segmentation fault
    outcomes = proc.stdout.split()
    assert len(outcomes) == 3 and outcomes[0] == "ok"
    assert outcomes[1:] == ["BackendClosed", "BackendClosed"]
