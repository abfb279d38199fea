"""How a group of instances is put to the model: the strategies compared, and the interface.

Every strategy gets the same `Group` and a `ModelSession` (the same backend under the same call
policy) and returns one raw `Answer` per question; extraction and scoring happen afterwards, the
same for all (see `fanout.evals.scoring`). Adding a strategy is one class with a ``name`` and one
coroutine::

    class OnlyFirstDocument:
        name = "first-doc"

        async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
            llm = session.caller(strategy=self.name)
            out = []
            for q in group.questions:
                prompt = Prompt(instruction="Answer briefly.", context=group.documents[0].text,
                                task=q.text)
                out.append(Answer(question_id=q.id, output=(await llm.complete(prompt)).text))
            return out
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import BackendError, UserError
from fanout.orchestrator.auto import StrategyChooser
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy, ModelCaller
from fanout.orchestrator.prompts import NOT_FOUND
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import RunResult
from fanout.orchestrator.subagent import SubAgent

from .prompts import chain_manager_prompt, chain_worker_prompt, numbered_prompt, sequential_prompt
from .scoring import extract_answer, parse_numbered
from .suites.group import Group, Question

__all__ = [
    "ROUTING",
    "STRATEGIES",
    "Answer",
    "AnswerStatus",
    "AutoStrategy",
    "BatchStrategy",
    "ChainStrategy",
    "IsolatedOracleStrategy",
    "IsolatedStrategy",
    "ModelSession",
    "MonolithicStrategy",
    "PairsStrategy",
    "Routing",
    "SequentialStrategy",
    "Strategy",
    "make_strategy",
]

AnswerStatus = Literal["ok", "failed", "format"]

STRATEGIES = (
    "isolated",
    "monolithic",
    "mti",
    "batch",
    "sequential",
    "chain",
    "pairs",
    "isolated-oracle",
    "auto",
)
"""The built-in strategies, by name."""

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
    "auto": "blind",
}
"""What each strategy knows about which document a question needs. blind: nothing, as `fanout run`
(every document reaches every question); paired: each question comes with its own document, as in
MTI Bench's instances ("classify each ticket"); oracle: the dataset's routing, which a user does not
have: an upper bound, never a product figure."""


class Answer(BaseModel):
    """A strategy's raw answer to one question, before extraction and scoring."""

    model_config = ConfigDict(frozen=True)

    question_id: str
    """Which question this answers."""
    output: str | None = None
    """The text attributed to this question (None when the call failed or nothing was found)."""
    status: AnswerStatus = "ok"
    """ok; failed (the call behind it failed: the answer is lost); format (the output held no
    answer for it, e.g. a missing number in a numbered list)."""
    error: str | None = None
    """Why it failed or could not be parsed."""
    raw: str | None = None
    """The whole output of the call it came from, when that held several answers."""
    citations: tuple[str, ...] = ()
    """Document ids the delivered answer cites."""
    invented_citations: tuple[str, ...] = ()
    """Ids the model cited that are no document of the request (removed by the coordinator)."""
    document_outcomes: dict[str, str] = Field(default_factory=dict)
    """Per document asked: found, not_found or failed (coordinator runs only)."""
    chosen: str | None = None
    """The strategy ``auto`` chose for the request behind this answer."""


class ModelSession:
    """The model as one group's strategy may use it: fanout's call policy and an exact tally.

    Every call goes through `fanout.orchestrator.policy.ModelCaller` (concurrency bound, timeout, retries
    of transient errors), so strategies differ only in what they ask, never in how calls are made.
    """

    def __init__(self, backend: Backend, policy: CallPolicy) -> None:
        self.backend = backend
        self.policy = policy
        self._callers: list[ModelCaller] = []
        self._extra = Usage()
        self._limiter: asyncio.Semaphore | None = None

    def caller(self, **tags: str) -> ModelCaller:
        """A fresh caller whose calls are bounded with every other call of this session."""
        if self._limiter is None:
            self._limiter = asyncio.Semaphore(self.policy.max_concurrency)
        caller = ModelCaller(self.backend, self.policy, self._limiter, tags=tags)
        self._callers.append(caller)
        return caller

    def add_usage(self, usage: Usage) -> None:
        """Count calls made elsewhere (a coordinator run reports its own usage)."""
        self._extra = self._extra + usage

    @property
    def usage(self) -> Usage:
        """Everything this session's successful calls cost."""
        return sum((c.usage for c in self._callers), self._extra)

    @property
    def attempts(self) -> int:
        """Call attempts through `caller`, retries included (coordinator runs not counted)."""
        return sum(c.attempts for c in self._callers)


@runtime_checkable
class Strategy(Protocol):
    """Answers a group's questions with the model. Attribute ``name`` labels its results."""

    name: str

    async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
        """One `Answer` per question of `group` (a missing one is scored as a format failure)."""
        ...


