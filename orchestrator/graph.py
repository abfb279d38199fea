"""The coordinator's LangGraph wiring; the nodes themselves are in `fanout.orchestrator.nodes`.

    START -> split -> dispatch -(Send x wave)-> sub_agent -> dispatch ... -> reduce -> rank -> synthesize -> END

Each `Send` carries one `SubTask` only, so a sub-agent cannot see another document, another task or
an earlier answer. `dispatch` sends the sub-tasks in waves (`nodes.wave_size`, one superstep each)
rather than all at once: LangGraph's bookkeeping for one superstep grows with the square of its
tasks (each finished task's writes are filtered against every pending write), which at 100,000
sub-agents would cost minutes; in waves of a few times the concurrency it stays linear, and a
wave's tail costs at most one slow call.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph

from fanout.agents.portal import run_sync

from .nodes import CoordinatorNodes
from .state import CoordinatorInput, CoordinatorState

__all__ = ["build_graph"]


class _AsyncNode(Runnable[Any, Any]):
    """An async node that ``invoke``/``stream`` run on the portal loop and ``ainvoke`` awaits.

    LangGraph already traces each node run and sets its config context; langchain's
    `RunnableLambda` would add a nested run of its own, with callback managers, config patching and
    a signature inspection per call: about half of the coordinator's CPU time per sub-agent.
    """

    def __init__(self, fn: Callable[[Any], Coroutine[Any, Any, Any]], name: str) -> None:
        self.fn = fn
        self.name = name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the node to completion from synchronous code."""
        return run_sync(self.fn(input))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the node."""
        return await self.fn(input)


def build_graph(
    nodes: CoordinatorNodes,
) -> StateGraph[CoordinatorState, None, CoordinatorInput, CoordinatorState]:
    """The uncompiled graph; the `Coordinator` compiles it with the caller's checkpointer."""
    builder = StateGraph(CoordinatorState, input_schema=CoordinatorInput)
    builder.add_node("split", _AsyncNode(nodes.split, "split"))
    builder.add_node("dispatch", nodes.dispatch)
    builder.add_node("sub_agent", _AsyncNode(nodes.run_one, "sub_agent"))
    builder.add_node("reduce", _AsyncNode(nodes.reduce, "reduce"))
    builder.add_node("rank", _AsyncNode(nodes.rank, "rank"))
    builder.add_node("synthesize", _AsyncNode(nodes.synthesize, "synthesize"))
    builder.add_edge(START, "split")
    builder.add_edge("split", "dispatch")
    builder.add_conditional_edges("dispatch", nodes.fan_out, ["sub_agent", "reduce"])
    builder.add_edge("sub_agent", "dispatch")
    builder.add_edge("reduce", "rank")
    builder.add_edge("rank", "synthesize")
    builder.add_edge("synthesize", END)
    return builder
