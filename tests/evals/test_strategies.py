from __future__ import annotations

import asyncio

import pytest

from fanout.agents.backend import CompletionRequest
from fanout.agents.errors import BackendRejected, UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals.asks import Answer, Ask, EvalStrategy
from fanout.evals.baselines import BatchStrategy
from fanout.evals.records import AnswerRecord
from fanout.evals.runner import run_group
from fanout.evals.strategies import STRATEGIES, CoordinatorStrategy, make_strategy
from fanout.evals.suites import Group, KeyValueSuite
from fanout.orchestrator import Request, RunResult
from fanout.orchestrator.policy import CallPolicy

from .conftest import oracle

POLICY = CallPolicy(max_attempts=1, max_tokens=64)


def run(strategy: EvalStrategy, group: Group, backend: ScriptedBackend) -> list[AnswerRecord]:
    """The strategy on the eval's own runner: the records a sweep would write."""
    return asyncio.run(
        run_group(strategy, group, backend, POLICY, n=len(group.questions), index=0)
    ).answers


GROUP = KeyValueSuite(doc_tokens=60).group(5, 0, seed=0)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_answers_everything_with_a_perfect_model(name: str) -> None:
    backend = ScriptedBackend(fn=oracle)
    records = run(make_strategy(name, batch_size=2), GROUP, backend)
    assert [r.correct for r in records] == [True] * 5, [r.output for r in records]


def test_isolated_asks_every_document_each_in_its_own_sub_agent() -> None:
    """Blind, as `fanout run`: 5 questions x 5 documents, each call holding one document."""
    backend = ScriptedBackend(fn=oracle)
    records = run(make_strategy("isolated"), GROUP, backend)
    assert len(backend.calls) == 25
    for call in backend.calls:
        holding = [d for d in GROUP.documents if d.text in call.prompt.context]
        assert len(holding) == 1
        assert call.tags["document_id"] == holding[0].id
    assert all(r.correct for r in records)
    # Every document was asked; the ones without the key abstained.
    assert all(len(r.document_outcomes) == 5 for r in records)
    assert all(list(r.document_outcomes.values()).count("found") == 1 for r in records)


def test_isolated_oracle_asks_only_the_documents_the_dataset_names() -> None:
    backend = ScriptedBackend(fn=oracle)
    run(make_strategy("isolated-oracle"), GROUP, backend)
    assert len(backend.calls) == 5


def test_pairs_send_each_question_with_its_own_document_in_one_request() -> None:
    backend = ScriptedBackend(fn=oracle)
    records = run(make_strategy("pairs"), GROUP, backend)
    assert len(backend.calls) == 5 and all(r.correct for r in records)
    for call, q in zip(backend.calls, GROUP.questions, strict=True):
        assert call.tags["document_id"] == q.document_ids[0]


def test_monolithic_makes_one_call_per_question_over_every_document() -> None:
    backend = ScriptedBackend(fn=oracle)
    run(make_strategy("monolithic"), GROUP, backend)
    assert len(backend.calls) == 5
    for call in backend.calls:
        assert all(d.text.strip() in call.prompt.context for d in GROUP.documents)
    assert sorted(c.prompt.task for c in backend.calls) == sorted(q.text for q in GROUP.questions)


def test_mti_and_batch_call_counts() -> None:
    mti = ScriptedBackend(fn=oracle)
    run(make_strategy("mti"), GROUP, mti)
    assert len(mti.calls) == 1 and mti.calls[0].prompt.task.count("\n") == 4
    batch = ScriptedBackend(fn=oracle)
    run(BatchStrategy(2), GROUP, batch)
    assert len(batch.calls) == 3  # 2 + 2 + 1 questions
    # blind: every batch sees every document, as the mti call does
    assert all(c.prompt.context == mti.calls[0].prompt.context for c in batch.calls)
    with pytest.raises(UserError):
        BatchStrategy(0)


def test_mti_counts_missing_numbers_as_format_failures() -> None:
    backend = ScriptedBackend(["1. 1234\n2.\n4. 99"])
    records = run(make_strategy("mti"), GROUP, backend)
    assert [r.status for r in records] == ["ok", "format", "format", "ok", "format"]
    assert records[1].error == "no answer numbered 2"
    assert records[0].raw == "1. 1234\n2.\n4. 99"


def test_a_failed_call_costs_isolated_one_answer_and_mti_all_of_them() -> None:
    lost_doc = GROUP.documents[2].text

    def flaky(request: CompletionRequest) -> str:
        if lost_doc in request.prompt.context:
            raise BackendRejected("HTTP 400: no")
        return oracle(request)

    isolated = run(make_strategy("isolated"), GROUP, ScriptedBackend(fn=flaky))
    assert [r.status for r in isolated] == ["ok", "ok", "failed", "ok", "ok"]
    assert "BackendRejected" in (isolated[2].error or "")
    mti = run(make_strategy("mti"), GROUP, ScriptedBackend(fn=flaky))
    assert [r.status for r in mti] == ["failed"] * 5


