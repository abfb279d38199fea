"""Section "scale" (``fanout bench --scale``): one process, up to 100,000 sub-agents in one run.

Each size runs in a fresh process on the scripted backend (1 ms latency, 256 calls in flight), with
every result written to a SQLite result store (the checkpoint database's table) the moment it
finishes. The figures: wall time per sub-agent as the run grows (the coordinator must stay linear),
peak RSS, and how many results were already on disk when half of them had been reported (results
stream to the store; they are not written at the end).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator.context import RunContext, RunHooks
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.result import SubResult
from fanout.orchestrator.store import SqliteResultStore

from .section import Section, run_probe
from .workload import bench_request

__all__ = ["ScaleRun", "ScaleSection", "measure_scale", "scale_probe"]

GROWTH_GOAL = 1.2
"""Most wall time per sub-agent may grow from the smallest run to the largest."""
RSS_GOAL_MB = 1e9 / 2**20
"""1 GB, in MiB."""


class ScaleRun(Section):
    """One run of the scale section, in its own process."""

    n: int
    """Sub-agents."""
    wall_s: float
    """Wall time of the whole run, split to answer."""
    per_sub_agent_ms: float
    """wall_s / n, in ms."""
    peak_rss_mb: float
    """Peak RSS of the process, MiB (the request's documents included)."""
    stored: int
    """Rows in the result store after the run (every sub-agent's result)."""
    stored_at_half: int
    """Rows already committed when half the results had been reported to the observer."""

    def summary(self) -> str:
        """One size's figures."""
        return (
            f"N={self.n:,}: {self.wall_s:.1f} s ({self.per_sub_agent_ms:.3f} ms/sub-agent), "
            f"peak {self.peak_rss_mb:.0f} MiB, {self.stored:,} stored "
            f"({self.stored_at_half:,} when half were reported)"
        )


class ScaleSection(Section):
    """How wall time per sub-agent and memory grow from the smallest to the largest run."""

    latency_s: float
    """The scripted backend's delay per call."""
    max_concurrency: int
    """Calls in flight at once."""
    runs: list[ScaleRun]
    """One per size, smallest first."""
    growth: float
    """Largest run's ms per sub-agent over the smallest's."""

    def summary(self) -> str:
        """Every size, the growth of time per sub-agent, and the largest run's peak RSS."""
        sizes = "; ".join(r.summary() for r in self.runs)
        return (
            f"scripted backend, {self.latency_s * 1000:g} ms latency, concurrency "
            f"{self.max_concurrency}: {sizes}; time per sub-agent x{self.growth:.2f} from "
            f"N={self.runs[0].n:,} to N={self.runs[-1].n:,}"
        )


class _HalfwayCount(RunHooks):
    """Counts the store's committed rows (through a second connection) when half are reported."""

    def __init__(self, db: Path, n: int) -> None:
        self.db, self.half, self.seen, self.at_half = db, n // 2, 0, 0

    async def on_sub_agent_end(self, ctx: RunContext[Any], result: SubResult) -> None:
        self.seen += 1
        if self.seen == self.half:
            self.at_half = _rows(self.db)


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM fanout_sub_results").fetchone()
    return int(count)


def scale_probe(n: int, latency_s: float, max_concurrency: int) -> None:
    """Child-process entry point: one run of `n` sub-agents, then its figures as JSON."""
    import resource

    request = bench_request(n)
    backend = ScriptedBackend(fn=lambda _request: "7%", delay_s=latency_s, record=False)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "checkpoint.db"
        store = SqliteResultStore(db)
        coordinator = Coordinator(
            backend,
            synthesis="collect",
            policy=CallPolicy(max_concurrency=max_concurrency),
            result_store=store,
        )
        observer = _HalfwayCount(db, n)
        started = time.perf_counter()
        result = coordinator.run(request, hooks=observer)
        wall = time.perf_counter() - started
        store.close()
        stored = _rows(db)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {
        "n": n,
        "ok": result.ok and len(result.sub_results) == n,
        "wall_s": wall,
        "peak_rss_mb": peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024,
        "stored": stored,
        "stored_at_half": observer.at_half,
    }
    sys.stdout.write(json.dumps(report) + "\n")


def _run(n: int, latency_s: float, max_concurrency: int) -> ScaleRun:
    code = f"from {__name__} import scale_probe; scale_probe({n}, {latency_s!r}, {max_concurrency})"
    data = run_probe(code, f"scale probe N={n}")
    if not data["ok"]:
        raise RuntimeError(f"scale probe N={n}: the run lost sub-agents")
    return ScaleRun(
        goal=f"<= {RSS_GOAL_MB:.0f} MiB peak; every result stored",
        met=data["peak_rss_mb"] <= RSS_GOAL_MB and data["stored"] == n,
        n=n,
        wall_s=data["wall_s"],
        per_sub_agent_ms=data["wall_s"] / n * 1000,
        peak_rss_mb=data["peak_rss_mb"],
        stored=data["stored"],
        stored_at_half=data["stored_at_half"],
    )


def measure_scale(
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000),
    *,
    latency_s: float = 0.001,
    max_concurrency: int = 256,
) -> ScaleSection:
    """One run per size, smallest first, each in a fresh process."""
    runs = [_run(n, latency_s, max_concurrency) for n in sorted(sizes)]
    growth = runs[-1].per_sub_agent_ms / runs[0].per_sub_agent_ms
    return ScaleSection(
        goal=(
            f"time per sub-agent grows <= {GROWTH_GOAL}x from the smallest run to the largest; "
            f"peak RSS <= 1 GB ({RSS_GOAL_MB:.0f} MiB); every result streamed to the store"
        ),
        met=growth <= GROWTH_GOAL and all(r.met for r in runs),
        latency_s=latency_s,
        max_concurrency=max_concurrency,
        runs=runs,
        growth=growth,
    )
