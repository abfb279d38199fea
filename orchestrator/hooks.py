"""Lifecycle hooks of a run, fed by the runtime itself (openai-agents' ``RunHooks`` is the model).

The runtime calls them where things happen: the split node when the plan is known, each sub-agent
node around its sub-agent, each model call attempt, and the last node with the finished result.
Nothing is reconstructed from LangGraph's stream updates, so hooks fire the same whether the run
goes through `Coordinator.run`, ``coordinator.graph.astream`` or a graph that embeds it.
"""

from __future__ import annotations

from typing import Any

from .context import CallHooks, RunContext
from .plan import RunPlan
from .result import RunResult, SubResult

__all__ = ["RunHooks"]


class RunHooks(CallHooks):
    """Every hook of a run; each a no-op coroutine: subclass and override what you need.

    A hook that raises fails what it observes: a sub-agent hook fails that sub-agent, a run hook
    the run. Keep hooks cheap; they run on the run's event loop.
    """

    async def on_run_start(self, ctx: RunContext[Any], plan: RunPlan) -> None:
        """The request is split and about to fan out (`plan.tasks`; on resume, the saved plan)."""

    async def on_run_end(self, ctx: RunContext[Any], result: RunResult[Any]) -> None:
        """The run finished with `result` (not called when it raised)."""

    async def on_sub_agent_start(self, ctx: RunContext[Any]) -> None:
        """A sub-agent is about to run `ctx.task` (not called for results read from a store)."""

    async def on_sub_agent_end(self, ctx: RunContext[Any], result: SubResult[Any]) -> None:
        """A sub-agent finished, ok or failed (also for results read back from a store)."""
