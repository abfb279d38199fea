"""A run's plan as a value: what `Coordinator.plan` returns and `Coordinator.run` takes.

Planning (auto's choice, then splitting long documents) can take seconds on big inputs and is
what a caller shows before any model call (``fanout run --dry-run``). Made once, it is handed to
the run, never stashed inside the coordinator for a later call to find.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .auto import RunMode, StrategyChoice
from .request import Request
from .task import SubTask

__all__ = ["RunPlan"]


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
    def chunked(self) -> int:
        """(document, task) pairs whose document was cut into chunks."""
        return len({(t.document_id, t.task_index) for t in self.tasks if t.n_chunks > 1})
