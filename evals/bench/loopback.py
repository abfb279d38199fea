"""A tiny OpenAI-compatible server on 127.0.0.1 that answers after a fixed delay.

It stands in for a remote model whose latency is known exactly, so the bench can tell fanout's own
cost from the model's: with the delay fixed, any wall time beyond ceil(N / concurrency) x delay is
ours. Tests use it too, to drive `OpenAIBackend` over real HTTP without a model.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

__all__ = ["LoopbackServer", "loopback_app", "serve"]

_ANSWER = "ok"


def loopback_app(delay_s: float, *, answer: str = _ANSWER) -> Any:
    """A Starlette app serving /v1/models, /v1/chat/completions, /v1/completions and /stats."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state = {"requests": 0}

    async def models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "loopback", "object": "model"}]})

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse(state)

    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        state["requests"] += 1
        await asyncio.sleep(delay_s)
        prompt_tokens = max(1, len(json.dumps(body.get("messages") or body.get("prompt"))) // 4)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if request.url.path.endswith("/chat/completions"):
            choice["message"] = {"role": "assistant", "content": answer}
            kind = "chat.completion"
        else:
            choice["text"] = f" {answer}"
            kind = "text_completion"
        return JSONResponse(
            {
                "id": f"loopback-{state['requests']}",
                "object": kind,
                "created": 0,
                "model": body.get("model", "loopback"),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 1,
                    "total_tokens": prompt_tokens + 1,
                },
            }
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", complete, methods=["POST"]),
            Route("/v1/completions", complete, methods=["POST"]),
            Route("/stats", stats),
        ]
    )


def _bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def serve(port: int, delay_s: float) -> None:
    """Serve the app on 127.0.0.1:`port` until killed (the subprocess entry point)."""
    import uvicorn

    config = uvicorn.Config(
        loopback_app(delay_s), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    uvicorn.Server(config).run()


class LoopbackServer:
    """Runs `loopback_app` in a subprocess (default) or in a thread of this process.

    A subprocess keeps the server's CPU off this interpreter's GIL, so a measurement of fanout is
    not slowed by the fake it talks to; a thread starts faster, which is what unit tests want.

    Args:
        delay_s: seconds every completion waits before answering.
        in_process: serve from a thread of this process instead of a subprocess.
        ready_timeout_s: how long to wait for the server to answer /v1/models.
    """

    def __init__(
        self, delay_s: float, *, in_process: bool = False, ready_timeout_s: float = 30.0
    ) -> None:
        self.delay_s = delay_s
        self.in_process = in_process
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The API root to give `OpenAIBackend`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def requests_served(self) -> int:
        """Completions the server has answered or is answering."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            count: int = json.load(response)["requests"]
        return count

    def start(self) -> LoopbackServer:
        """Start serving and return once the server answers."""
        if self.in_process:
            import uvicorn

            sock = _bound_socket()
            self.port = sock.getsockname()[1]
            config = uvicorn.Config(
                loopback_app(self.delay_s), log_level="warning", access_log=False
            )
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
            )
            self._thread.start()
        else:
            with _bound_socket() as sock:  # a free port; the child binds it again at once
                self.port = sock.getsockname()[1]
            code = f"from fanout.evals.bench.loopback import serve; serve({self.port}, {self.delay_s!r})"
            self._proc = subprocess.Popen([sys.executable, "-c", code])
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"loopback server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("loopback server did not become ready")

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
