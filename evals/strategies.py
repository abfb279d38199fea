"""The strategies compared, by name: fanout's coordinator in its forms, and the baselines.

Every strategy runs on fanout's own runtime (see `fanout.evals.asks` for the interface):
`CoordinatorStrategy` is ``fanout run``'s default, one request per question, to subclass::

    class FirstDocumentOnly(CoordinatorStrategy):
        name = "first-doc"

        def asks(self, group: Group) -> list[Ask]:
            return [
                Ask(Request(documents=group.documents[:1], question=q.text), (q,))
                for q in group.questions
            ]
"""

from __future__ import annotations

from typing import Any, Literal

from fanout.agents.backend import Backend
from fanout.agents.errors import UserError
from fanout.agents.subagent import NOT_FOUND
from fanout.orchestrator.auto import StrategyChooser
from fanout.orchestrator.coordinator import Coordinator, StrategyName
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import RunResult
from fanout.orchestrator.split import DocumentSplitter, TopKSplitter
from fanout.orchestrator.stages import Stages, SubAgent

from .asks import Answer, Ask, EvalStrategy
from .baselines import BatchStrategy, ChainStrategy, SequentialStrategy
from .suites.group import Group, Question

__all__ = [
    "CHUNKING",
    "ROUTING",
    "STRATEGIES",
    "AutoStrategy",
    "CoordinatorStrategy",
    "IsolatedOracleStrategy",
    "IsolatedStrategy",
    "IsolatedTopKStrategy",
    "MonolithicStrategy",
    "PairsStrategy",
    "Routing",
    "make_strategy",
]

STRATEGIES = (
    "isolated",
    "monolithic",
    "mti",
    "batch",
    "sequential",
    "chain",
    "pairs",
    "isolated-oracle",
    "isolated-topk",
    "auto",
)
"""The built-in strategies, by name."""

CHUNKING = frozenset({"isolated", "isolated-oracle", "isolated-topk", "pairs", "auto"})
"""The built-in strategies whose sub-agents read chunks cut by fanout's splitter (the eval's
``chunk_tokens`` sets their size; the others put whole documents in one prompt)."""

Routing = Literal["blind", "oracle", "paired"]
ROUTING: dict[str, Routing] = {
    "isolated": "blind",
    "monolithic": "blind",
    "mti": "blind",
    "batch": "blind",
    "chain": "blind",
    "sequential": "paired",
    "pairs": "paired",
    "isolated-oracle": "oracle",
    "isolated-topk": "blind",
    "auto": "blind",
}
"""What each strategy knows about which document a question needs. blind: nothing, as `fanout run`
(every document reaches every question); paired: each question comes with its own document, as in
MTI Bench's instances ("classify each ticket"); oracle: the dataset's routing, which a user does not
have: an upper bound, never a product figure."""


def _from_run(question: Question, result: RunResult, task_index: int | None = None) -> Answer:
    """A coordinator run's answer, or a failure when no sub-agent of the run answered."""
    answers = [a for a in result.answers if task_index is None or a.task_index == task_index]
    if answers and all(a.status == "failed" for a in answers):
        errors = "; ".join(dict.fromkeys(a.error or "failed" for a in answers))
        return Answer(question_id=question.id, status="failed", error=errors)
    if result.unanswered and any(a.status == "failed" for a in answers):
        # No document answered and some could not be asked: the answer was lost, not absent.
        errors = "; ".join(dict.fromkeys(a.error or "failed" for a in answers if a.error))
        return Answer(question_id=question.id, status="failed", error=errors)
    if task_index is None:
        output = result.answer if not result.unanswered else NOT_FOUND
        citations = result.citations
    else:
        found = [a for a in answers if a.selected]
        output = found[0].answer or NOT_FOUND if found else NOT_FOUND
        citations = [a.document_id for a in found if a.document_id]
    return Answer(
        question_id=question.id,
        output=output,
        citations=tuple(citations),
        invented_citations=tuple(
            c.document_id
            for c in result.invalid_citations
            if c.reason == "not a document of the request"
        ),
        document_outcomes={a.document_id: a.outcome for a in answers if a.document_id},
        chosen=result.choice.chosen if result.choice is not None else None,
    )


