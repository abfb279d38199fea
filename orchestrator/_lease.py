"""One process at a time per run: a lease row in the run's checkpoint database.

Two processes resuming the same run id would each compute every unfinished sub-agent and fork the
checkpoint's history. So a run first takes a lease (run id, owner, expiry) in the database; another
process asking for the same run id is refused with one line naming the holder. The holder renews the
lease while it runs and deletes it on exit. A holder killed without cleanup (SIGKILL, power loss)
leaves its row behind: the next process takes it over once it has expired, or at once when its owner
was a process on this host that no longer exists.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from fanout.agents.logs import log_event

from .errors import CheckpointError, RunInUse
from .store import storage_hint

__all__ = ["LEASE_TTL_S", "RunLease"]

logger = logging.getLogger(__name__)

LEASE_TTL_S = 30.0
"""How long a lease lasts without renewal; the holder renews it every third of that."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fanout_leases ("
    " run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,"
    " expires_at REAL NOT NULL)"
)


def _process_exists(pid: int) -> bool:
    """Whether `pid` is a live process on this host (a zombie, killed but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class RunLease:
    """The right to compute run `run_id` of the checkpoint at `path`; use it as a context manager.

    Args:
        path: the checkpoint database (the lease table lives beside the run's state).
        run_id: the run to hold.
        ttl_s: how long the lease outlives its last renewal.
    """

    def __init__(self, path: str | Path, run_id: str, *, ttl_s: float = LEASE_TTL_S) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.ttl_s = ttl_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise `RunInUse` naming the process that holds it.

        Raises:
            RunInUse: a live process (or one whose lease has not yet expired) holds the run.
            CheckpointError: the database cannot be written (read-only, disk full, damaged).
        """
        try:
            self._take()
        except sqlite3.Error as exc:
            raise CheckpointError(
                f"cannot take the lease on run '{self.run_id}' in {self.path}: {exc} "
                f"({storage_hint(exc)})"
            ) from None
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="fanout-lease", daemon=True)
        self._renewer.start()

    def _take(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time: two acquirers cannot both win
            row = conn.execute(
                "SELECT owner, host, pid, expires_at FROM fanout_leases WHERE run_id = ?",
                (self.run_id,),
            ).fetchone()
            if row is not None and self._held_by_other(*row):
                conn.execute("ROLLBACK")
                _, host, pid, expires_at = row
                raise RunInUse(
                    f"run '{self.run_id}' is already running in another process (pid {pid} on "
                    f"{host}; its lease in {self.path} lasts {max(0.0, expires_at - time.time()):.0f} "
                    "s more unless renewed): wait for it to finish, or use another run id"
                )
            conn.execute(
                "INSERT OR REPLACE INTO fanout_leases VALUES (?, ?, ?, ?, ?)",
                (self.run_id, self.owner, self.host, self.pid, time.time() + self.ttl_s),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _held_by_other(self, owner: str, host: str, pid: int, expires_at: float) -> bool:
        if owner == self.owner or expires_at <= time.time():
            return False
        if host == self.host and not _process_exists(pid):
            return False  # its holder died without letting go
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                with self._lock:
                    if self._conn is None:
                        return
                    renewed = self._conn.execute(
                        "UPDATE fanout_leases SET expires_at = ? WHERE run_id = ? AND owner = ?",
                        (time.time() + self.ttl_s, self.run_id, self.owner),
                    ).rowcount
            except sqlite3.Error as exc:  # a locked or vanished database: try again next time
                log_event(
                    logger,
                    logging.WARNING,
                    "lease.renew_failed",
                    run_id=self.run_id,
                    error=str(exc),
                )
                continue
            if not renewed:
                log_event(
                    logger, logging.WARNING, "lease.lost", run_id=self.run_id, path=str(self.path)
                )
                return

    def release(self) -> None:
        """Give the lease back (idempotent)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute(
                    "DELETE FROM fanout_leases WHERE run_id = ? AND owner = ?",
                    (self.run_id, self.owner),
                )
            except sqlite3.Error:
                pass  # it expires by itself
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> RunLease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
