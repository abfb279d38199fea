"""strategy="auto" on scripted profiles whose right choice is known, and its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fanout.agents.backend import CompletionRequest
from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals.metrics import wilson_interval
from fanout.orchestrator.auto import RULE_MONOLITHIC_MAX_N, StrategyChooser
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.profile import ModelIdentity, Profile, ProfileRow, model_identity
from fanout.orchestrator.request import Document, Request

WORDS = "The quarterly report lists the shipments of the northern depot in some detail. "


def row(strategy: str, n: int, correct: int, tokens: float, *, band: str = "64-255",
        questions: int = 20, routing: str = "blind") -> ProfileRow:  # fmt: skip
    low, high = wilson_interval(correct, questions)
    return ProfileRow(
        strategy=strategy, routing=routing, n=n, band=band, groups=questions // n or 1,
        questions=questions, correct=correct, accuracy=correct / questions, ci_low=low,
        ci_high=high, tokens_per_question=tokens, wall_s_per_question=0.1 * n,
    )  # fmt: skip


def profile(*rows: ProfileRow, name: str = "scripted") -> Profile:
    return Profile(model=ModelIdentity(name=name), suite="keyvalue", rows=list(rows))


# The multi-instance penalty, as measured: one prompt is as good and cheaper at N=1, and falls
# apart by N=10, where isolated sub-agents stay right.
PENALTY = profile(
    row("isolated", 1, 20, 250), row("isolated", 10, 20, 2600),
    row("monolithic", 1, 20, 210), row("monolithic", 10, 6, 1100),
    row("mti", 1, 20, 260), row("mti", 10, 2, 150),
    row("pairs", 1, 20, 280, routing="paired"), row("pairs", 10, 19, 240, routing="paired"),
    row("isolated-oracle", 10, 20, 250, routing="oracle"),
)  # fmt: skip


def docs(n: int, repeat: int = 5) -> list[Document]:
    """Documents of about 100 tokens each (the scripted backend counts 4 characters a token)."""
    return [Document(id=f"d{i}.txt", text=f"Note {i}. " + WORDS * repeat) for i in range(n)]


def answer(request: CompletionRequest) -> str:
    doc = request.tags.get("document_id")
    if request.prompt.context_label == "Findings":
        return request.prompt.context.splitlines()[0].removeprefix("- ")
    return "Ada [d0.txt]" if doc == "*" else "Ada"


def run(request: Request, **options: object) -> tuple[object, ScriptedBackend]:
    backend = ScriptedBackend(fn=answer)
    coordinator = Coordinator(backend, strategy="auto", **options)  # type: ignore[arg-type]
    return coordinator.run(request), backend


def test_one_prompt_wins_at_small_n_and_isolated_at_large_n() -> None:
    small, backend = run(Request(documents=tuple(docs(1)), question="Who?"), profile=PENALTY)
    assert small.strategy == "monolithic" and small.choice.chosen == "monolithic"  # type: ignore[attr-defined]
    assert [c.tags["document_id"] for c in backend.calls] == ["*"]
    plan = small.choice  # type: ignore[attr-defined]
    assert plan.source == "profile" and plan.n == 1 and plan.band == "64-255"
    assert plan.expected.accuracy == 1.0 and plan.expected.tokens == 210
    assert "equally accurate and the cheaper" in plan.reason
    assert {r.strategy for r in plan.rows} == {"isolated", "monolithic"}  # never oracle or mti

    large, backend = run(Request(documents=tuple(docs(10)), question="Who?"), profile=PENALTY)
    assert large.strategy == "isolated"  # type: ignore[attr-defined]
    assert len(backend.calls_for(document_id="d3.txt")) == 1
    plan = large.choice  # type: ignore[attr-defined]
    assert plan.expected.accuracy == 1.0 and plan.expected.how == "measured at N=10"
    assert "the most accurate" in plan.reason and "monolithic 30%" in plan.reason


def test_a_measured_top_k_pre_filter_is_a_candidate_and_asks_only_k_documents() -> None:
    """isolated-topk as the eval measured it (k=2): as accurate as isolated and cheaper at N=10,
    so auto runs isolated behind the pre-filter; without its rows it is never a candidate."""
    topk = row("isolated-topk", 10, 20, 600).model_copy(update={"top_k": 2})
    measured = profile(*PENALTY.rows, topk)
    texts = [f"Note {i}. The depot ships pallets." for i in range(10)]
    texts[7] = "Note 7. Ada manages the northern depot."
    request = Request(
        documents=tuple(Document(id=f"d{i}.txt", text=t) for i, t in enumerate(texts)),
        question="Who manages the northern depot?",
    )
    result, backend = run(request, profile=measured)
    choice = result.choice  # type: ignore[attr-defined]
    assert (result.strategy, choice.chosen, choice.top_k) == ("isolated", "isolated-topk", 2)  # type: ignore[attr-defined]
    asked = {c.tags["document_id"] for c in backend.calls} - {"*"}
    assert len(asked) == 2 and "d7.txt" in asked
    assert len(result.unasked) == 8  # type: ignore[attr-defined]
    result, _ = run(request, profile=PENALTY)
    assert result.choice.chosen == "isolated" and result.choice.top_k is None  # type: ignore[attr-defined]
    assert "isolated-topk" not in result.choice.reason  # type: ignore[attr-defined]


def test_between_measured_n_it_interpolates_and_outside_it_says_it_extrapolates() -> None:
    chooser = StrategyChooser.create(PENALTY)
    backend = ScriptedBackend(fn=answer)
    plan = chooser.choose(Request(documents=tuple(docs(4)), question="Who?"), backend)
    mono = next(e for e in plan.candidates if e.strategy == "monolithic")
    # N=4 is a third of the way from N=1 to N=10: accuracy 100% -> 30%, tokens 210 -> 1,100.
    assert mono.accuracy == pytest.approx(1.0 - 0.7 / 3)
    assert mono.tokens == pytest.approx(210 + 890 / 3)
    assert mono.how == "interpolated between N=1 and N=10" and not plan.extrapolated
    assert [r.n for r in mono.rows] == [1, 10]
    assert plan.chosen == "isolated"

    far = chooser.choose(Request(documents=tuple(docs(20)), question="Who?"), backend)
    iso = far.expected
    assert far.extrapolated and iso is not None and iso.extrapolated
    assert "extrapolated: N=20 is outside the measured N=1-10" in far.reason
    assert iso.accuracy == 1.0  # as at the nearest N measured
    assert iso.tokens == pytest.approx(2600 + (2600 - 250) / 9 * 10)  # the last segment, extended


def test_cost_objective_takes_the_cheapest_above_the_floor() -> None:
    backend = ScriptedBackend(fn=answer)
    request = Request(documents=tuple(docs(4)), question="Who?")
    # At N=4: isolated 100% at ~1,033 tokens, monolithic ~77% at ~507 tokens.
    lenient = StrategyChooser.create(PENALTY, objective="cost", min_accuracy=0.7)
    plan = lenient.choose(request, backend)
    assert plan.chosen == "monolithic" and "the cheapest expected to reach 70%" in plan.reason
    strict = StrategyChooser.create(PENALTY, objective="cost", min_accuracy=0.8)
    assert strict.choose(request, backend).chosen == "isolated"
    unreachable = profile(row("isolated", 4, 10, 900), row("monolithic", 4, 12, 400))
    plan = StrategyChooser.create(unreachable, objective="cost", min_accuracy=0.9).choose(
        request, backend
    )
    assert plan.chosen == "monolithic" and "none is expected to reach 90%" in plan.reason
    # The accuracy objective on the same request: the most accurate, whatever it costs.
    assert StrategyChooser.create(PENALTY).choose(request, backend).chosen == "isolated"


def test_paired_and_instruction_requests_choose_between_their_own_candidates() -> None:
    backend = ScriptedBackend(fn=answer)
    chooser = StrategyChooser.create(PENALTY)
    pairs = Request.pairs([(d, "Classify.") for d in docs(10)])
    plan = chooser.choose(pairs, backend)
    assert plan.shape == "paired" and plan.chosen == "pairs" and plan.strategy == "isolated"
    assert {e.strategy for e in plan.candidates} == {"pairs", "mti"}
    assert plan.expected is not None and plan.expected.tokens == 240 * 10  # per question x N
    one = chooser.choose(Request.pairs([(docs(1)[0], "Classify.")]), backend)
    assert one.chosen == "mti" and one.strategy == "monolithic"
    tasks = Request.from_text(docs(1)[0].text, [f"Task {i}." for i in range(10)])
    plan = chooser.choose(tasks, backend)
    assert plan.shape == "instructions" and plan.n == 10
    assert {e.strategy for e in plan.candidates} == {"isolated", "mti"}
    assert plan.chosen == "isolated"


def test_document_length_and_context_limit_are_taken_into_account() -> None:
    backend = ScriptedBackend(fn=answer)
    chooser = StrategyChooser.create(PENALTY)
    long_docs = Request(documents=tuple(docs(1, repeat=120)), question="Who?")  # ~2,400 tokens
    plan = chooser.choose(long_docs, backend)
    assert plan.band == "1024-4095" and plan.extrapolated
    assert "documents of 1024-4095 tokens were not measured (used 64-255)" in plan.reason
    small_context = ScriptedBackend(fn=answer, context_window=1024)
    plan = chooser.choose(
        Request(documents=tuple(docs(2, repeat=30)), question="Who?"), small_context
    )
    assert plan.chosen == "isolated"
    assert {e.strategy for e in plan.candidates} == {"isolated"}
    assert "one prompt would need" in plan.reason and "the context holds 1,024" in plan.reason


def test_without_a_profile_a_conservative_rule_decides_and_says_so() -> None:
    backend = ScriptedBackend(fn=answer)
    rule = StrategyChooser.create()
    small = rule.choose(
        Request(documents=tuple(docs(RULE_MONOLITHIC_MAX_N)), question="Q"), backend
    )
    assert small.source == "rule" and small.strategy == "monolithic" and small.expected is None
    assert small.reason.startswith("no profile: built-in rule")
    large = rule.choose(
        Request(documents=tuple(docs(RULE_MONOLITHIC_MAX_N + 1)), question="Q"), backend
    )
    assert large.strategy == "isolated" and large.rows == []
    result, _ = run(Request(documents=tuple(docs(5)), question="Who?"))
    assert result.choice.source == "rule" and result.strategy == "isolated"  # type: ignore[attr-defined]


def test_a_profile_missing_a_candidate_uses_what_it_measured_and_refuses_when_none() -> None:
    backend = ScriptedBackend(fn=answer)
    only = StrategyChooser.create(profile(row("isolated", 5, 20, 1300)))
    plan = only.choose(Request(documents=tuple(docs(1)), question="Q"), backend)
    assert plan.chosen == "isolated" and "monolithic is not in the profile" in plan.reason
    with pytest.raises(UserError, match="measured none of pairs, mti") as info:
        only.choose(Request.pairs([(d, "Classify.") for d in docs(3)]), backend)
    assert "\n" not in str(info.value)


def test_the_plan_is_in_the_result_json() -> None:
    result, _ = run(Request(documents=tuple(docs(10)), question="Who?"), profile=PENALTY)
    data = json.loads(result.model_dump_json())  # type: ignore[attr-defined]
    assert data["choice"]["chosen"] == "isolated"
    assert {r["n"] for r in data["choice"]["candidates"][0]["rows"]} == {10}


def test_a_profile_of_another_model_is_refused_in_one_line() -> None:
    with pytest.raises(UserError) as info:
        Coordinator(ScriptedBackend(fn=answer, name="other.gguf"), strategy="auto", profile=PENALTY)
    message = str(info.value)
    assert "measured on scripted, not on this run's model other.gguf" in message
    assert "\n" not in message
    hashed = Profile(
        model=ModelIdentity(name="scripted", sha256="ab" * 32), suite="kv", rows=PENALTY.rows
    )
    with pytest.raises(UserError, match=r"scripted \(sha256 abababababab\)"):
        Coordinator(ScriptedBackend(fn=answer), strategy="auto", profile=hashed)


def test_identity_of_a_local_file_is_its_hash_and_wrappers_are_seen_through(tmp_path: Path) -> None:
    from fanout.agents.fallback import FallbackBackend

    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF weights")
    copy = tmp_path / "renamed.gguf"
    copy.write_bytes(b"GGUF weights")
    backend = ScriptedBackend(fn=answer)
    backend.model_path = weights  # type: ignore[attr-defined]
    mine = model_identity(FallbackBackend(backend, ScriptedBackend(fn=answer, name="b")))
    assert mine.name == "tiny.gguf"
    import hashlib

    assert mine.sha256 == hashlib.sha256(b"GGUF weights").hexdigest()
    assert mine.same_model(ModelIdentity(name=copy.name, sha256=mine.sha256))
    assert not mine.same_model(ModelIdentity(name="tiny.gguf"))  # a name alone is not the file


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read profile"),
        ("{not json", "is not a fanout profile"),
        ('{"model": {"name": "m"}, "suite": "kv"}', "holds no measurements"),
        ('{"format": "other/9", "model": {"name": "m"}, "suite": "kv", "rows": []}',
         "has profile format 'other/9'"),
        ("ROW", "accuracy 0.9 lies outside its interval"),
        ("DUP", "two rows for isolated at N=1"),
        ("BAND", "unknown band 'huge'"),
    ],
)  # fmt: skip
def test_bad_profiles_are_one_line_errors(tmp_path: Path, content: str | None,
                                          fragment: str) -> None:  # fmt: skip
    path = tmp_path / "profile.json"
    good = row("isolated", 1, 20, 250).model_dump()
    if content == "ROW":
        content = json.dumps({"model": {"name": "m"}, "suite": "kv",
                              "rows": [{**good, "accuracy": 0.9, "ci_low": 0.95}]})  # fmt: skip
    elif content == "DUP":
        content = json.dumps({"model": {"name": "m"}, "suite": "kv", "rows": [good, good]})
    elif content == "BAND":
        content = json.dumps({"model": {"name": "m"}, "suite": "kv",
                              "rows": [{**good, "band": "huge"}]})  # fmt: skip
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as info:
        Coordinator(ScriptedBackend(fn=answer), strategy="auto", profile=path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"objective": "fast"}, "unknown objective 'fast'"),
        ({"objective": "cost"}, "needs a minimum accuracy"),
        ({"min_accuracy": 0.8}, "applies to the cost objective only"),
        ({"objective": "cost", "min_accuracy": 80}, "between 0 and 1, not 80"),
    ],
)
def test_bad_objectives_are_one_line_errors(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        Coordinator(ScriptedBackend(fn=answer), strategy="auto", profile=PENALTY, **options)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="profile: applies to strategy 'auto' only, not 'isolated'"):
        Coordinator(ScriptedBackend(fn=answer), profile=PENALTY)


def test_a_checkpointed_run_keeps_its_plan(tmp_path: Path) -> None:
    from fanout.agents._portal import run_sync
    from fanout.orchestrator.checkpoint import open_checkpoint

    request = Request(documents=tuple(docs(10)), question="Who?")
    backend = ScriptedBackend(fn=answer)
    saved = open_checkpoint(tmp_path / "run.db")
    coordinator = Coordinator(backend, strategy="auto", profile=PENALTY, **vars(saved))
    first = coordinator.run(request, run_id="r1")
    calls = len(backend.calls)
    again = coordinator.run(request, run_id="r1")  # finished: read back, no model call
    run_sync(saved.checkpointer.conn.close())
    saved.result_store.close()
    assert len(backend.calls) == calls
    assert (
        again.choice == first.choice and again.choice is not None and again.strategy == "isolated"
    )


def test_unbanded_rows_fill_the_n_a_banded_resume_did_not_measure() -> None:
    """A sweep resumed after lengths were recorded has banded rows at N=20 only: N=1 must come
    from the unbanded N=1 rows, not be extrapolated from N=20 (seen on the real keyvalue profile)."""
    from fanout.orchestrator.auto import _band_rows
    from fanout.orchestrator.profile import ProfileRow

    def row(n: int, band: str) -> ProfileRow:
        return ProfileRow(strategy="monolithic", routing="blind", n=n, band=band, groups=4,
                          questions=4 * n, correct=n, accuracy=0.25, ci_low=0.1, ci_high=0.5,
                          tokens_per_question=100.0 * n, wall_s_per_question=1.0)  # fmt: skip

    rows = [row(1, "any"), row(10, "any"), row(20, "any"), row(20, "64-255")]
    chosen, note = _band_rows(rows, 1)
    assert note is None
    assert sorted((r.n, r.band) for r in chosen) == [(1, "any"), (10, "any"), (20, "64-255")]