class CoordinatorStrategy:
    """``fanout run`` as it runs by default, one request per question; subclass to change a part.

    Args:
        sub_agent: your own sub-agent stage for the runs.
        chunk_tokens: the largest document chunk a sub-agent reads (None: what fits the model's
            context, as ``fanout run`` cuts).
    """

    name = "isolated"
    strategy: StrategyName = "isolated"

    def __init__(
        self, *, sub_agent: SubAgent | None = None, chunk_tokens: int | None = None
    ) -> None:
        self.sub_agent = sub_agent
        self.chunk_tokens = chunk_tokens

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """A coordinator of `strategy` with the given sub-agent and chunk size."""
        return Coordinator(
            backend,
            strategy=self.strategy,
            policy=policy,
            sub_agent=self.sub_agent,
            chunk_tokens=self.chunk_tokens,
        )

    def asks(self, group: Group) -> list[Ask]:
        """One request per question over every document of the group (blind routing)."""
        return [Ask(self.request(group, q), (q,)) for q in group.questions]

    def request(self, group: Group, question: Question) -> Request:
        """The request that answers `question`: every document, the question."""
        documents = group.documents
        if question.map_task and len(group.documents_for(question)) > 1:
            return Request(
                documents=documents, question=question.text, instructions=(question.map_task,)
            )
        return Request(documents=documents, question=question.text)

    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """The run's answer to its one question."""
        return [_from_run(ask.questions[0], result)]


class IsolatedStrategy(CoordinatorStrategy):
    """fanout's coordinator exactly as `fanout run` runs it: every question asks every document.

    Each question becomes one sub-agent per document of the group, and the coordinator's
    relevance ranking, grounding check and synthesis decide which findings answer it. A question
    with a ``map_task`` (aggregates over several documents) sends that task to every document and
    the question to the synthesizer.
    """


class IsolatedOracleStrategy(CoordinatorStrategy):
    """Upper bound, not the product: each question asks only the documents it needs.

    The dataset's routing (`Group.documents_for`) is knowledge `fanout run` never has.
    """

    name = "isolated-oracle"

    def request(self, group: Group, question: Question) -> Request:
        """Only the documents the dataset says `question` needs."""
        documents = group.documents_for(question)
        if len(documents) > 1 and question.map_task:
            return Request(
                documents=documents, question=question.text, instructions=(question.map_task,)
            )
        return Request(documents=documents, question=question.text)


class IsolatedTopKStrategy(CoordinatorStrategy):
    """Isolated sub-agents for only the `k` chunks BM25 ranks best for the question (blind routing).

    The pre-filter (`TopKSplitter`) sees what `fanout run --top-k` sees: the question and the
    documents, never which document holds the answer. Its recall is reported as ``gold_asked``.
    """

    name = "isolated-topk"

    def __init__(
        self, k: int = 5, *, sub_agent: SubAgent | None = None, chunk_tokens: int | None = None
    ) -> None:
        super().__init__(sub_agent=sub_agent, chunk_tokens=chunk_tokens)
        self.k = k

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """The default coordinator with the top-k splitter (over chunks of `chunk_tokens`)."""
        splitter = TopKSplitter(k=self.k, of=DocumentSplitter(chunk_tokens=self.chunk_tokens))
        return Coordinator(
            backend, policy=policy, stages=Stages(split=splitter), sub_agent=self.sub_agent
        )


