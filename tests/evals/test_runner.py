from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals.records import EvalResults
from fanout.evals.runner import evaluate

from .conftest import oracle


class Recorder:
    def __init__(self) -> None:
        self.total = self.done = 0
        self.labels: list[str] = []

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advance(self, label: str) -> None:
        self.labels.append(label)


def test_a_sweep_writes_well_formed_reports(tmp_path: Path) -> None:
    report = evaluate(
        ScriptedBackend(fn=oracle),
        suite="keyvalue",
        strategies=["isolated", "monolithic", "mti"],
        instances=[1, 3],
        groups=2,
        faults="error=0.3,garbage=0.2",
        out=tmp_path,
    )
    names = {p.name for p in tmp_path.iterdir()}
    assert names >= {"results.json", "report.md", "report.html", "accuracy_vs_n.png",
                     "tokens_vs_n.png", "wall_vs_n.png", "blast_radius.png"}  # fmt: skip
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = EvalResults.load(tmp_path / "results.json")
    assert len(results.records) == 3 * 2 * 2 * 2  # strategies x N x groups x (clean, faulted)
    assert sum(len(r.answers) for r in results.records if r.condition == "clean") == 3 * (2 + 6)
    assert json.loads((tmp_path / "results.json").read_text())["format"] == "fanout-eval/1"
    markdown = (tmp_path / "report.md").read_text()
    assert "| strategy | routing | N | questions | accuracy [95% CI] |" in markdown
    assert "| isolated | blind | 3 | 6 | 100% [61%-100%] |" in markdown
    assert "## Cascading failure" in markdown and "![accuracy_vs_n](accuracy_vs_n.png)" in markdown
    assert all(x.recommendation in markdown for x in report.crossovers)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len({line.count("|") for line in rows[:7]}) == 1  # every row has every column

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.seen: list[str] = []

        def handle_starttag(self, tag: str, attrs: object) -> None:
            self.seen.append(tag)
            if tag not in ("meta", "img", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag

    parser = Tags()
    parser.feed((tmp_path / "report.html").read_text())
    assert parser.open == [] and parser.seen.count("table") == 2 and parser.seen.count("img") == 4
    assert report.cell("isolated", 3) is not None and report.cell("isolated", 7) is None
    assert set(report.files) >= {"results", "markdown", "html", "accuracy_vs_n"}


def test_resume_skips_what_is_already_recorded(tmp_path: Path) -> None:
    first = ScriptedBackend(fn=oracle)
    evaluate(first, strategies=["isolated", "mti"], instances=[1, 2], groups=2, out=tmp_path)
    # isolated (blind): one call per question and document; mti: one per group
    assert len(first.calls) == (1 * 1 + 2 * 2) * 2 + 2 * 2
    again = ScriptedBackend(fn=oracle)
    progress = Recorder()
    report = evaluate(again, strategies=["isolated", "mti"], instances=[1, 2, 3], groups=2,
                      out=tmp_path, progress=progress)  # fmt: skip
    assert len(again.calls) == 3 * 3 * 2 + 2  # only the N=3 cells ran
    assert (progress.total, progress.done, len(progress.labels)) == (12, 8, 4)
    assert progress.labels[0] == "isolated N=3 group 1/2"
    assert sorted({(c.strategy, c.n) for c in report.cells}) == [
        ("isolated", 1), ("isolated", 2), ("isolated", 3), ("mti", 1), ("mti", 2), ("mti", 3)
    ]  # fmt: skip
    assert report.config.instances == [1, 2, 3]
    nothing = ScriptedBackend()  # any call would fail the test
    evaluate(nothing, strategies=["mti"], instances=[2], groups=2, out=tmp_path)
    nothing.assert_consumed()


def test_resume_refuses_a_different_eval(tmp_path: Path) -> None:
    evaluate(ScriptedBackend(fn=oracle), strategies=["mti"], instances=[1], groups=1, out=tmp_path)
    with pytest.raises(
        UserError, match=r"holds a different eval \(it differs in seed \(0 there, 5 now\)"
    ):
        evaluate(ScriptedBackend(fn=oracle), strategies=["mti"], instances=[1], groups=1,
                 seed=5, out=tmp_path)  # fmt: skip
    (tmp_path / "results.json").write_text('{"config": 3}')
    with pytest.raises(UserError, match="is not a fanout results file"):
        evaluate(ScriptedBackend(fn=oracle), strategies=["mti"], instances=[1], groups=1,
                 out=tmp_path)  # fmt: skip


def test_faulted_runs_are_reproducible() -> None:
    def sweep() -> list[tuple[str, int, int, str, list[str], list[str]]]:
        report = evaluate(ScriptedBackend(fn=oracle), strategies=["isolated", "mti", "sequential"],
                          instances=[3], groups=3, faults="error=0.2,wrong=0.2", seed=11)  # fmt: skip
        return [
            (r.strategy, r.n, r.group, r.condition, r.faults, [a.answer for a in r.answers])
            for r in report.results.records
        ]

    first = sweep()
    assert first == sweep()
    assert any(faults for *_, faults, _ in first)


def test_isolated_contains_faults_that_mti_spreads() -> None:
    strategies = ["isolated", "isolated-oracle", "mti"]
    report = evaluate(ScriptedBackend(fn=oracle), strategies=strategies, instances=[5],
                      groups=6, faults="error=0.3", seed=2)  # fmt: skip
    blind, oracle_routed = report.cell("isolated", 5), report.cell("isolated-oracle", 5)
    mti = report.cell("mti", 5)
    assert blind is not None and oracle_routed is not None and mti is not None
    assert blind.faults and oracle_routed.faults and mti.faults
    assert blind.faults.injected > 0 and mti.faults.injected > 0
    # One fault costs at most its own answer; blind routing loses less, since a fault in a
    # document that does not hold the answer changes nothing.
    assert oracle_routed.faults.blast_radius == 1.0 and oracle_routed.faults.cascade_rate == 0.0
    assert blind.faults.blast_radius < 1.0 and blind.faults.cascade_rate == 0.0
    assert mti.faults.blast_radius == 5.0 and mti.faults.cascade_rate == 1.0


def test_rescoring_reproduces_the_scores(tmp_path: Path) -> None:
    report = evaluate(ScriptedBackend(fn=oracle), strategies=["monolithic", "batch"],
                      instances=[2], groups=2, out=tmp_path)  # fmt: skip
    again = EvalResults.load(tmp_path / "results.json").rescored()
    assert again.records == report.results.records


def test_bad_sweep_arguments(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="groups: must be at least 1"):
        evaluate(ScriptedBackend(), groups=0)
    with pytest.raises(UserError, match="instances: must list positive numbers"):
        evaluate(ScriptedBackend(), instances=[0])
    with pytest.raises(UserError, match="each once"):
        evaluate(ScriptedBackend(), strategies=["mti", "mti"])
    with pytest.raises(UserError, match="N=101 is larger than the dataset"):
        evaluate(ScriptedBackend(), suite="nq", instances=[1, 101])
