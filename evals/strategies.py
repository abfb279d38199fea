"""How a group of instances is put to the model: the strategies compared, and the interface.

Every strategy runs on fanout's own runtime: a `Coordinator` built from stages, the same
`ModelCaller`, limits and accounting as ``fanout run``. A strategy says three things: which
coordinator it runs (`coordinator`: isolated, one prompt, or baseline stages), what it asks for a
group (`asks`: requests, each answering some questions), and how a run's result reads back as one
raw `Answer` per question (`read`). Extraction and scoring happen afterwards, the same for all
(see `fanout.evals.scoring`). `CoordinatorStrategy` is the isolated default to subclass::

    class FirstDocumentOnly(CoordinatorStrategy):
        name = "first-doc"

        def asks(self, group: Group) -> list[Ask]:
            return [
                Ask(Request(documents=group.documents[:1], question=q.text), (q,))
                for q in group.questions
            ]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from fanout.agents.backend import Backend
from fanout.agents.errors import BackendError, UserError
from fanout.orchestrator.auto import StrategyChooser
from fanout.orchestrator.context import RunContext
from fanout.orchestrator.coordinator import Coordinator, StrategyName
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.prompts import NOT_FOUND
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import RunResult
from fanout.orchestrator.stages import ChunkReducer, Stages, TopKSplitter
from fanout.orchestrator.subagent import SubAgent
from fanout.orchestrator.synthesize import Synthesis
from fanout.orchestrator.task import SubTask

from .prompts import (
    chain_manager_prompt,
    chain_worker_prompt,
    documents_block,
    numbered,
    numbered_prompt,
    sequential_prompt,
)
from .scoring import extract_answer, parse_numbered
from .suites.group import Group, Question

__all__ = [
    "ROUTING",
    "STRATEGIES",
    "Answer",
    "AnswerStatus",
    "Ask",
    "AutoStrategy",
    "BatchStrategy",
    "ChainStrategy",
    "CoordinatorStrategy",
    "EvalStrategy",
    "IsolatedOracleStrategy",
    "IsolatedStrategy",
    "IsolatedTopKStrategy",
    "MonolithicStrategy",
    "PairsStrategy",
    "Routing",
    "SequentialStrategy",
    "failed_answers",
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
    "isolated-topk",
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
    "isolated-topk": "blind",
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


@dataclass(frozen=True)
class Ask:
    """One request a strategy makes, and the questions its result answers."""

    request: Request
    """What the coordinator runs."""
    questions: tuple[Question, ...]
    """The group's questions this request answers (all of them fail if the run fails)."""
    deps: Any = None
    """The run's `RunContext.deps` (the baselines read their group from it)."""


@runtime_checkable
class EvalStrategy(Protocol):
    """A way of putting a group to the model, run on fanout's runtime. ``name`` labels results."""

    name: str

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """The coordinator every request of a group runs on (one per group: one set of limits)."""
        ...

    def asks(self, group: Group) -> list[Ask]:
        """The requests that answer every question of `group`."""
        ...

    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """One `Answer` per question of `ask` from its run (a missing one is a format failure)."""
        ...


def failed_answers(questions: Sequence[Question], error: str) -> list[Answer]:
    """`questions`, every one lost to `error`."""
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
        chosen=result.choice.chosen if result.choice is not None else None,
    )


class CoordinatorStrategy:
    """``fanout run`` as it runs by default, one request per question; subclass to change a part.

    Args:
        sub_agent: your own sub-agent stage for the runs.
    """

    name = "isolated"
    strategy: StrategyName = "isolated"

    def __init__(self, *, sub_agent: SubAgent | None = None) -> None:
        self.sub_agent = sub_agent

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """A coordinator of `strategy` with the given sub-agent."""
        return Coordinator(backend, strategy=self.strategy, policy=policy, sub_agent=self.sub_agent)

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

    def __init__(self, k: int = 5, *, sub_agent: SubAgent | None = None) -> None:
        super().__init__(sub_agent=sub_agent)
        self.k = k

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """The default coordinator with the top-k splitter."""
        return Coordinator(
            backend,
            policy=policy,
            stages=Stages(split=TopKSplitter(k=self.k)),
            sub_agent=self.sub_agent,
        )


