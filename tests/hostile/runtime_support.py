"""Helpers shared by the runtime hostile tests: a model server on loopback that can hold a call
open, and a CLI process started in its own session (so a signal reaches it as a terminal's would)."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import MODELS_BODY, ROOT, StubHTTPServer, chat_completion_body


class HoldingServer:
    """An OpenAI-compatible server on 127.0.0.1 answering "code C<i>" for document i.

    After `hold_after` answers, the next calls are held open until `release` is set (then they
    are answered): a test then knows a call is in flight. Every chat request is timestamped on
    arrival.
    """

    def __init__(self, hold_after: int | None = None) -> None:
        self.hold_after = hold_after
        self.answered: dict[str, int] = {}
        """Answers sent per document (a held call counts once released, heard or not)."""
        self.held: list[str] = []
        """Documents whose call was held."""
        self.arrivals: list[float] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.stub = StubHTTPServer(self.handle)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if method == "GET":
            return 200, MODELS_BODY
        if not path.endswith("/chat/completions"):
            return 404, b'{"error": {"message": "no such route"}}'
        match = re.search(r"Document number (\d+)", body.decode())
        doc = match.group(1) if match else "?"
        with self._lock:
            self.arrivals.append(time.monotonic())
            hold = self.hold_after is not None and sum(self.answered.values()) >= self.hold_after
        if hold and not self.release.is_set():
            with self._lock:
                self.held.append(doc)
            self.holding.set()
            self.release.wait(timeout=60)
        with self._lock:
            self.answered[doc] = self.answered.get(doc, 0) + 1
        return 200, chat_completion_body(f"code C{doc}")

    def arrived_after(self, moment: float) -> int:
        with self._lock:
            return sum(t > moment for t in self.arrivals)

    def close(self) -> None:
        self.release.set()
        self.stub.stop()


def write_docs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"d{i}.md").write_text(f"Document number {i} says the code is C{i}.")
    return folder


def start_cli(*args: str) -> subprocess.Popen[str]:
    """`fanout ...` in a session of its own: a signal to its group reaches it as Ctrl-C would."""
    return subprocess.Popen(
        [sys.executable, "-m", "fanout", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def stored_ids(db: Path) -> set[str]:
    """Sub-agents whose result is committed in the checkpoint's result store."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT sub_agent_id FROM fanout_sub_results").fetchall()
    except sqlite3.OperationalError:
        return set()  # not created yet
    return {row[0] for row in rows}


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout_s: float) -> None:
    """Wait for observable state, failing early if the process died first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the process ended first (exit {proc.returncode}): {err}")
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.02)


def exit_for(sig: signal.Signals) -> int:
    return 128 + int(sig)
