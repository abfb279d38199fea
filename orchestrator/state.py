"""A run as values: its plan, the graph's typed state, and what goes in and comes out of it.

A `RunPlan` is what `Coordinator.plan` returns and `Coordinator.run` takes: planning (auto's
choice, then splitting long documents) can take seconds and is what a caller shows before any model
call, so it is made once and handed over, never stashed for a later call to find.

`FanoutInput` and `FanoutOutput` are the declared keys a graph that embeds fanout's as a node shares
with it: give it ``request`` (and ``run_id``, optionally a ``plan``), read back ``result``. List fields
use reducers so parallel sub-agents can write.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langgraph.channels.topic import Topic
from langgraph.channels.untracked_value import UntrackedValue
from pydantic import BaseModel, ConfigDict

from fanout.agents.backend import Usage
from fanout.agents.task import SubTask

from .auto import RunMode, StrategyChoice
from .request import Request
from .result import DocumentAnswer, InvalidCitation, RunResult, SubResult, UnsupportedLine

__all__ = [
    "FanoutInput",
    "FanoutOutput",
    "FanoutState",
    "ResultLog",
    "RunPlan",
    "SubAgentInput",
    "merge_usage",
]


class RunPlan(BaseModel):
    """How one request will run: its sub-tasks, and how and why it runs that way."""

    model_config = ConfigDict(frozen=True)

    request: Request
    """The request planned."""
    tasks: list[SubTask]
    """One per sub-agent, in request order."""
    mode: RunMode
    """isolated (a sub-agent per sub-task) or monolithic (one prompt holding everything)."""
    choice: StrategyChoice | None = None
    """With ``strategy="auto"``: what was chosen and why; None for a fixed strategy."""
    resumed: bool = False
    """True when the plan was read back from a checkpoint (a run being resumed)."""

    @property
    def documents(self) -> int:
        """Documents the sub-tasks read (0 for one prompt holding all of them)."""
        return len({t.document_id for t in self.tasks if t.document_id is not None})

    @property
    def unasked(self) -> list[str]:
        """Documents no sub-task reads (a pre-filter left them out; none for one prompt)."""
        asked = {t.document_id for t in self.tasks}
        if None in asked:
            return []
        return [d.id for d in self.request.documents if d.id not in asked]

    @property
    def chunked(self) -> int:
        """(document, task) pairs whose document was cut into chunks."""
        return len({(t.document_id, t.task_index) for t in self.tasks if t.n_chunks > 1})


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