class AutoStrategy(CoordinatorStrategy):
    """``fanout run --strategy auto`` on the same groups, to check its choices against each fixed one.

    Each question's request (every document of the group, as isolated asks it) runs as the
    chooser decides from its profile: isolated or monolithic, per request.

    Args:
        chooser: the profile and objective; the default, no profile, is the built-in rule.
        sub_agent: your own sub-agent for the isolated runs.
    """

    name = "auto"
    strategy: StrategyName = "auto"

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

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """A coordinator that chooses per request from the profile."""
        return Coordinator(
            backend,
            strategy="auto",
            policy=policy,
            sub_agent=self.sub_agent,
            profile=self.chooser.profile,
            objective=self.chooser.objective,
            min_accuracy=self.chooser.min_accuracy,
        )


class MonolithicStrategy(CoordinatorStrategy):
    """The baseline: every document of the group in one context, one call per question."""

    name = "monolithic"
    strategy: StrategyName = "monolithic"

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
        return Coordinator(backend, policy=policy, sub_agent=self.sub_agent, synthesis="collect")

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


class _Text(BaseModel):
    """A baseline call's output exactly as the model wrote it (no report-line stripping)."""

    text: str


class _Turns(BaseModel):
    """A baseline session's answers, one per question, in order."""

    answers: list[Answer]


M = TypeVar("M", bound=BaseModel)


async def _no_synthesis(ctx: RunContext[Any], answers: Any) -> Synthesis:
    """A baseline's run needs no answer text: `read` takes each sub-agent's data."""
    return Synthesis(answer="")


def _data(result: RunResult[Any], index: int, model: type[M]) -> M | str:
    """Sub-agent `index`'s structured output, or the error that failed it."""
    sub = result.sub_results[index]
    if sub.status == "failed" or sub.data is None:
        return sub.error or "failed"
    return model.model_validate(sub.data)


class _Baseline(ABC):
    """A strategy the coordinator has no preset for, run as a custom split and sub-agent.

    Its requests carry the group as ``deps``: a baseline is meant to see everything a single agent
    would (it is what isolation is measured against).
    """

    name: str

    def coordinator(self, backend: Backend, policy: CallPolicy) -> Coordinator[Any]:
        """This baseline's split and sub-agent on fanout's runtime.

        Its answers are read from the sub-agents' data, so nothing is synthesized.
        """
        return Coordinator(
            backend,
            policy=policy,
            stages=Stages(
                split=self.split,
                sub_agent=self.answer,
                reduce=ChunkReducer(mode="join"),
                synthesize=_no_synthesis,
            ),
        )

    def asks(self, group: Group) -> list[Ask]:
        """One request holding the whole group."""
        request = Request(documents=group.documents, instructions=[q.text for q in group.questions])
        return [Ask(request, tuple(group.questions), deps=group)]

    def split(self, ctx: RunContext[Any]) -> list[SubTask]:
        """One sub-task holding every document and question."""
        request = ctx.request
        context = documents_block(request.documents)
        task = numbered(request.instructions)
        return [SubTask(id=self.name, document_id=None, task=task, context=context)]

    @abstractmethod
    async def answer(self, ctx: RunContext[Any]) -> BaseModel:
        """The baseline's sub-agent: its calls, and their outputs as data."""

    @abstractmethod
    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """One `Answer` per question from the sub-agents' data."""


