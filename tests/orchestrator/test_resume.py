"""Checkpoint and resume: a run killed with SIGKILL mid fan-out finishes on rerun without
recomputing any sub-agent that had completed, and gives the same result."""

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import Coordinator, Document, MemoryResultStore, Request
from tests.conftest import ROOT

SCRIPT = Path(__file__).with_name("crash_run.py")


def stored_ids(db: Path, run_id: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT sub_agent_id FROM fanout_sub_results WHERE run_id = ?", (run_id,)
        ).fetchall()
    return {r[0] for r in rows}


def run(db: Path, log: Path, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(db), "run-1", str(log), str(delay)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigkill_mid_fan_out_then_resume_recomputes_nothing_finished(tmp_path: Path) -> None:
    db, log = tmp_path / "run.db", tmp_path / "calls.log"
    first = run(db, log, delay=0.4)
    deadline = time.monotonic() + 120
    while True:  # wait for observable progress, not for a fixed time
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        if db.exists():
            try:
                if len(stored_ids(db, "run-1")) >= 4:
                    break
            except sqlite3.OperationalError:
                pass  # table not created yet
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    first.kill()  # SIGKILL: no cleanup, no flush
    first.communicate()
    finished_before = stored_ids(db, "run-1")
    assert 4 <= len(finished_before) < 10
    calls_before = log.read_text().split()

    second = run(db, log, delay=0.0)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    calls_after = log.read_text().split()[len(calls_before) :]

    assert not set(calls_after) & finished_before, "a finished sub-agent was recomputed"
    assert len(calls_after) == 10 - len(finished_before)
    result = json.loads(out)
    assert [a["answer"] for a in result["answers"]] == [f"answer from d{i}.md" for i in range(10)]
    assert all(r["status"] == "ok" for r in result["sub_results"])


def test_result_store_skips_finished_sub_agents_in_process() -> None:
    store = MemoryResultStore()
    documents = tuple(Document(id=f"d{i}", text=f"text {i}") for i in range(4))
    request = Request(documents=documents, question="Q")
    first = ScriptedBackend(fn=lambda r: f"A {r.tags['document_id']}")
    Coordinator(first, synthesis="collect", result_store=store).run(request, run_id="r")
    again = ScriptedBackend()  # any call would be unexpected
    result = Coordinator(again, synthesis="collect", result_store=store).run(request, run_id="r")
    assert again.calls == []
    assert [a.answer for a in result.answers] == [f"A d{i}" for i in range(4)]
