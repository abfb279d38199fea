"""profile.json from a scripted sweep, and the auto strategy checked against every fixed one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals._profile import build_profile
from fanout.evals.records import EvalResults
from fanout.evals.runner import evaluate
from fanout.orchestrator.auto import StrategyChooser
from fanout.orchestrator.profile import Profile
from fanout.orchestrator.request import Document, Request

from .conftest import confused


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profile of the confused model: right alone, wrong with more than two documents."""
    out = tmp_path_factory.mktemp("profile")
    evaluate(
        ScriptedBackend(fn=confused),
        suite="keyvalue",
        strategies=["isolated", "monolithic", "mti", "isolated-oracle"],
        instances=[1, 2, 6],
        groups=2,
        seed=0,
        out=out,
    )
    return out / "profile.json"


def test_an_eval_writes_a_profile_per_strategy_n_and_length_band(measured: Path) -> None:
    profile = Profile.load(measured)
    assert profile.model.name == "scripted" and profile.model.sha256 is None
    assert profile.suite == "keyvalue" and "seed 0" in profile.source
    cells = {(r.strategy, r.n): r for r in profile.rows}
    assert set(cells) == {(s, n) for s in ("isolated", "monolithic", "mti", "isolated-oracle")
                          for n in (1, 2, 6)}  # fmt: skip
    assert {r.band for r in profile.rows} == {"64-255"}  # 120-token documents
    assert all(90 <= (r.document_tokens or 0) <= 200 for r in profile.rows)
    assert cells[("isolated-oracle", 6)].routing == "oracle"
    assert cells[("monolithic", 6)].accuracy == pytest.approx(2 / 12)  # the two doc-1 questions
    assert cells[("monolithic", 2)].accuracy == 1.0 and cells[("isolated", 6)].accuracy == 1.0
    mono = cells[("monolithic", 6)]
    assert mono.ci_low < mono.accuracy < mono.ci_high and mono.questions == 12
    assert cells[("isolated", 6)].tokens_per_question > cells[("isolated", 1)].tokens_per_question


