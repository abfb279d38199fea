"""Durable storage of finished sub-results, written the moment each sub-agent completes.

LangGraph's checkpointer saves state between supersteps, but a fan-out is one superstep: after a
crash mid-fan-out, every sub-agent of that step re-runs on resume (measured with langgraph 1.2.22 +
SqliteSaver: 4-6 of 10 finished sub-agents were recomputed). The coordinator therefore writes each
successful `SubResult` here as soon as it exists and looks here before calling a model on resume.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from .result import SubResult

__all__ = ["MemoryResultStore", "ResultStore", "SqliteResultStore"]


class ResultStore(Protocol):
    """Where finished sub-results survive a crash, keyed by (run id, sub-agent id)."""

    def get(self, run_id: str, sub_agent_id: str) -> SubResult | None:
        """The stored result, or None if this sub-agent has not finished in this run."""
        ...

    def put(self, run_id: str, result: SubResult) -> None:
        """Store `result` durably before returning (called from a worker thread: it may block)."""
        ...


class MemoryResultStore:
    """In-process store (tests, and runs that need no crash safety)."""

    def __init__(self) -> None:
        self._results: dict[tuple[str, str], SubResult] = {}

    def get(self, run_id: str, sub_agent_id: str) -> SubResult | None:
        """Look up a finished sub-agent."""
        return self._results.get((run_id, sub_agent_id))

    def put(self, run_id: str, result: SubResult) -> None:
        """Remember a finished sub-agent."""
        self._results[(run_id, result.sub_agent_id)] = result


class SqliteResultStore:
    """One table in a SQLite file (the checkpoint database); every put is committed before it returns.

    Puts that arrive while a commit is under way are committed together in the next one (group
    commit): each commit waits for the disk, so one commit per result would cap a run at a few
    hundred results a second, while many concurrent sub-agents finishing share one wait. `put`
    blocks until its result is durable; the coordinator calls it from a worker thread.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        """Serialises use of the connection (reads, and the writer's commits)."""
        # The checkpointer writes to the same file: wait for its lock rather than fail under load.
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=60.0
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS fanout_sub_results ("
            " run_id TEXT NOT NULL, sub_agent_id TEXT NOT NULL, result TEXT NOT NULL,"
            " PRIMARY KEY (run_id, sub_agent_id))"
        )
        self._queue: list[tuple[tuple[str, str, str], Future[None]]] = []
        self._queued = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False

    def get(self, run_id: str, sub_agent_id: str) -> SubResult | None:
        """Read a finished sub-agent's result."""
        with self._lock:
            row = self._conn.execute(
                "SELECT result FROM fanout_sub_results WHERE run_id = ? AND sub_agent_id = ?",
                (run_id, sub_agent_id),
            ).fetchone()
        return SubResult.model_validate_json(row[0]) if row else None

    def put(self, run_id: str, result: SubResult) -> None:
        """Write and commit, so a kill -9 right after this returns loses nothing."""
        committed: Future[None] = Future()
        with self._queued:
            self._queue.append(((run_id, result.sub_agent_id, result.model_dump_json()), committed))
            if self._writer is None:
                # A daemon: a put still queued at exit has a caller blocked on it, which exit waits for.
                self._writer = threading.Thread(
                    target=self._write, name="fanout-result-store", daemon=True
                )
                self._writer.start()
            self._queued.notify()
        committed.result()

    def _write(self) -> None:
        """Commit whatever is queued, one transaction at a time, until the queue stays empty."""
        while True:
            with self._queued:
                if not self._queue and not self._closing:
                    self._queued.wait(timeout=1.0)
                if not self._queue:
                    self._writer = None  # idle or closing: the next put starts a new writer
                    return
                batch, self._queue = self._queue, []
            try:
                with self._lock:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        self._conn.executemany(
                            "INSERT OR REPLACE INTO fanout_sub_results VALUES (?, ?, ?)",
                            [row for row, _ in batch],
                        )
                        self._conn.execute("COMMIT")
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
            except Exception as exc:  # every put of the batch learns why
                for _, committed in batch:
                    committed.set_exception(exc)
            else:
                for _, committed in batch:
                    committed.set_result(None)

    def close(self) -> None:
        """Let the writer finish what is queued, then close the connection."""
        with self._queued:
            self._closing, writer = True, self._writer
            self._queued.notify()
        if writer is not None:
            writer.join()
        self._conn.close()
