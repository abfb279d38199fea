"""Helpers shared by the runtime hostile tests: a model server on loopback that can hold a call
open, and a CLI process started in its own session (so a signal reaches it as a terminal's would)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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
    """`fanout ...` in a session of its own: a signal to its group reaches it as Ctrl-C would.

    The stop signals start with their default handling, as in a terminal: a test suite run under
    ``nohup`` (or as a background job) would otherwise pass SIGHUP (or SIGINT) on as ignored, and
    fanout rightly leaves an inherited ignore alone (the CLI then waited for the held call).
    Python's fault handler is on, so `finish` can show where a process that hangs is stuck.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "fanout", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        preexec_fn=_default_stop_signals,
    )  # fmt: skip


def _default_stop_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def finish(proc: subprocess.Popen[str], timeout_s: float) -> tuple[str, str]:
    """(stdout, stderr) of `proc` once it exits; one still running after `timeout_s` fails the
    test with every thread's stack (SIGABRT makes the fault handler print them)."""
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        raise AssertionError(
            f"still running after {timeout_s:g} s; its threads:\n{err[-8000:]}"
        ) from None


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


@dataclass
class Reply:
    """How `MisbehavingServer` answers one request."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    drip_s: float = 0.0
    """Seconds between bytes of the body (and of the status line and headers): a slow drip."""
    declare_length: bool = True
    """Send Content-Length (False: the body ends when the connection closes)."""


class MisbehavingServer:
    """An HTTP server on 127.0.0.1 answering each request as `answer` says, however badly.

    Every request is recorded as (method, path, body, arrival time). Drips stop when the client
    hangs up, and the server stops by itself after `lifetime_s`.
    """

    def __init__(
        self, answer: Callable[[str, str, bytes], Reply], lifetime_s: float = 120.0
    ) -> None:
        self.requests: list[tuple[str, str, bytes, float]] = []
        lock = threading.Lock()
        deadline = time.monotonic() + lifetime_s
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    outer.requests.append((self.command, self.path, body, time.monotonic()))
                reply = answer(self.command, self.path, body)
                head = f"HTTP/1.1 {reply.status} X\r\nContent-Type: {reply.content_type}\r\n"
                for name, value in reply.headers.items():
                    head += f"{name}: {value}\r\n"
                if reply.declare_length:
                    head += f"Content-Length: {len(reply.body)}\r\n"
                else:
                    head += "Connection: close\r\n"
                data = (head + "\r\n").encode() + reply.body
                try:
                    if reply.drip_s <= 0:
                        self.wfile.write(data)
                    else:
                        for i in range(len(data)):
                            if time.monotonic() > deadline:
                                break
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(reply.drip_s)
                except OSError:
                    pass  # the client hung up: what these tests are about
                if not reply.declare_length:
                    self.close_connection = True

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class _Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def posts(self, suffix: str) -> list[tuple[str, str, bytes, float]]:
        return [r for r in self.requests if r[0] == "POST" and r[1].endswith(suffix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MisbehavingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def completion_json(text: str, usage: dict[str, int] | None = None) -> bytes:
    """A chat completion as an OpenAI-compatible server sends it."""
    return json.dumps(
        {
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
        }
    ).encode()  # fmt: skip
