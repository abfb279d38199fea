"""The coordinator graph's typed state. List fields use reducers so parallel sub-agents can write."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langgraph.channels.topic import Topic

from fanout.agents.backend import Usage

from .auto import StrategyPlan
from .request import Request
from .result import DocumentAnswer, InvalidCitation, SubResult
from .task import SubTask

__all__ = ["CoordinatorInput", "CoordinatorState", "ResultLog", "SubAgentInput", "merge_usage"]


class ResultLog(Topic[Any]):
    """The sub-results channel: each write is appended in place, in time linear in the write.

    A list reducer (``operator.add``) copies the whole list for every sub-agent's write, which is
    quadratic in the number of sub-agents (minutes at 100,000). LangGraph's accumulating `Topic`
    appends instead; this one also hands checkpoints a copy, so a checkpoint still being saved never
    sees results appended after it was taken.
    """

    def __init__(self, typ: type[Any] = object, accumulate: bool = True) -> None:
        super().__init__(typ, accumulate=accumulate)

    def checkpoint(self) -> list[Any]:
        """A snapshot, not the live list."""
        return list(self.values)


def merge_usage(left: dict[str, Usage], right: dict[str, Usage]) -> dict[str, Usage]:
    """Add per-stage usage written by different nodes."""
    merged = dict(left)
    for stage, usage in right.items():
        merged[stage] = merged.get(stage, Usage()) + usage
    return merged


class CoordinatorInput(TypedDict, total=False):
    """What a caller passes to the graph."""

    request: Request
    run_id: str
    settings: dict[str, str]
    """What the results depend on (model, prompts, budget...): a resume must agree on them."""


class CoordinatorState(TypedDict, total=False):
    """Everything the coordinator knows about one run."""

    request: Request
    run_id: str
    settings: dict[str, str]
    started_at: float
    plan: StrategyPlan | None
    tasks: list[SubTask]
    wave: list[int]
    """Indices of the `tasks` whose sub-agents run in the current superstep (see `graph`)."""
    sub_results: Annotated[list[SubResult], ResultLog(SubResult)]
    answers: list[DocumentAnswer]
    answer: str
    citations: list[str]
    invalid_citations: list[InvalidCitation]
    uncited: list[str]
    unanswered: list[str]
    synthesis_error: str | None
    synthesis_rounds: int
    stage_usage: Annotated[dict[str, Usage], merge_usage]
    finished_at: float


class SubAgentInput(TypedDict):
    """What one `Send` hands one sub-agent: its task and nothing else of the request."""

    task: SubTask
    run_id: str
