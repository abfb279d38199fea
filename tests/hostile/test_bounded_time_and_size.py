"""Class 7 of issue 17: every HTTP exchange has a total deadline, and every answer a size bound.

httpx's timeouts restart on every byte, so a server dripping its answer could hold a run for as
long as it liked; a server ignoring ``max_tokens`` could send 50 MB for the CLI to print.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fanout.agents import _bounded_http as bounded_http
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import InvalidResponse
from fanout.agents.openai import OpenAIBackend
from tests.conftest import ROOT
from tests.hostile.runtime_support import MisbehavingServer, Reply, completion_json, write_docs

MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
DRIP = Reply(body=json.dumps({"count": 1, "tokens": [1]}).encode() + b" " * 2000, drip_s=0.1)
"""About 200 s of answer, one byte every 0.1 s: each byte well inside any per-read timeout."""


def serve(dripping: str) -> MisbehavingServer:
    """A server whose route `dripping` answers a byte at a time; the rest answer at once."""

    def answer(method: str, path: str, body: bytes) -> Reply:
        if dripping in path and (dripping != "/models" or method == "GET"):
            return DRIP if "tokenize" in dripping else Reply(body=DRIP.body, drip_s=DRIP.drip_s)
        if method == "GET":
            return Reply(body=MODELS if path.endswith("/models") else b"{}")
        if "tokenize" in path:
            return Reply(status=404, body=b"{}")
        return Reply(body=completion_json("C1"))

    return MisbehavingServer(answer)


@pytest.mark.parametrize(
    ("dripping", "args", "code"),
    [
        ("/extras/tokenize/count", ["--dry-run", "--context-window", "2048"], 0),
        ("/models", ["--dry-run"], 2),
        ("/chat/completions", ["--retries", "0", "--synthesis", "collect"], 1),
    ],
    ids=["tokenizer", "start-up-check", "model-call"],
)
def test_a_server_dripping_its_answer_costs_at_most_the_timeout(
    tmp_path: Path, dripping: str, args: list[str], code: int
) -> None:
    folder = write_docs(tmp_path / "docs", 2)
    with serve(dripping) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "fanout", "run", str(folder), "-q", "What is the code?",
             "--backend", "openai", "--model", "m", "--base-url", server.base_url,
             "--timeout", "2", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=90,  # the drip lasts 200 s
        )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bounded_exchange_stops_at_its_deadline_and_its_size() -> None:
    with serve("/slow") as server:
        root = server.base_url.removesuffix("/v1")
        with pytest.raises(httpx.TimeoutException, match="within 1 s"):
            bounded_http.request("POST", f"{root}/slow", json={}, deadline_s=1)
        with pytest.raises(bounded_http.ResponseTooLarge):
            bounded_http.request("GET", f"{root}/v1/models", deadline_s=5, max_bytes=10)


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared-length"])
def test_a_completion_far_beyond_max_tokens_is_refused_unread(declared: bool) -> None:
    huge = completion_json("x" * 50_000_000)

    def answer(method: str, path: str, body: bytes) -> Reply:
        return Reply(body=MODELS) if method == "GET" else Reply(body=huge, declare_length=declared)

    async def call() -> None:
        backend = OpenAIBackend("m", base_url=server.base_url, timeout_s=30)
        try:
            await backend.complete(CompletionRequest(prompt=Prompt(instruction="i", task="t")))
        finally:
            await backend.aclose()

    with MisbehavingServer(answer) as server, pytest.raises(InvalidResponse, match="refused"):
        asyncio.run(call())


def test_an_answer_longer_than_its_budget_never_reaches_the_terminal(tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", 2)
    long_answer = completion_json("y" * 60_000)  # inside the byte bound, far past 128 tokens

    def answer(method: str, path: str, body: bytes) -> Reply:
        if method == "GET":
            return Reply(body=MODELS)
        return Reply(status=404) if "tokenize" in path else Reply(body=long_answer)

    with MisbehavingServer(answer) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "fanout", "run", str(folder), "-q", "What is the code?",
             "--backend", "openai", "--model", "m", "--base-url", server.base_url,
             "--retries", "0", "--synthesis", "collect"],
            cwd=ROOT, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "yyyy" not in proc.stdout and len(proc.stdout) < 20_000
    assert "InvalidResponse" in proc.stdout and "far beyond what 128 tokens" in proc.stdout
