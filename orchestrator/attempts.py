"""Attempts at a run: only successes are final, so each new attempt retries what failed before.

A run that stops (Ctrl-C, a crash, a failure policy) and is run again under the same id is a new
attempt. Its first dispatch sends every sub-task without a successful result, the failures of
earlier attempts included; within one attempt a failure is final (its retries were the call
policy's). What an attempt has sent lives in memory, never in the checkpoint, so every resume
starts a fresh one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fanout.agents.task import SubTask, cut_parent

from .result import SubResult

__all__ = ["Attempt", "Attempts", "ordered"]

MAX_ATTEMPTS_KEPT = 1024
"""Attempts remembered for runs driven through the graph directly (nobody calls `Attempts.end`)."""


def ordered(tasks: list[SubTask], results: list[SubResult]) -> list[SubResult]:
    """One sub-result per sub-agent, in the order of their tasks (they finish in any order).

    A sub-agent retried by a later attempt has its earlier failure in the log too: a success
    wins, and otherwise the latest attempt. The pieces of a sub-task cut to fit the context take
    its place, in order.
    """
    order = {t.id: i for i, t in enumerate(tasks)}
    latest: dict[str, SubResult] = {}
    for result in results:
        known = latest.get(result.sub_agent_id)
        if known is None or known.status != "ok":
            latest[result.sub_agent_id] = result

    def position(sub_agent_id: str) -> tuple[int, tuple[int, ...]]:
        pieces: list[int] = []
        while sub_agent_id not in order and (cut := cut_parent(sub_agent_id)) is not None:
            sub_agent_id, piece = cut
            pieces.insert(0, piece)
        return order.get(sub_agent_id, len(order)), tuple(pieces)

    return sorted(latest.values(), key=lambda r: position(r.sub_agent_id))


@dataclass(eq=False)
class Attempt:
    """One attempt at a run in this process: what it has sent so far."""

    tried: set[str] = field(default_factory=set)
    """Sub-agents run (or sent) in this attempt: a failure among them is final for it."""
    queue: deque[int] | None = None
    """Indices of the tasks still to send; made at the attempt's first dispatch."""

    def next_wave(self, tasks: list[SubTask], results: list[SubResult], size: int) -> list[int]:
        """Indices of the next (at most) `size` tasks to run; empty once none is left."""
        if self.queue is None:
            done = {r.sub_agent_id for r in results if r.status == "ok"}
            self.queue = deque(
                i for i, t in enumerate(tasks) if t.id not in done and t.id not in self.tried
            )
        wave = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
        self.tried.update(tasks[i].id for i in wave)
        return wave


class Attempts:
    """The attempt in progress for each run id."""

    def __init__(self) -> None:
        self._by_run: dict[str, Attempt] = {}

    def begin(self, run_id: str) -> None:
        """A new attempt at `run_id` starts."""
        self._by_run[run_id] = Attempt()

    def end(self, run_id: str) -> None:
        """The attempt at `run_id` is over."""
        self._by_run.pop(run_id, None)

    def current(self, run_id: str) -> Attempt:
        """The attempt in progress (a new one if none was begun: the graph driven directly)."""
        attempt = self._by_run.get(run_id)
        if attempt is None:
            while len(self._by_run) >= MAX_ATTEMPTS_KEPT:
                del self._by_run[next(iter(self._by_run))]
            attempt = self._by_run[run_id] = Attempt()
        return attempt

    def failed_before(self, tasks: list[SubTask], results: list[SubResult]) -> bool:
        """Whether a sub-agent of `results` failed and has no success: a new attempt retries it."""
        return any(r.status == "failed" for r in ordered(tasks, results))