class BatchStrategy(_Baseline):
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

    def _batches(self, questions: Sequence[Any]) -> list[Sequence[Any]]:
        size = self.size or len(questions)
        return [questions[i : i + size] for i in range(0, len(questions), size)]

    def split(self, ctx: RunContext[Any]) -> list[SubTask]:
        """One sub-task per batch; blind like `fanout run`: every batch sees every document."""
        request = ctx.request
        context = documents_block(request.documents)
        return [
            SubTask(
                id=f"{self.name}-{i}",
                document_id=None,
                task_index=i,
                task=numbered(batch),
                context=context,
            )
            for i, batch in enumerate(self._batches(request.instructions))
        ]

    async def answer(self, ctx: RunContext[Any]) -> BaseModel:
        """One call answering the batch's questions as a numbered list."""
        group: Group = ctx.deps
        batch = self._batches(group.questions)[ctx.task.task_index]
        prompt = numbered_prompt(group.documents, [q.text for q in batch])
        completion = await ctx.model.complete(
            prompt, max_tokens=16 + self.tokens_per_answer * len(batch)
        )
        return _Text(text=completion.text)

    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """Each batch's numbered answers; a failed call loses every answer it held."""
        answers: list[Answer] = []
        for index, batch in enumerate(self._batches(ask.questions)):
            out = _data(result, index, _Text)
            if isinstance(out, _Text):
                answers += _numbered_answers(batch, out.text)
            else:
                answers += failed_answers(batch, out)
        return answers


def _numbered_answers(questions: Sequence[Question], text: str) -> list[Answer]:
    parsed = parse_numbered(text, len(questions))
    return [
        Answer(question_id=q.id, output=p, raw=text)
        if p is not None
        else Answer(question_id=q.id, status="format", error=f"no answer numbered {i}", raw=text)
        for i, (q, p) in enumerate(zip(questions, parsed, strict=True), 1)
    ]


class SequentialStrategy(_Baseline):
    """Single-task inference, one question after another in one session (MTI Bench's baseline).

    Paired routing: each call holds one question and the documents it needs, plus the session's
    earlier questions and answers: what one agent working through the list remembers. A failed
    call leaves its question unanswered and the session goes on.
    """

    name = "sequential"

    async def answer(self, ctx: RunContext[Any]) -> BaseModel:
        """Questions in order, each call seeing the earlier answers."""
        group: Group = ctx.deps
        earlier: list[tuple[str, str]] = []
        answers: list[Answer] = []
        for question in group.questions:
            prompt = sequential_prompt(group.documents_for(question), question.text, earlier)
            try:
                completion = await ctx.model.complete(prompt)
            except BackendError as exc:
                answers += failed_answers([question], f"{type(exc).__name__}: {exc}")
                continue
            answers.append(Answer(question_id=question.id, output=completion.text))
            earlier.append((question.text, extract_answer(completion.text) or completion.text))
        return _Turns(answers=answers)

    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """The session's answers (all lost if the session itself failed)."""
        out = _data(result, 0, _Turns)
        return out.answers if isinstance(out, _Turns) else failed_answers(ask.questions, out)


class ChainStrategy(_Baseline):
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

    async def answer(self, ctx: RunContext[Any]) -> BaseModel:
        """Workers over every document in order, then one manager call."""
        group: Group = ctx.deps
        questions = [q.text for q in group.questions]
        notes = ""
        note_budget = min(32 + self.tokens_per_note * len(questions), 512)
        for number, document in enumerate(group.documents, 1):
            prompt = chain_worker_prompt(notes, document, questions, number=number)
            try:
                completion = await ctx.model.complete(prompt, max_tokens=note_budget)
            except BackendError:
                continue
            notes = completion.text.strip() or notes
        completion = await ctx.model.complete(
            chain_manager_prompt(notes, questions),
            max_tokens=16 + self.tokens_per_answer * len(questions),
        )
        return _Text(text=completion.text)

    def read(self, ask: Ask, result: RunResult[Any]) -> list[Answer]:
        """The manager's numbered answers (all lost if it failed)."""
        out = _data(result, 0, _Text)
        if isinstance(out, _Text):
            return _numbered_answers(ask.questions, out.text)
        return failed_answers(ask.questions, out)


def make_strategy(
    name: str, *, batch_size: int = 4, top_k: int = 5, chooser: StrategyChooser | None = None
) -> EvalStrategy:
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
    if name == "isolated-topk":
        return IsolatedTopKStrategy(top_k)
    if name == "auto":
        return AutoStrategy(chooser)
    raise UserError(f"unknown strategy '{name}' (use one of: {', '.join(STRATEGIES)})")
