"""Large fan-outs: sub-agents run in waves of supersteps, results stream to the store as they finish,
and an interrupted multi-wave run resumes without recomputing finished sub-agents."""

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import (
    CallPolicy,
    Coordinator,
    Document,
    MemoryResultStore,
    Request,
    SqliteResultStore,
    SubResult,
)
from fanout.orchestrator.context import RunContext, RunHooks
from fanout.orchestrator.kit import wave_size

N = 2 * wave_size(4) + 37  # three waves at concurrency 4


def request(n: int = N) -> Request:
    documents = tuple(Document(id=f"d{i:05d}", text=f"text {i}") for i in range(n))
    return Request(documents=documents, question="Q")


def answer(r: CompletionRequest) -> str:
    return f"A {r.tags['document_id']}"


def test_a_fan_out_larger_than_a_wave_runs_in_waves_and_keeps_request_order() -> None:
    backend = ScriptedBackend(fn=answer)
    coordinator = Coordinator(backend, synthesis="collect", policy=CallPolicy(max_concurrency=4))
    nodes = [
        node
        for update in coordinator.graph.stream({"request": request(), "run_id": "r"})
        for node in update
    ]
    assert nodes.count("dispatch") == 4  # three waves, then the empty one that moves on
    assert nodes.count("sub_agent") == N
    result = coordinator.run(request())
    assert [a.answer for a in result.answers] == [f"A d{i:05d}" for i in range(N)]
    assert [r.document_id for r in result.sub_results] == [f"d{i:05d}" for i in range(N)]
    assert backend.max_in_flight <= 4


class _HitCountingStore(MemoryResultStore):
    """The in-memory store, noting which sub-agents a run found already finished."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: set[str] = set()

    def get(self, run_id: str, sub_agent_id: str, key: str) -> SubResult | None:
        found = super().get(run_id, sub_agent_id, key)
        if found is not None:
            self.hits.add(sub_agent_id)
        return found


def test_interrupted_multi_wave_run_resumes_without_recomputing() -> None:
    store, saver = _HitCountingStore(), InMemorySaver()

    class Interrupt(Exception):
        pass

    class StopInSecondWave(RunHooks):
        def __init__(self) -> None:
            self.seen: set[str] = set()

        async def on_sub_agent_end(self, ctx: RunContext, result: SubResult) -> None:
            self.seen.add(result.sub_agent_id)
            if len(self.seen) == wave_size(4) + 100:
                raise Interrupt

    def coordinator(backend: ScriptedBackend) -> Coordinator:
        return Coordinator(
            backend,
            synthesis="collect",
            policy=CallPolicy(max_concurrency=4),
            checkpointer=saver,
            result_store=store,
        )

    observer = StopInSecondWave()
    first = ScriptedBackend(fn=answer, delay_s=0.002)  # the interrupt lands mid-wave
    with pytest.raises(Interrupt):
        coordinator(first).run(request(), run_id="big", hooks=observer)
    # The run stopped there: its other sub-agents were cancelled, not left running.
    assert first.n_calls < N
    again = ScriptedBackend(fn=answer)
    resumed = coordinator(again).run(request(), run_id="big")
    recomputed = [t.tags["sub_agent_id"] for t in again.calls]
    # Finished sub-agents come back with the graph's checkpoint or from the result store; only
    # what never finished is computed, each once.
    assert recomputed, "nothing was left to resume"
    assert not set(recomputed) & observer.seen, "a finished sub-agent was computed again"
    assert not set(recomputed) & store.hits
    assert len(recomputed) == len(set(recomputed)) <= N - len(observer.seen)
    assert [a.answer for a in resumed.answers] == [f"A d{i:05d}" for i in range(N)]


def test_results_reach_the_sqlite_store_while_the_run_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    store = SqliteResultStore(db)
    stored_when_seen: list[int] = []

    class Watch(RunHooks):
        seen = 0

        async def on_sub_agent_end(self, ctx: RunContext, result: SubResult) -> None:
            self.seen += 1
            if self.seen % 500 == 0:
                with sqlite3.connect(db) as conn:  # another connection: only committed rows
                    (count,) = conn.execute("SELECT COUNT(*) FROM fanout_sub_results").fetchone()
                stored_when_seen.append(count)

    coordinator = Coordinator(
        ScriptedBackend(fn=answer, delay_s=0.001),
        synthesis="collect",
        policy=CallPolicy(max_concurrency=16),
        result_store=store,
    )
    coordinator.run(request(2000), run_id="s", hooks=Watch())
    # Each result is committed before its sub-agent's node returns, so before the observer hears;
    # the run is far from over when the first ones are already on disk.
    assert [min(c, 500 * (i + 1)) for i, c in enumerate(stored_when_seen)] == [
        500,
        1000,
        1500,
        2000,
    ]
    assert stored_when_seen[0] < 1000
    store.close()


def test_concurrent_puts_are_each_durable_when_they_return(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteResultStore(db)
    missing: list[str] = []

    def put(i: int) -> None:
        result = SubResult(sub_agent_id=f"s{i}", document_id="d", task="q", status="ok", output="x")
        store.put("r", result, "k")
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT 1 FROM fanout_sub_results WHERE sub_agent_id = ?", (f"s{i}",)
            ).fetchone()
        if row is None:
            missing.append(f"s{i}")

    threads = [threading.Thread(target=put, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missing == []
    assert store.get("r", "s63", "k") is not None
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):  # a closed store fails the put, loudly
        store.put("r", SubResult(sub_agent_id="late", document_id="d", task="q", status="ok"), "k")


def test_result_store_writes_do_not_block_the_event_loop(tmp_path: Path) -> None:
    """The store is written from worker threads, so other coroutines keep running meanwhile."""
    store = SqliteResultStore(tmp_path / "loop.db")
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        coordinator = Coordinator(
            ScriptedBackend(fn=answer), synthesis="collect", result_store=store
        )
        await coordinator.arun(request(50), run_id="loop")
        stop.set()
        await task

    asyncio.run(main())
    assert ticks > 50
    store.close()
