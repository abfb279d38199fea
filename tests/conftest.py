"""Shared fixtures: the real embedded model and a real llama_cpp.server on loopback.

Unit tests use `fanout.agents.testing.ScriptedBackend`; only tests marked `integration` touch these.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte.

    It stands in for a hung endpoint. It stops by itself after `lifetime_s` even if a test forgets
    to, closing every connection it holds.
    """

    def __init__(self, lifetime_s: float = 60.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.accepted = 0
        self._deadline = time.monotonic() + lifetime_s
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)  # read nothing, answer nothing
        for conn in self._held:
            conn.close()
        self._listener.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, bytes]]
"""(method, path, headers, body) -> (status, body): how a `StubHTTPServer` answers a request.
Header names are lower-case (HTTP clients differ in how they send them)."""


class StubHTTPServer:
    """A real HTTP server on 127.0.0.1, in a thread, answering with a function of each request.

    For servers that misbehave in ways a llama.cpp server never does (invalid JSON, echoing
    headers back), so a test drives the real HTTP client against them.
    """

    def __init__(self, handler: Handler) -> None:
        class _Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, reply = handler(self.command, self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class _Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up (a killed process) is part of these tests

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StubHTTPServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


MODELS_BODY = json_body({"object": "list", "data": [{"id": "m", "object": "model"}]})
"""What an OpenAI-compatible server answers on /models."""


def chat_completion_body(text: str) -> bytes:
    """What an OpenAI-compatible server answers on /chat/completions."""
    return json_body(
        {
            "id": "stub",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }
    )


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from fanout.agents.llama_cpp import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def llama_backend(gemma_path: Path):  # type: ignore[no-untyped-def]
    from fanout.agents.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(gemma_path, n_ctx=2048, n_threads=2)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The instruction-tuned embedded model (a chat template): the real chat path's test model."""
    from fanout.agents._embedded import embedded_model_path

    return embedded_model_path("smollm2")


@pytest.fixture(scope="session")
def smollm2_backend(smollm2_path: Path):  # type: ignore[no-untyped-def]
    from fanout.agents.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(smollm2_path, n_ctx=2048, n_threads=2)


class LlamaServer:
    """A real `python -m llama_cpp.server` process serving the embedded model on 127.0.0.1."""

    def __init__(
        self, model: Path, *, api_key: str | None = None, log: Path, alias: str = "gemma"
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.api_key = api_key
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model), "--model_alias", alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", "2048", "--n_threads", "2",
        ]  # fmt: skip
        if api_key:
            cmd += ["--api_key", api_key]
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read_text()[-2000:]}")
            try:
                if (
                    httpx.get(f"{self.base_url}/models", headers=headers, timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama_cpp.server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


@pytest.fixture(scope="session")
def llama_server(
    gemma_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    server = LlamaServer(gemma_path, log=tmp_path_factory.mktemp("server") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smollm2_server(
    smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("smollm2-server") / "server.log"
    server = LlamaServer(smollm2_path, log=log, alias="smollm2")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real OpenAI settings."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("NO_COLOR", "1")


@contextlib.contextmanager
def capture_events() -> Iterator[list[dict[str, Any]]]:
    """fanout's log events while the block runs, each as {"event": name, **fields}."""
    events: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            name = getattr(record, "fanout_event", None)
            if name is not None:
                events.append({"event": name, **getattr(record, "fanout_fields", {})})

    logger = logging.getLogger("fanout")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def close_langchain_clients(*models: Any) -> None:
    """Close langchain-openai models' HTTP clients on the loop that used them (fanout's portal).

    LangChain models have no close method; left open, their sockets are reported unclosed when
    the interpreter collects them.
    """
    from fanout.agents._portal import run_sync

    for model in models:
        # chat models keep the AsyncOpenAI client itself; completion models only its resource
        resource = getattr(model, "async_client", None)
        async_client = getattr(model, "root_async_client", None) or getattr(
            resource, "_client", None
        )
        if async_client is not None:
            run_sync(async_client.close())
