"""Durable storage of finished sub-results, written the moment each sub-agent completes.

LangGraph's checkpointer saves state between supersteps, but a fan-out is one superstep: after a
crash mid-fan-out, every sub-agent of that step re-runs on resume (measured with langgraph 1.2.22 +
SqliteSaver: 4-6 of 10 finished sub-agents were recomputed). The coordinator therefore writes each
successful `SubResult` here as soon as it exists and looks here before calling a model on resume.

Each entry carries its sub-task's content key (`fanout.orchestrator._fingerprint.sub_task_key`: the
text it read, the task, the prompt, the model and settings): a lookup with another key finds
nothing, so an edited document or another model is computed again rather than answered from
the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from .result import SubResult

__all__ = [
    "MemoryResultStore",
    "ResultStore",
    "SqliteResultStore",
    "storage_damaged",
    "storage_hint",
]


def storage_damaged(exc: BaseException) -> bool:
    """Whether a storage error says the database file itself is damaged (no resume from it)."""
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def storage_hint(exc: BaseException) -> str:
    """What a storage error most likely means, for the one line the user sees."""
    text = str(exc).lower()
    if storage_damaged(exc):
        return "the file is damaged: move it away to start afresh"
    if isinstance(exc, PermissionError) or "readonly" in text or "unable to open" in text:
        return (
            "fanout writes its progress there as the run goes: the file and its folder must "
            "be writable"
        )
    if "disk i/o" in text or "full" in text or "file too large" in text:
        return "is the disk full? what was stored before stays there"
    return "what was stored before stays there"


class ResultStore(Protocol):
    """Where finished sub-results survive a crash, keyed by (run id, sub-agent id, content key)."""

    def get(self, run_id: str, sub_agent_id: str, key: str) -> SubResult | None:
        """The stored result if it was stored under `key`; None otherwise (compute it again)."""
        ...

    def put(self, run_id: str, result: SubResult, key: str) -> None:
        """Store `result` under `key` durably before returning (from a worker thread: it may block)."""
        ...


class MemoryResultStore:
    """In-process store (tests, and runs that need no crash safety)."""

    def __init__(self) -> None:
        self._results: dict[tuple[str, str], tuple[str, SubResult]] = {}

    def get(self, run_id: str, sub_agent_id: str, key: str) -> SubResult | None:
        """Look up a finished sub-agent (only under the same content key)."""
        stored = self._results.get((run_id, sub_agent_id))
        return stored[1] if stored is not None and stored[0] == key else None

    def put(self, run_id: str, result: SubResult, key: str) -> None:
        """Remember a finished sub-agent."""
        self._results[(run_id, result.sub_agent_id)] = (key, result)


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
            " content_key TEXT NOT NULL DEFAULT '', PRIMARY KEY (run_id, sub_agent_id))"
        )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(fanout_sub_results)")}
        if "content_key" not in columns:  # a file from before content keys: its rows never match
            self._conn.execute(
                "ALTER TABLE fanout_sub_results ADD COLUMN content_key TEXT NOT NULL DEFAULT ''"
            )
        self._queue: list[tuple[tuple[str, str, str, str], Future[None]]] = []
        self._queued = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False

    def get(self, run_id: str, sub_agent_id: str, key: str) -> SubResult | None:
        """Read a finished sub-agent's result, if it was stored under `key`."""
        with self._lock:
            row = self._conn.execute(
                "SELECT result FROM fanout_sub_results"
                " WHERE run_id = ? AND sub_agent_id = ? AND content_key = ?",
                (run_id, sub_agent_id, key),
            ).fetchone()
        return SubResult.model_validate_json(row[0]) if row else None

    def put(self, run_id: str, result: SubResult, key: str) -> None:
        """Write and commit, so a kill -9 right after this returns loses nothing."""
        committed: Future[None] = Future()
        row = (run_id, result.sub_agent_id, result.model_dump_json(), key)
        with self._queued:
            self._queue.append((row, committed))
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
                            "INSERT OR REPLACE INTO fanout_sub_results"
                            " (run_id, sub_agent_id, result, content_key) VALUES (?, ?, ?, ?)",
                            [row for row, _ in batch],
                        )
                        self._conn.execute("COMMIT")
                    except BaseException:
                        # SQLite may have rolled back already (a disk I/O error does): a second
                        # rollback would replace the real error with "no transaction is active".
                        if self._conn.in_transaction:
                            with contextlib.suppress(sqlite3.Error):
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
