from __future__ import annotations

from pathlib import Path

import pytest

from fanout.agents.backend import Prices
from fanout.agents.errors import UserError
from fanout.evals.crossover import find_crossover
from fanout.evals.metrics import (
    PriceTable,
    affected_questions,
    cell_metrics,
    conditional_correct,
    load_prices,
    wilson_interval,
)
from fanout.evals.records import AnswerRecord, Condition, GroupRecord
from fanout.evals.suites import Question


def test_wilson_interval_matches_hand_computed_values() -> None:
    # 8/10: p=.8, z²=3.8415; centre=(.8+.19207)/1.38415=.71674; half=1.96*sqrt(.016+.0096037)/1.38415
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 0/10 and 10/10 stay inside [0, 1]: z²/(n+z²) = 3.8415/13.8415 = .27753
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    # 1/2: centre .5, half = 1.96*sqrt(.125+3.8415/16)/(1+3.8415/2) = 1.18429/2.92073 = .40548
    assert wilson_interval(1, 2) == pytest.approx((0.09452, 0.90548), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def _answer(
    qid: str,
    *,
    correct: bool,
    status: str = "ok",
    text: str | None = None,
    after: str | None = None,
    marker: str | None = None,
    hijacked: bool = False,
) -> AnswerRecord:
    question = Question(id=qid, text="?", answers=("gold",), after=after, hijack_marker=marker)
    answer = text if text is not None else ("gold" if correct else "wrong")
    return AnswerRecord(
        question=question,
        status=status,  # type: ignore[arg-type]
        output=answer if status == "ok" else None,
        answer=answer if status == "ok" else "",
        correct=correct,
        hijacked=hijacked,
    )


def _record(
    strategy: str,
    n: int,
    group: int,
    answers: list[AnswerRecord],
    *,
    condition: Condition = "clean",
    prompt: int = 100,
    completion: int = 10,
    calls: int = 1,
    wall: float = 1.0,
    faults: list[str] | None = None,
    error: str | None = None,
) -> GroupRecord:
    return GroupRecord(
        strategy=strategy, n=n, group=group, group_id=f"g{group}", condition=condition,
        answers=answers, prompt_tokens=prompt, completion_tokens=completion, calls=calls,
        wall_s=wall, faults=faults or [], error=error,
    )  # fmt: skip


def test_cell_metrics_hand_computed() -> None:
    records = [
        _record("isolated", 2, 0, [_answer("a", correct=True), _answer("b", correct=False)],
                prompt=300, completion=20, calls=2, wall=2.0),
        _record("isolated", 2, 1, [_answer("c", correct=True),
                                   _answer("d", correct=False, status="format")],
                prompt=100, completion=80, calls=2, wall=4.0),
    ]  # fmt: skip
    [cell] = cell_metrics(records)
    assert (cell.groups, cell.questions, cell.correct) == (2, 4, 2)
    assert cell.accuracy == 0.5
    # Wilson 2/4: centre (.5+.48019)/1.96039=.5, half=1.96*sqrt(.0625+.060024)/1.96039=.34992
    assert (cell.ci_low, cell.ci_high) == pytest.approx((0.15004, 0.84996), abs=1e-4)
    assert cell.format_failures == 1 and cell.format_failure_rate == 0.25
    assert (cell.calls, cell.prompt_tokens, cell.completion_tokens) == (4, 400, 100)
    assert cell.tokens_per_correct == 250.0  # 500 tokens / 2 correct
    assert cell.wall_s == 6.0 and cell.wall_s_per_group == 3.0
    assert cell.cost_usd == 0.0
    assert cell.conditional_accuracy is None and cell.hijack_rate is None and cell.faults is None


def test_cost_comes_from_the_price_table() -> None:
    records = [
        _record("mti", 1, 0, [_answer("a", correct=True)], prompt=2_000_000, completion=500_000)
    ]
    prices = PriceTable(models={"gpt-x": Prices(input_per_mtok=0.5, output_per_mtok=2.0)})
    [cell] = cell_metrics(records, model="gpt-x", prices=prices)
    assert cell.cost_usd == pytest.approx(2.0)  # 2 x 0.5 + 0.5 x 2.0
    [unpriced] = cell_metrics(records, model="other", prices=prices)
    assert unpriced.cost_usd == 0.0


def test_load_prices(tmp_path: Path) -> None:
    good = tmp_path / "prices.toml"
    good.write_text("[gpt-x]\ninput_per_mtok = 0.5\noutput_per_mtok = 2.0\n")
    assert load_prices(good).cost("gpt-x", 1_000_000, 0) == 0.5
    bad = tmp_path / "prices.json"
    bad.write_text('{"gpt-x": {"input_per_mtok": "cheap"}}')
    with pytest.raises(UserError, match=r"gpt-x\.input_per_mtok"):
        load_prices(bad)
    bad.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_prices(bad)


def test_conditional_accuracy_counts_a_step_only_after_right_earlier_steps() -> None:
    answers = [
        _answer("s1", correct=True),
        _answer("s2", correct=False, after="s1"),
        _answer("s3", correct=True, after="s2"),
        _answer("s4", correct=True, after="s3"),
        _answer("free", correct=True),
    ]
    assert conditional_correct(answers) == [True, False, False, False]
    [cell] = cell_metrics([_record("sequential", 4, 0, answers)])
    assert cell.conditional_accuracy == 0.25
    assert cell.accuracy == 0.8


def test_hijack_rate() -> None:
    answers = [
        _answer(f"q{i}", correct=False, marker="PINEAPPLE", hijacked=i < 3) for i in range(4)
    ]
    [cell] = cell_metrics([_record("monolithic", 4, 0, answers)])
    assert cell.hijack_rate == 0.75


def test_blast_radius_and_cascade_rate_hand_computed() -> None:
    clean = [
        _record("mti", 3, 0, [_answer("a", correct=True), _answer("b", correct=True),
                              _answer("c", correct=False)]),
        _record("mti", 3, 1, [_answer("d", correct=True), _answer("e", correct=True),
                              _answer("f", correct=True)]),
        _record("mti", 3, 2, [_answer("g", correct=True), _answer("h", correct=True),
                              _answer("i", correct=True)]),
    ]  # fmt: skip
    faulted = [
        # one garbage fault took out every answer of the call: 3 affected by 1 fault -> cascade
        _record("mti", 3, 0, [_answer(x, correct=False, status="format") for x in "abc"],
                condition="faulted", faults=["garbage"]),
        # one wrong-answer fault changed exactly one answer: contained
        _record("mti", 3, 1, [_answer("d", correct=True), _answer("e", correct=False, text="xyzzy"),
                              _answer("f", correct=True)], condition="faulted", faults=["wrong"]),
        # no fault, yet one answer changed: the backend's own drift, not blamed on any fault
        _record("mti", 3, 2, [_answer("g", correct=True), _answer("h", correct=False),
                              _answer("i", correct=True)], condition="faulted"),
    ]  # fmt: skip
    assert affected_questions(clean[0], faulted[0]) == 3
    assert affected_questions(clean[1], faulted[1]) == 1
    [cell] = cell_metrics(clean + faulted)
    f = cell.faults
    assert f is not None
    assert (f.groups, f.injected, f.affected) == (3, 2, 4)
    assert (f.faulted_groups, f.cascaded_groups) == (2, 1)
    assert f.blast_radius == 2.0 and f.cascade_rate == 0.5
    assert f.drift == pytest.approx(1 / 3)
    assert f.by_kind == {"garbage": 1, "wrong": 1}
    assert (f.correct, f.questions) == (4, 9)


def test_a_failed_request_affects_every_question_and_cascades() -> None:
    clean = _record("chain", 2, 0, [_answer("a", correct=True), _answer("b", correct=False)])
    failed = _record("chain", 2, 0, [_answer(x, correct=False, status="failed") for x in "ab"],
                     condition="faulted", faults=["error"], error="BackendUnavailable: boom")  # fmt: skip
    assert affected_questions(clean, failed) == 2
    [cell] = cell_metrics([clean, failed])
    assert cell.faults is not None and cell.faults.cascade_rate == 1.0


def _cells(acc: dict[str, list[tuple[int, int, int]]]) -> list:  # type: ignore[type-arg]
    records = []
    for strategy, rows in acc.items():
        for n, correct, tokens in rows:
            answers = [_answer(f"q{i}", correct=i < correct) for i in range(20)]
            records.append(_record(strategy, n, 0, answers, prompt=tokens, completion=0))
    return cell_metrics(records)


def test_crossover_is_the_smallest_n_beyond_the_interval() -> None:
    cells = _cells({
        "isolated": [(1, 19, 100), (5, 18, 500), (10, 18, 1000)],
        "monolithic": [(1, 19, 100), (5, 10, 2000), (10, 4, 4000)],
    })  # fmt: skip
    crossover = find_crossover(cells, suite="keyvalue", model="m")
    assert crossover is not None
    # N=5: isolated 18/20 [.699,.972] vs monolithic 10/20 [.299,.701]: .699 < .701, overlap
    # N=10: isolated [.699,.972] vs 4/20 [.081,.416]: separated
    assert crossover.n == 10
    assert crossover.ratio == 0.25 and crossover.ratio_of == "tokens"
    assert "beats monolithic from N=10" in crossover.recommendation


def test_crossover_reports_no_winner_and_a_baseline_win() -> None:
    tie = _cells({"isolated": [(1, 10, 100)], "monolithic": [(1, 11, 50)]})
    crossover = find_crossover(tie, suite="s", model="m")
    assert crossover is not None and crossover.n is None and crossover.baseline_wins_at is None
    assert "no crossover" in crossover.recommendation
    loss = _cells({"isolated": [(2, 2, 100)], "monolithic": [(2, 18, 50)]})
    crossover = find_crossover(loss, suite="s", model="m")
    assert crossover is not None and crossover.baseline_wins_at == 2
    assert "prefer monolithic" in crossover.recommendation
    assert find_crossover(loss, suite="s", model="m", baseline="mti") is None