class AutoStrategy(CoordinatorStrategy):
    """``fanout run --strategy auto`` on the same groups, to check its choices against each fixed one.

    Each question's request (every document of the group, as isolated asks it) runs as the
    chooser decides from its profile: isolated or monolithic, per request.

    Args:
        chooser: the profile and objective; the default, no profile, is the built-in rule.
        sub_agent: your own sub-agent for the isolated runs.
        chunk_tokens: the largest chunk of the isolated runs (None: what fits the context).
    """

    name = "auto"
    strategy: StrategyName = "auto"

    def __init__(
        self,
        chooser: StrategyChooser | None = None,
        *,
        sub_agent: SubAgent | None = None,
        chunk_tokens: int | None = None,
    ) -> None:
        super().__init__(sub_agent=sub_agent, chunk_tokens=chunk_tokens)
        self.chooser = chooser or StrategyChooser()

    def describe(self) -> str:
        """What this auto chooses from, for the eval's settings (a resume must agree on it)."""
        profile = self.chooser.profile
        source = (
            "built-in rule (no profile)"
            if profile is None
            else f"{profile.suite} profile of {profile.model.describe()} ({profile.source})"
        )
        floor = self.chooser.min_accuracy
        objective = self.chooser.objective + (f" >= {floor:.0%}" if floor is not None else "")
        return f"{source}; objective {objective}"

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """A coordinator that chooses per request from the profile."""
        return Coordinator(
            backend,
            strategy="auto",
            policy=policy,
            sub_agent=self.sub_agent,
            chunk_tokens=self.chunk_tokens,
            profile=self.chooser.profile,
            objective=self.chooser.objective,
            min_accuracy=self.chooser.min_accuracy,
        )


class MonolithicStrategy(CoordinatorStrategy):
    """The baseline: every document of the group in one context, one call per question.

    One prompt is never cut: a chunk size set for the sweep applies to the isolated strategies.
    """

    name = "monolithic"
    strategy: StrategyName = "monolithic"

    def __init__(self, *, sub_agent: SubAgent | None = None) -> None:
        super().__init__(sub_agent=sub_agent)

    def request(self, group: Group, question: Question) -> Request:
        """Every document, the question (no per-document task: one prompt answers it)."""
        return Request(documents=group.documents, question=question.text)


class PairsStrategy(CoordinatorStrategy):
    """Paired instances (MTI Bench's framing): question i goes with its own document i only.

    One coordinator run per group over `Request.pairs`: for tasks where the pairing is part of
    the task ("classify each ticket"), compared with mti and batch, which put the pairs in one
    prompt. Every question must need exactly one document.
    """

    name = "pairs"

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """Isolated sub-agents, findings listed (each question is its own task)."""
        return Coordinator(
            backend,
            policy=policy,
            sub_agent=self.sub_agent,
            synthesis="collect",
            chunk_tokens=self.chunk_tokens,
        )

    def asks(self, group: Group) -> list[Ask]:
        """One paired request holding every (document, question) of the group."""
        pairs = []
        for question in group.questions:
            documents = group.documents_for(question)
            if len(documents) != 1:
                raise UserError(
                    f"pairs needs one document per question; {question.id} needs {len(documents)}"
                )
            pairs.append((documents[0], question.text))
        if len({d.id for d, _ in pairs}) != len(pairs):
            raise UserError("pairs needs a different document for each question")
        return [Ask(Request.pairs(pairs), tuple(group.questions))]

    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """Question i's answer is task i's finding."""
        return [_from_run(q, result, task_index=i) for i, q in enumerate(ask.questions)]


def make_strategy(
    name: str,
    *,
    batch_size: int = 4,
    top_k: int = 5,
    chooser: StrategyChooser | None = None,
    chunk_tokens: int | None = None,
) -> EvalStrategy:
    """The built-in strategy called `name` (one of `STRATEGIES`); `chooser` configures auto.

    `chunk_tokens` sets the largest chunk of the `CHUNKING` strategies; None fits the context.
    """
    if name == "isolated":
        return IsolatedStrategy(chunk_tokens=chunk_tokens)
    if name == "monolithic":
        return MonolithicStrategy()
    if name == "mti":
        return BatchStrategy(None)
    if name == "batch":
        return BatchStrategy(batch_size)
    if name == "sequential":
        return SequentialStrategy()
    if name == "chain":
        return ChainStrategy()
    if name == "pairs":
        return PairsStrategy(chunk_tokens=chunk_tokens)
    if name == "isolated-oracle":
        return IsolatedOracleStrategy(chunk_tokens=chunk_tokens)
    if name == "isolated-topk":
        return IsolatedTopKStrategy(top_k, chunk_tokens=chunk_tokens)
    if name == "auto":
        return AutoStrategy(chooser, chunk_tokens=chunk_tokens)
    raise UserError(f"unknown strategy '{name}' (use one of: {', '.join(STRATEGIES)})")
