"""The baselines fanout is measured against, each run on fanout's own runtime.

Several questions in one call (mti, batch), one agent answering the questions in turn (sequential),
and Chain-of-Agents: strategies with no coordinator preset, built as a custom split and sub-agent.
Their requests carry the group as ``deps``: a baseline is meant to see everything a single agent
would, since it is what isolation is measured against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from fanout.agents.backend import Backend
from fanout.agents.errors import BackendError, UserError
from fanout.agents.subagent import cooperative
from fanout.agents.task import SubTask
from fanout.orchestrator.context import RunContext
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import RunResult
from fanout.orchestrator.stages import ChunkReducer, Stages
from fanout.orchestrator.synthesize import Synthesis

from ._prompts import (
    chain_manager_prompt,
    chain_worker_prompt,
    documents_block,
    numbered,
    numbered_prompt,
    sequential_prompt,
)
from ._scoring import extract_answer, parse_numbered
from .asks import Answer, Ask, failed_answers
from .suites.group import Group, Question

__all__ = ["BatchStrategy", "ChainStrategy", "SequentialStrategy"]


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

    @cooperative
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

    @cooperative
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

    @cooperative
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