def test_auto_on_other_groups_matches_the_best_fixed_strategy_at_each_n(
    measured: Path, tmp_path: Path
) -> None:
    backend = ScriptedBackend(fn=confused)
    report = evaluate(
        backend,
        suite="keyvalue",
        strategies=["isolated", "monolithic", "auto"],
        instances=[1, 4, 8],
        groups=2,
        seed=1,  # not the groups the profile was measured on
        auto=StrategyChooser.create(measured),
        out=tmp_path,
    )
    checks = {c.n: c for c in report.auto_checks}
    assert checks[1].chosen == {"monolithic": 2} and checks[1].best == "monolithic"
    assert checks[4].chosen == {"isolated": 8} and checks[8].chosen == {"isolated": 16}
    assert all(c.passed for c in checks.values())
    assert checks[8].tokens == checks[8].best_tokens
    markdown = (tmp_path / "report.md").read_text()
    assert "## auto against the best fixed strategy" in markdown
    assert "| 1 | monolithic 2 | 100% [34%-100%] | monolithic |" in markdown
    assert "keyvalue profile of scripted" in markdown  # what auto chose from, in the settings
    # The new profile.json holds the fixed strategies only: auto never learns from itself.
    assert {r.strategy for r in Profile.load(tmp_path / "profile.json").rows} == {
        "isolated",
        "monolithic",
    }
    # Completion lengths vary a little between two runs of one strategy: 1% counts as equal.
    from fanout.evals._auto_check import check_auto

    best, auto = report.cell("isolated", 8), report.cell("auto", 8)
    assert best is not None and auto is not None
    for extra, ok in ((best.total_tokens // 200, True), (best.total_tokens // 50, False)):
        heavier = auto.model_copy(update={"completion_tokens": auto.completion_tokens + extra})
        (check,) = check_auto([best, heavier], [])
        assert check.no_more_tokens is ok and check.within_interval
    records = EvalResults.load(tmp_path / "results.json").records
    assert {a.chosen for r in records if r.strategy == "auto" for a in r.answers} == {
        "monolithic",
        "isolated",
    }


def test_auto_that_chooses_badly_is_reported_as_a_miss(tmp_path: Path) -> None:
    # A profile that claims one prompt stays right at every N: auto follows it and misses.
    wrong = Profile.model_validate_json(
        json.dumps(
            {
                "model": {"name": "scripted"},
                "suite": "keyvalue",
                "rows": [
                    {"strategy": s, "routing": "blind", "n": 8, "band": "64-255", "groups": 2,
                     "questions": 16, "correct": 16, "accuracy": 1.0, "ci_low": 0.8,
                     "ci_high": 1.0, "tokens_per_question": t, "wall_s_per_question": 0.1}
                    for s, t in (("isolated", 2600.0), ("monolithic", 1100.0))
                ],
            }
        )
    )  # fmt: skip
    report = evaluate(
        ScriptedBackend(fn=confused),
        suite="keyvalue",
        strategies=["isolated", "monolithic", "auto"],
        instances=[8],
        groups=1,
        seed=1,
        auto=StrategyChooser(profile=wrong),
    )
    (check,) = report.auto_checks
    assert check.chosen == {"monolithic": 8} and check.best == "isolated"
    assert not check.within_interval and not check.passed


def test_a_profile_of_another_model_is_refused_before_any_call(measured: Path) -> None:
    other = ScriptedBackend(fn=confused, name="another.gguf")
    with pytest.raises(UserError, match="measured on scripted, not on this run's model another"):
        evaluate(
            other,
            suite="keyvalue",
            strategies=["isolated", "auto"],
            instances=[2],
            groups=1,
            auto=StrategyChooser.create(measured),
        )
    assert other.calls == []


def test_results_without_document_lengths_give_band_any(measured: Path) -> None:
    results = EvalResults.load(measured.parent / "results.json")
    older = results.model_copy(
        update={
            "records": [r.model_copy(update={"document_tokens": None}) for r in results.records]
        }
    )
    profile = build_profile(older)
    assert {r.band for r in profile.rows} == {"any"}
    documents = tuple(Document(id=f"d{i}", text="filler text " * 40) for i in range(6))
    request = Request(documents=documents, question="What is the access code for the jade safe?")
    plan = StrategyChooser(profile=profile).choose(request, ScriptedBackend(fn=confused))
    assert plan.chosen == "isolated" and not plan.extrapolated


@pytest.fixture
def app() -> typer.Typer:
    from fanout.cli import app

    return app


def test_eval_cli_auto_options_are_checked_before_the_model(
    app: typer.Typer, measured: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import fanout.agents._factory as factory

    made: list[ScriptedBackend] = []
    monkeypatch.setattr(
        factory,
        "make_backend",
        lambda kind, **o: made.append(ScriptedBackend(fn=confused)) or made[-1],
    )

    def fails(*args: str) -> str:
        result = CliRunner().invoke(
            app, ["eval", "--suite", "keyvalue", "--out", str(tmp_path), *args]
        )
        assert isinstance(result.exception, UserError), result.output
        return str(result.exception)

    assert "go with the strategy auto" in fails("--profile", str(measured))
    assert "cannot read profile" in fails("--strategies", "auto", "--profile", "nope.json")
    assert "needs a minimum accuracy" in fails("--strategies", "auto", "--objective", "cost")
    assert made == []
    ok = CliRunner().invoke(app, [
        "eval", "--suite", "keyvalue", "--strategies", "monolithic,auto", "--instances", "1,6",
        "--groups", "1", "--seed", "3", "--profile", str(measured), "--out", str(tmp_path / "run"),
    ])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "auto N=6 (isolated 6): 100% vs best fixed monolithic 17% [3%-56%]" in ok.output
    assert "ok (more accurate beyond its interval)" in ok.output
    assert "auto N=1 (monolithic 1): 100% vs best fixed monolithic" in ok.output
    assert (tmp_path / "run" / "profile.json").exists()


def test_a_measured_top_k_reaches_the_profile_with_its_k(tmp_path: Path) -> None:
    """isolated-topk's rows carry the k they were measured with: auto runs the same filter."""
    evaluate(
        ScriptedBackend(fn=confused),
        suite="keyvalue",
        strategies=["isolated", "isolated-topk"],
        instances=[4],
        groups=1,
        top_k=2,
        out=tmp_path,
    )
    profile = build_profile(EvalResults.load(tmp_path / "results.json"))
    assert {(r.strategy, r.top_k) for r in profile.rows} == {
        ("isolated", None),
        ("isolated-topk", 2),
    }
    assert Profile.load(tmp_path / "profile.json") == profile