def _failed(questions: Sequence[Question], exc: BaseException) -> list[Answer]:
    error = f"{type(exc).__name__}: {exc}"
    return [Answer(question_id=q.id, status="failed", error=error) for q in questions]


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
        chosen=result.plan.chosen if result.plan is not None else None,
    )


class _CoordinatorStrategy(ABC):
    """Shared by isolated and monolithic: one coordinator run per question, runs in parallel."""

    name: str
    _mode: Literal["isolated", "monolithic"]

    def __init__(self, *, sub_agent: SubAgent | None = None) -> None:
        self.sub_agent = sub_agent

    @abstractmethod
    def _request(self, group: Group, question: Question) -> Request:
        """The coordinator request that answers `question` in this strategy's shape."""

    def _coordinator(self, session: ModelSession) -> Coordinator:
        return Coordinator(
            session.backend, strategy=self._mode, policy=session.policy, sub_agent=self.sub_agent
        )

    async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
        """Run the coordinator once per question, all questions at once."""
        coordinator = self._coordinator(session)

        async def ask(question: Question) -> Answer:
            try:
                result = await coordinator.arun(self._request(group, question))
            except UserError:
                raise
            except Exception as exc:  # the whole run failed: every answer of it is lost
                return _failed([question], exc)[0]
            session.add_usage(sum(result.usage.stages.values(), Usage()))
            return _from_run(question, result)

        return list(await asyncio.gather(*(ask(q) for q in group.questions)))


class IsolatedStrategy(_CoordinatorStrategy):
    """fanout's coordinator exactly as `fanout run` runs it: every question asks every document.

    Each question becomes one sub-agent per document of the group, and the coordinator's
    relevance ranking, grounding check and synthesis decide which findings answer it. A question
    with a ``map_task`` (aggregates over several documents) sends that task to every document and
    the question to the synthesizer.
    """

    name = "isolated"
    _mode = "isolated"

    def _request(self, group: Group, question: Question) -> Request:
        documents = group.documents
        if question.map_task and len(group.documents_for(question)) > 1:
            return Request(
                documents=documents, question=question.text, instructions=(question.map_task,)
            )
        return Request(documents=documents, question=question.text)


class IsolatedOracleStrategy(IsolatedStrategy):
    """Upper bound, not the product: each question asks only the documents it needs.

    The dataset's routing (`Group.documents_for`) is knowledge `fanout run` never has.
    """

    name = "isolated-oracle"

    def _request(self, group: Group, question: Question) -> Request:
        documents = group.documents_for(question)
        if len(documents) > 1 and question.map_task:
            return Request(
                documents=documents, question=question.text, instructions=(question.map_task,)
            )
        return Request(documents=documents, question=question.text)


class AutoStrategy(IsolatedStrategy):
    """``fanout run --strategy auto`` on the same groups, to check its choices against each fixed one.

    Each question's request (every document of the group, as isolated asks it) runs as the
    chooser decides from its profile: isolated or monolithic, per request.

    Args:
        chooser: the profile and objective; the default, no profile, is the built-in rule.
        sub_agent: your own sub-agent for the isolated runs.
    """

    name = "auto"

    def __init__(
        self, chooser: StrategyChooser | None = None, *, sub_agent: SubAgent | None = None
    ) -> None:
        super().__init__(sub_agent=sub_agent)
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

    def _coordinator(self, session: ModelSession) -> Coordinator:
        return Coordinator(
            session.backend,
            strategy="auto",
            policy=session.policy,
            sub_agent=self.sub_agent,
            profile=self.chooser.profile,
            objective=self.chooser.objective,
            min_accuracy=self.chooser.min_accuracy,
        )


class MonolithicStrategy(_CoordinatorStrategy):
    """The baseline: every document of the group in one context, one call per question."""

    name = "monolithic"
    _mode = "monolithic"

    def _request(self, group: Group, question: Question) -> Request:
        return Request(documents=group.documents, question=question.text)


class PairsStrategy:
    """Paired instances (MTI Bench's framing): question i goes with its own document i only.

    One coordinator run per group over `Request.pairs`: for tasks where the pairing is part of
    the task ("classify each ticket"), compared with mti and batch, which put the pairs in one
    prompt. Every question must need exactly one document.
    """

    name = "pairs"

    def __init__(self, *, sub_agent: SubAgent | None = None) -> None:
        self.sub_agent = sub_agent

    async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
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
        coordinator = Coordinator(
            session.backend, policy=session.policy, sub_agent=self.sub_agent, synthesis="collect"
        )
        try:
            result = await coordinator.arun(Request.pairs(pairs))
        except UserError:
            raise
        except Exception as exc:  # the whole run failed: every answer of it is lost
            return _failed(group.questions, exc)
        session.add_usage(sum(result.usage.stages.values(), Usage()))
        return [_from_run(q, result, task_index=i) for i, q in enumerate(group.questions)]


