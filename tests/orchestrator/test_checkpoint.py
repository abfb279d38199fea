"""The checkpoint database under hostile conditions: damaged, reused, shared by two processes."""

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fanout.orchestrator._lease import RunLease
from fanout.orchestrator.errors import RunInUse
from tests.conftest import MODELS_BODY, ROOT, StubHTTPServer, chat_completion_body

CRASH_RUN = Path(__file__).with_name("crash_run.py")


def fanout_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", "run", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def stored(db: Path, run_id: str) -> int:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM fanout_sub_results WHERE run_id = ?", (run_id,)
            ).fetchone()
    except sqlite3.OperationalError:
        return 0  # not created yet
    return int(row[0])


class ModelServer:
    """Answers every document's call with its own code, counting calls per document.

    With `hold_after`, the call after that many answers is held open (never answered) until
    `release` is set, so a test can catch a run in the middle of its fan-out.
    """

    def __init__(self, hold_after: int | None = None) -> None:
        self.hold_after = hold_after
        self.answered: dict[str, int] = {}
        self.models_requests = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.stub = StubHTTPServer(self.handle)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if method == "GET":
            with self._lock:
                self.models_requests += 1
            return 200, MODELS_BODY
        match = re.search(r"Document number (\d+)", body.decode())
        doc = match.group(1) if match else "?"
        with self._lock:
            hold = self.hold_after is not None and sum(self.answered.values()) >= self.hold_after
        if hold and not self.release.is_set():
            self.holding.set()
            self.release.wait(timeout=60)
            return 503, b'{"error": {"message": "released"}}'
        with self._lock:
            self.answered[doc] = self.answered.get(doc, 0) + 1
        return 200, chat_completion_body(f"code C{doc}")


def write_docs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"d{i}.md").write_text(f"Document number {i} says the code is C{i}.")
    return folder


def run_args(
    docs: Path, server: ModelServer, db: Path, question: str = "What is the code?"
) -> list[str]:
    return [
        str(docs), "-q", question, "--backend", "openai", "--model", "m",
        "--base-url", server.stub.base_url, "--synthesis", "collect", "--max-concurrency", "1",
        "--retries", "0", "--run-id", "r", "--checkpoint", str(db),
    ]  # fmt: skip


# -- a damaged database (issue 9, item 5) ---------------------------------------------------------


