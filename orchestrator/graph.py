"""The coordinator's LangGraph wiring; the nodes themselves are in `fanout.orchestrator.nodes`.

    START -> split -(Send x N)-> sub_agent -> reduce -> rank -> synthesize -> END

Each `Send` carries one `SubTask` only, so a sub-agent cannot see another document, another task or
an earlier answer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from fanout.agents.portal import run_sync

from .nodes import CoordinatorNodes
from .state import CoordinatorInput, CoordinatorState

__all__ = ["build_graph"]


def _node(fn: Callable[[Any], Coroutine[Any, Any, Any]], name: str) -> RunnableLambda[Any, Any]:
    """Expose an async node to both ``invoke``/``stream`` and ``ainvoke``/``astream``."""

    def blocking(state: Any) -> Any:
        return run_sync(fn(state))

    return RunnableLambda(blocking, afunc=fn, name=name)


def build_graph(
    nodes: CoordinatorNodes,
) -> StateGraph[CoordinatorState, None, CoordinatorInput, CoordinatorState]:
    """The uncompiled graph; the `Coordinator` compiles it with the caller's checkpointer."""
    builder = StateGraph(CoordinatorState, input_schema=CoordinatorInput)
    builder.add_node("split", _node(nodes.split, "split"))
    builder.add_node("sub_agent", _node(nodes.run_one, "sub_agent"))
    builder.add_node("reduce", _node(nodes.reduce, "reduce"))
    builder.add_node("rank", _node(nodes.rank, "rank"))
    builder.add_node("synthesize", _node(nodes.synthesize, "synthesize"))
    builder.add_edge(START, "split")
    builder.add_conditional_edges("split", nodes.fan_out, ["sub_agent"])
    builder.add_edge("sub_agent", "reduce")
    builder.add_edge("reduce", "rank")
    builder.add_edge("rank", "synthesize")
    builder.add_edge("synthesize", END)
    return builder
