"""An API key never reaches logs, results, eval reports or the checkpoint database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.agents._secrets import register_secret, scrub
from tests.conftest import EXAMPLES, MODELS_BODY, ROOT, LlamaServer, StubHTTPServer, json_body

MARKER = "sk-fanout-secret-marker-7f3a9c"
UPSTREAM = "upstream-token-4d2e8b1f"


@pytest.mark.integration
def test_api_key_is_not_in_logs_results_or_checkpoint(gemma_path: Path, tmp_path: Path) -> None:
    server = LlamaServer(gemma_path, api_key=MARKER, log=tmp_path / "server.log")
    db = tmp_path / "run.db"
    env = {**os.environ, "OPENAI_API_KEY": MARKER}
    out = tmp_path / "eval"
    try:
        evaluation = subprocess.run(
            [sys.executable, "-m", "fanout", "eval", "--suite", "keyvalue",
             "--strategies", "isolated,monolithic", "--instances", "2", "--groups", "1",
             "--doc-tokens", "40", "--backend", "openai", "--model", "gemma",
             "--base-url", server.base_url, "--endpoint", "completions", "--out", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "fanout", "run", str(EXAMPLES / "suppliers"),
             "-q", "Who is the account manager?", "--backend", "openai", "--model", "gemma",
             "--base-url", server.base_url, "--endpoint", "completions",
             "--run-id", "secret-run", "--checkpoint", str(db), "--json", "--log-json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        server.stop()
    assert evaluation.returncode == 0, evaluation.stderr
    reports = [out / n for n in ("results.json", "report.md", "report.html")]
    assert all(r.is_file() and r.stat().st_size > 0 for r in reports)
    for report in reports:
        assert MARKER not in report.read_text(), f"API key leaked into {report.name}"
    assert MARKER not in evaluation.stdout + evaluation.stderr
    assert proc.returncode == 0, proc.stderr
    assert '"sub_agent.call"' in proc.stderr  # the JSON log events were written...
    assert '"usage"' in proc.stdout  # ...and the result
    for name, text in {"stdout": proc.stdout, "stderr": proc.stderr}.items():
        assert MARKER not in text, f"API key leaked into {name}"
    saved = b"".join(p.read_bytes() for p in tmp_path.glob("run.db*"))
    assert b"Tom Becker" in saved  # the checkpoint really holds the run's results
    for path in tmp_path.glob("run.db*"):  # the database and its WAL
        assert MARKER.encode() not in path.read_bytes(), f"API key leaked into {path.name}"


def test_a_key_echoed_back_by_a_server_is_scrubbed_everywhere(tmp_path: Path) -> None:
    """A server that puts the request's Authorization header (and another token) in its errors."""

    def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            return 200, MODELS_BODY
        said = (
            f"you sent Authorization: {headers['authorization']}; "
            f"upstream answered with Authorization: Bearer {UPSTREAM}"
        )
        status = 500 if b"flaky" in body else 400  # one retried (5xx), one refused (4xx)
        return status, json_body({"error": {"message": said, "type": "invalid_request_error"}})

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("A plain document.")
    (docs / "b.md").write_text("A flaky document.")
    db = tmp_path / "run.db"
    with StubHTTPServer(echo) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "fanout", "run", str(docs), "-q", "Q", "--backend", "openai",
             "--model", "m", "--base-url", server.base_url, "--retries", "1",
             "--run-id", "echo", "--checkpoint", str(db), "--json", "--log-json"],
            cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": MARKER},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # both sub-agents failed; the run still answered
    result = json.loads(proc.stdout)
    errors = [r["error"] for r in result["sub_results"]]
    assert any("HTTP 400" in e for e in errors) and any("HTTP 500" in e for e in errors)
    for error in errors:  # the echo got through, scrubbed
        assert "you sent Authorization: Bearer ***;" in error, error
        assert "upstream answered with Authorization: Bearer ***" in error, error
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert sum(e.get("event") == "sub_agent.call" for e in events) == 3  # 400 once, 500 twice
    assert [e["sub_agents"] for e in events if e.get("event") == "run.plan"] == [2]
    assert all(line.startswith("{") for line in proc.stderr.splitlines())  # JSON lines only
    saved = b"".join(p.read_bytes() for p in tmp_path.glob("run.db*"))
    assert b"HTTP 400" in saved  # the failed sub-results are in the checkpoint
    for secret in (MARKER, UPSTREAM):
        for name, text in {"stdout": proc.stdout, "stderr": proc.stderr}.items():
            assert secret not in text, f"{secret} leaked into {name}"
        for path in tmp_path.glob("run.db*"):
            assert secret.encode() not in path.read_bytes(), f"{secret} leaked into {path.name}"


def test_scrub_masks_registered_keys_and_bearer_tokens() -> None:
    register_secret("sk-registered-key-123")
    register_secret("short")  # too short to mask safely: left alone
    text = "key sk-registered-key-123; header 'Authorization: bearer abc.DEF-ghi_9'; short"
    assert scrub(text) == "key ***; header 'Authorization: bearer ***'; short"
