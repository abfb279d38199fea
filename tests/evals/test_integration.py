"""A tiny real sweep on the embedded Gemma 3 270M: every file written, every record scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.agents.backend import Backend
from fanout.evals.records import EvalResults
from fanout.evals.runner import evaluate
from fanout.orchestrator.policy import CallPolicy


@pytest.mark.integration
def test_tiny_real_sweep_on_the_embedded_model(llama_backend: Backend, tmp_path: Path) -> None:
    report = evaluate(
        llama_backend,
        suite="keyvalue",
        strategies=["isolated", "monolithic", "mti"],
        instances=[1, 2],
        groups=1,
        doc_tokens=40,
        policy=CallPolicy(max_attempts=1, max_tokens=16, max_concurrency=2),
        out=tmp_path,
    )
    results = EvalResults.load(tmp_path / "results.json")
    assert len(results.records) == 3 * 2
    assert all(r.error is None for r in results.records)
    assert all(len(r.answers) == r.n for r in results.records)
    assert all(a.status != "failed" for r in results.records for a in r.answers)
    assert {(c.strategy, c.n) for c in report.cells} == {
        (s, n) for s in ("isolated", "monolithic", "mti") for n in (1, 2)
    }
    isolated = report.cell("isolated", 1)
    assert isolated is not None and isolated.calls == 1 and isolated.prompt_tokens > 0
    # the 270M model copies a four-digit code from a short document it was given alone
    assert isolated.correct == 1
    for name in ("report.md", "report.html", "accuracy_vs_n.png", "tokens_vs_n.png"):
        assert (tmp_path / name).stat().st_size > 0

    # The report says what produced it: the model file and its hash, versions, hardware.
    from fanout.evals.provenance import file_sha256

    markdown = (tmp_path / "report.md").read_text()
    path = llama_backend.path  # type: ignore[attr-defined]
    assert f"{path} (sha256 {file_sha256(path)})" in markdown
    assert "llama-cpp-python**: 0." in markdown and "cores" in markdown