def test_sequential_carries_earlier_answers_forward() -> None:
    backend = ScriptedBackend(fn=oracle)
    run(make_strategy("sequential"), GROUP, backend)
    last = backend.calls[-1].prompt
    earlier = [e for e in last.examples if not e.context]
    assert [e.task for e in earlier] == [q.text for q in GROUP.questions[:4]]
    assert [e.answer for e in earlier] == [q.answers[0] for q in GROUP.questions[:4]]


def test_chain_passes_notes_from_worker_to_worker() -> None:
    backend = ScriptedBackend(fn=oracle)
    run(make_strategy("chain"), GROUP, backend)
    assert len(backend.calls) == 6  # five workers and a manager
    assert backend.calls[1].prompt.context.startswith("Notes so far: Notes so far: none")
    assert backend.calls[-1].prompt.context_label == "Notes"


def test_a_user_strategy_changes_one_part_of_the_coordinator_strategy() -> None:
    class FirstDocumentOnly(CoordinatorStrategy):
        name = "first-doc"

        def asks(self, group: Group) -> list[Ask]:
            return [
                Ask(Request(documents=group.documents[:1], question=q.text), (q,))
                for q in group.questions
            ]

    assert isinstance(FirstDocumentOnly(), EvalStrategy)
    backend = ScriptedBackend(fn=oracle)
    records = run(FirstDocumentOnly(), GROUP, backend)
    assert len(backend.calls) == 5 and [r.correct for r in records].count(True) == 1

    class Constant(CoordinatorStrategy):
        name = "constant"

        def read(self, ask: Ask, result: RunResult) -> list[Answer]:
            return [Answer(question_id=q.id, output="4417") for q in ask.questions]

    assert all(r.status == "ok" for r in run(Constant(), GROUP, ScriptedBackend(fn=oracle)))


def test_every_strategy_counts_its_calls_on_the_one_runtime() -> None:
    """Tokens and calls come from the coordinator's accounting for baselines and isolation alike."""
    for name in STRATEGIES:
        backend = ScriptedBackend(fn=oracle)
        record = asyncio.run(
            run_group(make_strategy(name, batch_size=2), GROUP, backend, POLICY, n=5, index=0)
        )
        assert record.calls == len(backend.calls), name
        assert record.prompt_tokens > 0, name


def test_unknown_strategy() -> None:
    with pytest.raises(UserError, match="unknown strategy 'solo'"):
        make_strategy("solo")


def test_isolated_topk_asks_k_chunks_per_question_and_reports_its_recall() -> None:
    from fanout.evals.metrics import cell_metrics

    backend = ScriptedBackend(fn=oracle)
    record = asyncio.run(
        run_group(make_strategy("isolated-topk", top_k=1), GROUP, backend, POLICY, n=5, index=0)
    )
    assert len(backend.calls) == 5  # one sub-agent per question instead of five
    assert all(len(a.document_outcomes) == 1 for a in record.answers)
    (cell,) = cell_metrics([record], documents={GROUP.id: {d.id for d in GROUP.documents}})
    found = sum(set(a.question.document_ids) <= set(a.document_outcomes) for a in record.answers)
    assert cell.gold_asked == found / 5
    assert cell.correct <= found  # a question whose document was not asked cannot be right
    (full,) = cell_metrics(
        [asyncio.run(run_group(make_strategy("isolated"), GROUP, backend, POLICY, n=5, index=0))],
        documents={GROUP.id: {d.id for d in GROUP.documents}},
    )
    assert full.gold_asked == 1.0


LONG = KeyValueSuite(doc_tokens=400).group(3, 0, seed=0)  # auto runs isolated above N=2


@pytest.mark.parametrize("name", ["isolated", "isolated-oracle", "isolated-topk", "pairs", "auto"])
def test_chunk_tokens_cuts_the_isolated_strategies_documents(name: str) -> None:
    """The eval's --chunk-tokens reaches the splitter of every strategy that runs sub-agents."""
    whole, cut = ScriptedBackend(fn=oracle), ScriptedBackend(fn=oracle)
    run(make_strategy(name, top_k=50), LONG, whole)
    records = run(make_strategy(name, top_k=50, chunk_tokens=64), LONG, cut)
    assert all(r.correct for r in records), [r.output for r in records]
    asked = [c for c in cut.calls if c.tags.get("document_id") not in (None, "*")]
    assert len(asked) > len(
        [c for c in whole.calls if c.tags.get("document_id") not in (None, "*")]
    )
    assert all(cut.count_tokens(c.prompt.context) <= 64 for c in asked)


def test_chunk_tokens_leave_one_prompt_whole() -> None:
    backend = ScriptedBackend(fn=oracle)
    records = run(make_strategy("monolithic", chunk_tokens=64), LONG, backend)
    assert len(backend.calls) == 3 and all(r.correct for r in records)
