"""Opening a run's SQLite checkpoint: LangGraph's checkpointer plus fanout's sub-result store.

Both live in one file. The checkpointer resumes the graph where it stopped; the store keeps every
sub-agent that finished inside an interrupted fan-out step, which the checkpointer alone does not.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fanout.agents.errors import UserError
from fanout.agents.portal import run_sync

from .store import SqliteResultStore

__all__ = ["Checkpoint", "open_checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """What a `Coordinator` needs to resume: ``Coordinator(..., **vars(checkpoint))``."""

    checkpointer: Any
    """A LangGraph `AsyncSqliteSaver` bound to fanout's background loop."""
    result_store: SqliteResultStore
    """The per-sub-agent result store."""


async def _open_saver(path: Path) -> Any:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    conn = await aiosqlite.connect(str(path), timeout=60.0)
    saver = AsyncSqliteSaver(conn)
    await saver.setup()
    return saver


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open (or create) the checkpoint database at `path` for use with `Coordinator.run`."""
    path = Path(path)
    try:
        store = SqliteResultStore(path)
        # The saver must live on the loop that runs the graph: fanout's portal loop.
        saver = run_sync(_open_saver(path))
    except (sqlite3.Error, OSError) as exc:
        raise UserError(f"cannot open checkpoint {path}: {exc}") from None
    return Checkpoint(checkpointer=saver, result_store=store)
