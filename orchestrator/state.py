"""The graph's typed state, and what goes in and comes out of it.

`FanoutInput` and `FanoutOutput` are the declared keys a graph that embeds fanout's as a node shares
with it: give it ``request`` (and ``run_id``, optionally a ``plan``), read back ``result``. List fields
use reducers so parallel sub-agents can write.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langgraph.channels.topic import Topic
from langgraph.channels.untracked_value import UntrackedValue

from fanout.agents.backend import Usage
from fanout.agents.task import SubTask

from .auto import RunMode, StrategyChoice
from .request import Request, RunPlan
from .result import DocumentAnswer, InvalidCitation, RunResult, SubResult, UnsupportedLine

__all__ = [
    "FanoutInput",
    "FanoutOutput",
    "FanoutState",
    "ResultLog",
    "SubAgentInput",
    "merge_usage",
]


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


class FanoutInput(TypedDict, total=False):
    """What a caller (or a parent graph) passes in."""

    request: Request
    """The request to answer."""
    run_id: str
    """Names the run (the checkpoint thread); a fresh id when absent."""
    plan: RunPlan | None
    """A plan made ahead with `Coordinator.plan` for this request: used instead of splitting."""
    settings: dict[str, str]
    """What the results depend on (model, prompts, budget...): a resume must agree on them."""


class FanoutOutput(TypedDict, total=False):
    """What the graph gives back."""

    result: RunResult[Any]
    """The typed result of the run."""


class FanoutState(FanoutInput, total=False):
    """Everything the runtime knows about one run (checkpointed, except `result`)."""

    result: Annotated[RunResult[Any], UntrackedValue(RunResult)]
    """Built from the fields below by the last node; never checkpointed (it repeats them)."""
    started_at: float
    mode: RunMode
    """isolated or monolithic, as planned."""
    choice: StrategyChoice | None
    """auto's choice and why; None for a fixed strategy."""
    tasks: list[SubTask]
    wave: list[int]
    """Indices of the `tasks` whose sub-agents run in the current superstep (see `kit`)."""
    sub_results: Annotated[list[SubResult], ResultLog(SubResult)]
    answers: list[DocumentAnswer]
    answer: str
    citations: list[str]
    invalid_citations: list[InvalidCitation]
    unsupported: list[UnsupportedLine]
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
