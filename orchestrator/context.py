"""The one context handed to every piece of user code (sub-agents, stages, hooks), and the hooks.

Modelled on pydantic-ai's ``RunContext[Deps]``: a frozen object that says which run this is, gives
the model under the coordinator's limits and accounting, carries the application's own
dependencies, and reaches LangGraph nodes through the graph's ``context_schema``
(``runtime.context``), never through a key in ``config``.

Scope is part of the type's contract. A sub-agent's context holds its one `SubTask` and no request:
isolation is not a convention a user's sub-agent must keep, there is nothing else to read. A stage
that works on the whole request (split, rank, synthesize) holds the request and no task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol

from typing_extensions import TypeVar

from fanout.agents.backend import Completion, CompletionRequest, Usage
from fanout.agents.errors import UserError
from fanout.agents.subagent import ModelAccess
from fanout.agents.task import SubTask

from .request import Request
from .result import RunResult, SubResult
from .state import RunPlan

__all__ = [
    "DepsT",
    "ModelFactory",
    "RunContext",
    "RunHooks",
    "ScopedModel",
    "UsageMeter",
]

DepsT = TypeVar("DepsT", default=None)
"""The application's own dependencies (a database handle, a user id): `RunContext.deps`."""


class RunHooks:
    """Lifecycle hooks of a run, fed by the runtime itself (openai-agents' ``RunHooks`` is the model).

    The runtime calls them where things happen: the split node when the plan is known, each
    sub-agent node around its sub-agent, each model call attempt, and the last node with the
    finished result. Nothing is reconstructed from LangGraph's stream updates, so hooks fire the same
    whether the run goes through `Coordinator.run`, ``coordinator.graph.astream`` or a graph that
    embeds it. Every method is a no-op coroutine: subclass and override what you need. A hook that
    raises fails what it observes (a call, a sub-agent, the run); keep hooks cheap, they run on the
    run's event loop.
    """

    async def on_run_start(self, ctx: RunContext[Any], plan: RunPlan) -> None:
        """The request is split and about to fan out (`plan.tasks`; on resume, the saved plan)."""

    async def on_run_end(self, ctx: RunContext[Any], result: RunResult[Any]) -> None:
        """The run finished with `result` (not called when it raised)."""

    async def on_sub_agent_start(self, ctx: RunContext[Any]) -> None:
        """A sub-agent is about to run `ctx.task` (not called for results read from a store)."""

    async def on_sub_agent_end(self, ctx: RunContext[Any], result: SubResult[Any]) -> None:
        """A sub-agent finished, ok or failed (also for results read back from a store)."""

    async def on_call_start(self, ctx: RunContext[Any], request: CompletionRequest) -> None:
        """A model call attempt is about to start (after waiting for a concurrency slot)."""

    async def on_call_end(
        self,
        ctx: RunContext[Any],
        request: CompletionRequest,
        outcome: Completion | BaseException,
    ) -> None:
        """A model call attempt ended: its completion, or the error it raised."""


class UsageMeter:
    """The run's running total of what its model calls cost, shared by every scope of the run.

    Calls in flight hold a reservation (their prompt and their whole completion budget) so that
    concurrent calls cannot pass a run budget together.
    """

    def __init__(self) -> None:
        self.total = Usage()
        """Usage of every successful call so far."""
        self.reserved_tokens = 0
        """Tokens the calls in flight may still spend."""
        self.reserved_usd = 0.0
        """Dollars the calls in flight may still spend."""
        self.lock = threading.Lock()
        """Held while a reservation is checked and taken (calls may come from several threads)."""

    def add(self, usage: Usage) -> None:
        """Count one call."""
        with self.lock:
            self.total = self.total + usage


class ScopedModel(ModelAccess, Protocol):
    """The model access of one scope, told which context it serves (its hooks receive it)."""

    def bind(self, ctx: RunContext[Any]) -> None:
        """Serve `ctx`: hooks of this access's calls receive it."""
        ...


ModelFactory = Callable[[dict[str, str]], ScopedModel]
"""Makes the model access of one scope (tags say which): the runtime's calls under its limits."""


@dataclass(frozen=True, kw_only=True, eq=False)
class RunContext(Generic[DepsT]):
    """What user code receives: the run, its model under the run's limits, hooks and your deps.

    The runtime builds contexts; user code reads them. `task` exists only inside a sub-agent and
    `request` only outside one, so a sub-agent cannot read another document.
    """

    run_id: str
    """The run's id (the checkpoint thread id when the run is checkpointed)."""
    model: ModelAccess
    """The model for this scope: every call bounded, retried, timed, counted and hooked."""
    deps: DepsT
    """The application's own dependencies, as given to the coordinator (None by default)."""
    hooks: RunHooks = field(default_factory=RunHooks)
    """The run's lifecycle hooks."""
    meter: UsageMeter = field(default_factory=UsageMeter, repr=False)
    """The run's usage so far, shared by every scope (read it as `usage`)."""
    scope: str = "run"
    """Which part of the run this context is for: run, sub_agent, or a stage's name."""
    _request: Request | None = field(default=None, repr=False)
    _task: SubTask | None = field(default=None, repr=False)
    _spawn: ModelFactory | None = field(default=None, repr=False)
    """How the runtime makes the model access of a narrower scope (None: reuse `model`)."""

    @property
    def request(self) -> Request:
        """The whole request (documents and tasks); not available inside a sub-agent."""
        if self._request is None:
            raise UserError(
                "a sub-agent's context holds only its own task (ctx.task), never the request: "
                "that is what keeps sub-agents isolated",
                parameter="ctx.request",
            )
        return self._request

    @property
    def task(self) -> SubTask:
        """The sub-agent's one unit of work: its task and its document (or chunk)."""
        if self._task is None:
            raise UserError(
                f"only a sub-agent's context has a task; this one is for {self.scope}",
                parameter="ctx.task",
            )
        return self._task

    @property
    def usage(self) -> Usage:
        """What the run's successful model calls have cost so far."""
        return self.meter.total

    def for_request(self, request: Request) -> RunContext[DepsT]:
        """This run's context for `request`: what split, rank and synthesis stages receive."""
        return replace(self, scope="run", _request=request, _task=None)

    def for_sub_agent(self, task: SubTask) -> RunContext[DepsT]:
        """The context of the sub-agent that runs `task`: that task, its own model access."""
        tags = {
            "run_id": self.run_id,
            "sub_agent_id": task.id,
            "document_id": task.document_id or "*",
        }
        return self._narrowed("sub_agent", tags, request=None, task=task)

    def for_stage(self, stage: str) -> RunContext[DepsT]:
        """The context of one stage of the run (reduce, rank, synthesis), counted apart."""
        tags = {"run_id": self.run_id, "sub_agent_id": stage, "document_id": "*"}
        return self._narrowed(stage, tags, request=self._request, task=None)

    def _narrowed(
        self, scope: str, tags: dict[str, str], *, request: Request | None, task: SubTask | None
    ) -> RunContext[DepsT]:
        if self._spawn is None:
            return replace(self, scope=scope, _request=request, _task=task)
        model = self._spawn(tags)
        narrowed = replace(self, scope=scope, _request=request, _task=task, model=model)
        model.bind(narrowed)
        return narrowed
