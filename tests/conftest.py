"""Shared fixtures: the real embedded model and a real llama_cpp.server on loopback.

Unit tests use `fanout.agents.testing.ScriptedBackend`; only tests marked `integration` touch these.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    from fanout.agents.embedded import embedded_model_path

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