class BatchStrategy:
    """Several questions per call, answered as a numbered list (batch prompting; ``mti`` = all).

    Args:
        size: questions per call; None puts every question of the group in one call (multi-task
            inference), with every document.
        name: label in results; default "mti" when size is None, else "batch".
        tokens_per_answer: completion budget per question in a call.
    """

    def __init__(
        self, size: int | None = None, *, name: str | None = None, tokens_per_answer: int = 32
    ) -> None:
        if size is not None and size < 1:
            raise UserError(f"batch size must be at least 1, not {size}")
        self.size = size
        self.name = name or ("mti" if size is None else "batch")
        self.tokens_per_answer = tokens_per_answer

    async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
        """One call per batch, batches in parallel."""
        questions = group.questions
        size = self.size or len(questions)
        batches = [questions[i : i + size] for i in range(0, len(questions), size)]
        results = await asyncio.gather(
            *(self._ask(group, batch, session, index) for index, batch in enumerate(batches))
        )
        return [answer for batch in results for answer in batch]

    async def _ask(
        self, group: Group, batch: Sequence[Question], session: ModelSession, index: int
    ) -> list[Answer]:
        # Blind like `fanout run`: every batch sees every document of the group.
        prompt = numbered_prompt(group.documents, [q.text for q in batch])
        llm = session.caller(strategy=self.name, batch=str(index))
        try:
            completion = await llm.complete(
                prompt, max_tokens=16 + self.tokens_per_answer * len(batch)
            )
        except BackendError as exc:  # one call held them all: all are lost
            return _failed(batch, exc)
        return _numbered_answers(batch, completion.text)


def _numbered_answers(questions: Sequence[Question], text: str) -> list[Answer]:
    parsed = parse_numbered(text, len(questions))
    return [
        Answer(question_id=q.id, output=p, raw=text)
        if p is not None
        else Answer(question_id=q.id, status="format", error=f"no answer numbered {i}", raw=text)
        for i, (q, p) in enumerate(zip(questions, parsed, strict=True), 1)
    ]


class SequentialStrategy:
    """Single-task inference, one question after another in one session (MTI Bench's baseline).

    Paired routing: each call holds one question and the documents it needs, plus the session's earlier questions and
    answers: what one agent working through the list remembers. A failed call leaves its question
    unanswered and the session goes on.
    """

    name = "sequential"

    async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
        """Questions in order, each call seeing the earlier answers."""
        llm = session.caller(strategy=self.name)
        earlier: list[tuple[str, str]] = []
        answers: list[Answer] = []
        for question in group.questions:
            prompt = sequential_prompt(group.documents_for(question), question.text, earlier)
            try:
                completion = await llm.complete(prompt)
            except BackendError as exc:
                answers.extend(_failed([question], exc))
                continue
            answers.append(Answer(question_id=question.id, output=completion.text))
            earlier.append((question.text, extract_answer(completion.text) or completion.text))
        return answers


class ChainStrategy:
    """Chain-of-Agents: workers read the documents in turn, passing notes; a manager answers.

    Made for questions that need several documents. A worker whose call fails passes the notes on
    unchanged (its document is skipped); a failed manager loses every answer.

    Args:
        tokens_per_note: note budget per question, for each worker.
        tokens_per_answer: the manager's completion budget per question.
    """

    name = "chain"

    def __init__(self, *, tokens_per_note: int = 24, tokens_per_answer: int = 32) -> None:
        self.tokens_per_note = tokens_per_note
        self.tokens_per_answer = tokens_per_answer

    async def answer(self, group: Group, session: ModelSession) -> list[Answer]:
        """Workers over every document in order, then one manager call."""
        questions = [q.text for q in group.questions]
        llm = session.caller(strategy=self.name)
        notes = ""
        note_budget = min(32 + self.tokens_per_note * len(questions), 512)
        for number, document in enumerate(group.documents, 1):
            prompt = chain_worker_prompt(notes, document, questions, number=number)
            try:
                completion = await llm.complete(prompt, max_tokens=note_budget)
            except BackendError:
                continue
            notes = completion.text.strip() or notes
        try:
            completion = await llm.complete(
                chain_manager_prompt(notes, questions),
                max_tokens=16 + self.tokens_per_answer * len(questions),
            )
        except BackendError as exc:
            return _failed(group.questions, exc)
        return _numbered_answers(group.questions, completion.text)


def make_strategy(
    name: str, *, batch_size: int = 4, chooser: StrategyChooser | None = None
) -> Strategy:
    """The built-in strategy called `name` (one of `STRATEGIES`); `chooser` configures auto."""
    if name == "isolated":
        return IsolatedStrategy()
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
        return PairsStrategy()
    if name == "isolated-oracle":
        return IsolatedOracleStrategy()
    if name == "auto":
        return AutoStrategy(chooser)
    raise UserError(f"unknown strategy '{name}' (use one of: {', '.join(STRATEGIES)})")
