"""Opening a run's SQLite checkpoint: LangGraph's checkpointer plus fanout's sub-result store.

Both live in one file, with the lease that keeps a run to one process at a time. The checkpointer
resumes the graph where it stopped; the store keeps every sub-agent that finished inside an
interrupted fan-out step, which the checkpointer alone does not.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import types
import typing
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fanout.agents._portal import on_portal, outlast_cancellation, run_sync
from fanout.agents.backend import Closeable

from ._lease import RunLease
from .errors import CheckpointError
from .state import FanoutInput, FanoutState, SubAgentInput
from .store import SqliteResultStore, storage_hint

__all__ = ["Checkpoint", "checkpoint_types", "open_checkpoint"]


@dataclass(frozen=True)
class Checkpoint(Closeable):
    """What a `Coordinator` needs to resume: ``Coordinator(..., **vars(checkpoint))``.

    Hold ``checkpoint.lease(run_id)`` around the run when another process might resume the same
    run id (the CLI always does). Close it (or open it in a ``with`` block) when the runs using it
    are done.
    """

    checkpointer: Any
    """A LangGraph `AsyncSqliteSaver` bound to fanout's background loop."""
    result_store: SqliteResultStore
    """The per-sub-agent result store."""

    def lease(self, run_id: str) -> RunLease:
        """The lease on `run_id` in this database: ``with checkpoint.lease(run_id): ...``."""
        return RunLease(self.result_store.path, run_id)

    async def aclose(self) -> None:
        """Close both connections to the database file, the result store's first.

        The store waits for its last commit, which may wait for the checkpointer's write lock; that
        write commits on the portal loop, so the store is closed off the loop (closing it on the
        loop, after an interruption, deadlocked until SQLite's busy timeout).
        """
        await asyncio.to_thread(self.result_store.close)
        await on_portal(self.checkpointer.conn.close())


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every pydantic model named in a type annotation, and in those models' fields."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models_in(field.annotation)
        return
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def checkpoint_types() -> list[tuple[str, str]]:
    """(module, name) of every fanout type a checkpoint holds, for LangGraph's serializer.

    Listing them lets LangGraph restore them without its "unregistered type" warnings, and read
    from the graph's state types, the list cannot fall behind a new field.
    """
    found: dict[type[BaseModel], None] = {}
    for state in (FanoutInput, FanoutState, SubAgentInput):
        for annotation in typing.get_type_hints(state, include_extras=True).values():
            found.update(dict.fromkeys(_models_in(annotation)))
    return sorted((cls.__module__, cls.__qualname__) for cls in found)


async def _released(conn: Any, work: Awaitable[Any]) -> Any:
    """Await a checkpointer write; if it fails or is cancelled, end its transaction first.

    LangGraph's saver writes in the connection's implicit transaction and commits after: a write
    that raised (a damaged file) or was cancelled between the two (a stop signal) left the
    transaction open, holding the file's write lock, so every later write to the file (the
    result store's, the lease's) waited out SQLite's busy timeout, one after another: a stopped
    or damaged run hung for minutes instead of ending in one line.
    """
    try:
        return await work
    except BaseException:
        if conn.in_transaction:
            rollback = asyncio.ensure_future(conn.rollback())
            await outlast_cancellation(rollback)  # a second cancellation must not leave it open
            if not rollback.cancelled():
                rollback.exception()  # retrieved and let go: the write's own error is reported
        raise


@functools.cache
def _saver_class() -> type[Any]:
    """LangGraph's `AsyncSqliteSaver`, whose writes never leave a transaction open (`_released`)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    class ReleasingSaver(AsyncSqliteSaver):
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            return await _released(self.conn, super().aput(*args, **kwargs))

        async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
            await _released(self.conn, super().aput_writes(*args, **kwargs))

        async def adelete_thread(self, *args: Any, **kwargs: Any) -> None:
            await _released(self.conn, super().adelete_thread(*args, **kwargs))

    return ReleasingSaver


async def _open_saver(path: Path) -> Any:
    import aiosqlite
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    conn = await aiosqlite.connect(str(path), timeout=60.0)
    saver = _saver_class()(
        conn, serde=JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types())
    )
    await saver.setup()
    return saver


def _check_integrity(path: Path) -> None:
    """Refuse a damaged database now, as one line, rather than with a traceback mid-run."""
    if not path.exists():
        return
    conn = sqlite3.connect(path)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    finally:
        conn.close()
    if problems != ["ok"]:
        raise sqlite3.DatabaseError(f"database disk image is malformed ({problems[0]})")


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open (or create) the checkpoint database at `path` for use with `Coordinator.run`.

    Raises:
        CheckpointError: the file cannot be opened or written, or is not an intact SQLite
            database (a `UserError`).
    """
    path = Path(path)
    try:
        _check_integrity(path)
        store = SqliteResultStore(path)
        # The saver must live on the loop that runs the graph: fanout's portal loop.
        saver = run_sync(_open_saver(path))
    except (sqlite3.Error, OSError) as exc:
        raise CheckpointError(
            f"cannot open checkpoint {path}: {exc} ({storage_hint(exc)})"
        ) from None
    return Checkpoint(checkpointer=saver, result_store=store)
