"""An API key never reaches logs, results, eval reports or the checkpoint database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, LlamaServer

MARKER = "sk-fanout-secret-marker-7f3a9c"


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
