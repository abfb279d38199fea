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
    from fanout.agents._safe_text import for_markdown
    from fanout.evals._provenance import file_sha256

    markdown = (tmp_path / "report.md").read_text()
    path = llama_backend.path  # type: ignore[attr-defined]
    assert for_markdown(f"{path} (sha256 {file_sha256(path)})") in markdown  # escaped as data
    assert "llama-cpp-python**: 0." in markdown and "cores" in markdown


@pytest.mark.integration
def test_a_real_profile_names_the_gguf_and_drives_auto(
    llama_backend: Backend, gemma_path: Path, tmp_path: Path
) -> None:
    import hashlib

    from fanout.agents.errors import UserError
    from fanout.orchestrator.coordinator import Coordinator
    from fanout.orchestrator.profile import ModelIdentity, Profile
    from fanout.orchestrator.request import Document, Request

    evaluate(
        llama_backend,
        suite="keyvalue",
        strategies=["isolated", "monolithic"],
        instances=[1],
        groups=1,
        doc_tokens=40,
        policy=CallPolicy(max_attempts=1, max_tokens=16),
        out=tmp_path,
    )
    profile = Profile.load(tmp_path / "profile.json")
    with gemma_path.open("rb") as f:
        assert profile.model.sha256 == hashlib.file_digest(f, "sha256").hexdigest()
    assert profile.model.name == gemma_path.name
    assert {(r.strategy, r.n, r.band) for r in profile.rows} == {
        ("isolated", 1, "<64"),
        ("monolithic", 1, "<64"),
    }
    note = Document(id="note.txt", text="The access code for the jade chest is 5179.")
    result = Coordinator(llama_backend, strategy="auto", profile=tmp_path / "profile.json").run(
        Request(documents=(note,), question="What is the access code for the jade chest?")
    )
    assert result.choice is not None and result.choice.source == "profile"
    assert result.choice.expected is not None and result.choice.expected.how == "measured at N=1"
    assert result.strategy == result.choice.strategy
    # The 270M model sometimes cites "[2]" beside the only document "[1]": the line stands, cited
    # to the document that says it, and the wrong citation is recorded.
    (answer,) = result.answers
    assert "5179" in (answer.answer or "") and "5179" in result.answer, result.invalid_citations
    renamed = profile.model_copy(
        update={"model": ModelIdentity(name=gemma_path.name, sha256="0" * 64)}
    )
    with pytest.raises(UserError, match="sha256 000000000000"):
        Coordinator(llama_backend, strategy="auto", profile=renamed)
