"""A run budget: the call that could pass it is not made, nothing finished is lost, the run says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request

DOCS = tuple(Document(id=f"d{i}.md", text=f"Note {i}: the code is {1000 + i}.") for i in range(4))
REQUEST = Request(documents=DOCS, question="What is the code of note 2?")


def answer(request) -> str:  # type: ignore[no-untyped-def]
    return (
        request.prompt.context.split()[-1].rstrip(".")
        if request.tags["document_id"] != "*"
        else "x"
    )


def one_call_tokens() -> int:
    """What one sub-agent call of this request may spend (prompt plus completion budget)."""
    probe = ScriptedBackend(fn=answer)
    coordinator = Coordinator(probe, synthesis="collect", policy=CallPolicy(max_tokens=8))
    return coordinator.kit.estimate(coordinator.plan(REQUEST)) // len(DOCS)


def test_the_call_that_could_pass_the_budget_is_not_made() -> None:
    per_call = one_call_tokens()
    backend = ScriptedBackend(fn=answer)
    policy = CallPolicy(max_concurrency=1, max_tokens=8, budget_tokens=2 * per_call + per_call // 2)
    result = Coordinator(backend, policy=policy, synthesis="collect").run(REQUEST)
    assert backend.n_calls == 2
    ok = [r for r in result.sub_results if r.status == "ok"]
    stopped = [r for r in result.sub_results if r.status == "failed"]
    assert len(ok) == 2 and len(stopped) == 2
    assert all((r.error or "").startswith("BudgetExceeded") for r in stopped)
    assert result.usage.total_tokens <= policy.budget_tokens
    assert not result.ok and any(
        n.startswith("Budget reached: 2 sub-agent(s)") for n in result.notes
    )


def test_concurrent_calls_cannot_pass_the_budget_together() -> None:
    per_call = one_call_tokens()
    backend = ScriptedBackend(fn=answer, delay_s=0.05)  # all four would start at once
    policy = CallPolicy(max_concurrency=4, max_tokens=8, budget_tokens=2 * per_call + per_call // 2)
    result = Coordinator(backend, policy=policy, synthesis="collect").run(REQUEST)
    assert backend.n_calls == 2 and backend.max_in_flight == 2
    assert result.usage.total_tokens <= policy.budget_tokens


def test_a_dollar_budget_uses_the_backends_prices() -> None:
    from fanout.agents.backend import Prices

    backend = ScriptedBackend(fn=answer)
    backend.prices = Prices(input_per_mtok=1_000_000.0)  # a dollar a token  # type: ignore[attr-defined]
    policy = CallPolicy(max_concurrency=1, max_tokens=8, budget_usd=1.0)
    result = Coordinator(backend, policy=policy, synthesis="collect").run(REQUEST)
    assert backend.n_calls == 0 and all(r.status == "failed" for r in result.sub_results)


@pytest.mark.parametrize(
    "bad", [{"budget_tokens": 0}, {"budget_usd": 0.0}, {"budget_usd": float("nan")}]
)
def test_a_budget_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(UserError):
        CallPolicy(**bad)  # type: ignore[arg-type]


@pytest.mark.integration
def test_the_cli_shows_the_estimate_first_and_stops_at_the_budget(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """On the embedded model: the plan line carries the estimate; the run ends exit 1 with a note."""
    from tests.orchestrator.test_cli import run_cli

    for doc in DOCS:
        (tmp_path / doc.id).write_text(doc.text)
    code, out, err = run_cli(capsys, "run", str(tmp_path), "-q", "What is the code of note 2?",
                             "--budget-tokens", "600", "--max-concurrency", "1")  # fmt: skip
    plan = next(line for line in err.splitlines() if line.startswith("fanout: plan:"))
    estimate = int(plan.split("up to ~")[1].split(" tokens")[0].replace(",", ""))
    assert estimate > 600 and plan.endswith("budget 600")
    assert code == 1, err
    assert "Budget reached:" in out and "not run" in out
    assert "Traceback" not in err


def test_a_run_stopped_by_its_budget_resumes_with_a_larger_one(tmp_path: Path) -> None:
    """The finished sub-results are kept; rerun under the same run id with more budget, only the
    sub-agents the budget stopped are called."""
    from fanout.orchestrator import SqliteResultStore

    per_call = one_call_tokens()
    store = SqliteResultStore(tmp_path / "run.db")
    first = ScriptedBackend(fn=answer)
    tight = CallPolicy(max_concurrency=1, max_tokens=8, budget_tokens=2 * per_call + per_call // 2)
    stopped = Coordinator(first, policy=tight, synthesis="collect", result_store=store).run(
        REQUEST, run_id="nightly"
    )
    assert first.n_calls == 2 and not stopped.ok
    second = ScriptedBackend(fn=answer)
    roomy = CallPolicy(max_concurrency=1, max_tokens=8, budget_tokens=10 * per_call)
    resumed = Coordinator(second, policy=roomy, synthesis="collect", result_store=store).run(
        REQUEST, run_id="nightly"
    )
    assert second.n_calls == 2, "only the two the budget stopped"
    assert resumed.ok and all(r.status == "ok" for r in resumed.sub_results)
    assert {a.document_id: a.answer for a in resumed.answers}["d2.md"] == "1002"
