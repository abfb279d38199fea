"""What an eval strategy asks and answers: the interface every strategy implements.

A strategy runs on fanout's own runtime: it names the `Coordinator` its requests run on, the
requests (`Ask`) that answer a group's questions, and how each run's result reads back as one raw
`Answer` per question. Extraction and scoring come afterwards, the same for every strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from fanout.agents.backend import Backend
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import RunResult

from .suites.group import Group, Question

__all__ = ["Answer", "AnswerStatus", "Ask", "EvalStrategy", "failed_answers"]

AnswerStatus = Literal["ok", "failed", "format"]


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