def test_a_checkpoint_with_corrupted_pages_is_one_line_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    subprocess.run(
        [sys.executable, str(CRASH_RUN), str(db), "run-1", str(tmp_path / "calls.log"), "0"],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with sqlite3.connect(db) as conn:  # fold the WAL in, so every page lives in the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 4 * page
    data[2 * page :] = b"\xa5" * (len(data) - 2 * page)  # header and schema page intact
    db.write_bytes(bytes(data))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0  # still opens

    docs = write_docs(tmp_path / "docs", 1)
    proc = fanout_run(
        str(docs), "-q", "Q", "--backend", "openai", "--model", "m",
        "--base-url", "http://127.0.0.1:9/v1", "--run-id", "run-1", "--checkpoint", str(db),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"fanout: error: cannot open checkpoint {db}: ")
    assert "malformed" in lines[0]


# -- a run id reused with another request (issue 9, item 6) ---------------------------------------


def test_a_run_id_reused_with_another_request_is_refused_in_one_line(tmp_path: Path) -> None:
    docs, db = write_docs(tmp_path / "docs", 3), tmp_path / "run.db"
    server = ModelServer()
    try:
        first = fanout_run(*run_args(docs, server, db, "What is the code?"))
        again = fanout_run(*run_args(docs, server, db, "Which code is it?"))
    finally:
        server.stub.stop()
    assert first.returncode == 0, first.stderr
    assert again.returncode == 2
    # no "Deserializing unregistered type" warnings from LangGraph before the refusal
    assert again.stderr.splitlines() == [
        "fanout: error: run id 'r' was started with a different request (the question has "
        "changed): use another run id"
    ]


# -- two processes on one run id (issue 9, item 8) ------------------------------------------------


def test_a_second_process_on_a_live_run_is_refused_and_a_killed_ones_run_is_taken_over(
    tmp_path: Path,
) -> None:
    docs, db = write_docs(tmp_path / "docs", 8), tmp_path / "run.db"
    server = ModelServer(hold_after=3)
    args = [sys.executable, "-m", "fanout", "run", *run_args(docs, server, db), "--json"]
    try:
        with subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as first:
            deadline = time.monotonic() + 120
            while not (server.holding.is_set() and stored(db, "r") == 3):
                assert first.poll() is None, first.stderr.read() if first.stderr else ""
                assert time.monotonic() < deadline, "the first run made no progress"
                time.sleep(0.05)

            models_requests = server.models_requests  # the first's start-up probes
            second = fanout_run(*run_args(docs, server, db))
            assert second.returncode == 2
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert lines[0].startswith(
                f"fanout: error: run 'r' is already running in another process (pid {first.pid} on "
            )
            assert server.models_requests == models_requests, (
                "the refused process reached the model server"
            )

            first.kill()  # SIGKILL: no cleanup, the lease row stays behind
            first.wait()
        server.release.set()
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT pid FROM fanout_leases").fetchall() == [(first.pid,)]

        third = fanout_run(*run_args(docs, server, db), "--json")
    finally:
        server.release.set()
        server.stub.stop()
    assert third.returncode == 0, third.stderr
    result = json.loads(third.stdout)
    assert [a["answer"] for a in result["answers"]] == [f"code C{i}" for i in range(8)]
    assert server.answered == {str(i): 1 for i in range(8)}, "a sub-agent was computed twice"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM fanout_leases").fetchone() == (0,)


def insert_lease(db: Path, *, host: str, pid: int, expires_in_s: float) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fanout_leases (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
            " host TEXT NOT NULL, pid INTEGER NOT NULL, expires_at REAL NOT NULL)"
        )
        conn.execute(
            "INSERT OR REPLACE INTO fanout_leases VALUES ('r', 'elsewhere', ?, ?, ?)",
            (host, pid, time.time() + expires_in_s),
        )


def test_a_lease_from_another_host_holds_until_it_expires(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    insert_lease(db, host="another-host", pid=os.getpid(), expires_in_s=60)
    with pytest.raises(RunInUse, match=r"pid \d+ on another-host"):
        RunLease(db, "r").acquire()
    insert_lease(db, host="another-host", pid=os.getpid(), expires_in_s=-1)
    with RunLease(db, "r") as lease:  # expired: a crashed holder cannot block the run forever
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT owner FROM fanout_leases").fetchall() == [(lease.owner,)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM fanout_leases").fetchone() == (0,)


def test_a_lease_is_renewed_while_held_and_refused_to_a_second_holder(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    with RunLease(db, "r", ttl_s=0.6):
        with sqlite3.connect(db) as conn:
            first = conn.execute("SELECT expires_at FROM fanout_leases").fetchone()[0]
        deadline = time.monotonic() + 30
        while True:  # renewed every ttl/3: wait for it to move, not for a fixed time
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT expires_at FROM fanout_leases").fetchone()[0] > first:
                    break
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
        with pytest.raises(RunInUse):  # same process, another holder: still refused
            RunLease(db, "r").acquire()


@pytest.mark.parametrize(
    "failure",
    [sqlite3.OperationalError("database disk image is malformed"), asyncio.CancelledError()],
    ids=["damaged", "cancelled"],
)
def test_a_checkpoint_write_that_fails_or_is_cancelled_leaves_the_file_unlocked(
    tmp_path: Path, failure: BaseException
) -> None:
    """LangGraph's saver writes, then commits: a write whose commit never came (an error, or a
    stop signal between the two) held the file's write lock, and every later writer (the result
    store, the lease) waited out SQLite's busy timeout, one after another."""
    from fanout.agents._portal import run_sync
    from fanout.orchestrator.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(tmp_path / "run.db")
    saver = checkpoint.checkpointer
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}

    async def write_that_never_commits() -> bool:
        real = saver.conn.commit

        async def fail() -> None:
            raise failure

        saver.conn.commit = fail
        try:
            await saver.aput_writes(config, [("answer", "x")], task_id="task")
        except BaseException as exc:
            assert type(exc) is type(failure)
        finally:
            saver.conn.commit = real
        return bool(saver.conn.in_transaction)

    try:
        assert run_sync(write_that_never_commits()) is False
        other = sqlite3.connect(tmp_path / "run.db", timeout=0.5, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer gets the lock at once
        other.execute("ROLLBACK")
        other.close()
    finally:
        checkpoint.close()
