"""The coordinator graph's typed state. List fields use reducers so parallel sub-agents can write."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from fanout.agents.backend import Usage

from .auto import StrategyPlan
from .request import Request
from .result import DocumentAnswer, InvalidCitation, SubResult
from .task import SubTask

__all__ = ["CoordinatorInput", "CoordinatorState", "SubAgentInput", "merge_usage"]


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


class CoordinatorState(TypedDict, total=False):
    """Everything the coordinator knows about one run."""

    request: Request
    run_id: str
    started_at: float
    plan: StrategyPlan | None
    tasks: list[SubTask]
    sub_results: Annotated[list[SubResult], operator.add]
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
