"""Section "overhead": what the coordinator itself costs per sub-agent when the model costs nothing.

Three ways to make the same N zero-latency scripted calls: fanout's coordinator, the least a
LangGraph fan-out can be (one `Send` per call, results gathered by a reducer), and a plain asyncio
gather. The coordinator's figure is the framework's fixed cost per sub-agent.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy

from .baseline import plain_gather
from .section import Section
from .timing import best, race
from .workload import bench_prompts, bench_request

__all__ = ["OverheadSection", "measure_overhead"]


class OverheadSection(Section):
    """Framework cost per sub-agent when the model costs nothing."""

    n: int
    """Sub-agents per run."""
    repeats: int
    """Timed runs per contender (after one warm-up run)."""
    coordinator_ms: float
    """fanout's Coordinator: best wall time per sub-agent, ms."""
    langgraph_ms: float
    """A bare LangGraph graph fanning out with Send: best wall time per sub-agent, ms."""
    asyncio_ms: float
    """A plain asyncio gather under a semaphore: best wall time per sub-agent, ms."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds, per contender."""

    def summary(self) -> str:
        """Per-sub-agent cost of the three contenders."""
        return (
            f"N={self.n}: coordinator {self.coordinator_ms:.3f} ms/sub-agent; "
            f"bare LangGraph Send {self.langgraph_ms:.3f}; asyncio loop {self.asyncio_ms:.3f}"
        )


class _SendState(TypedDict):
    requests: list[CompletionRequest]
    texts: Annotated[list[str], operator.add]


class _CallInput(TypedDict):
    request: CompletionRequest


def _bare_send_graph(backend: ScriptedBackend) -> Any:
    """The least a LangGraph fan-out can be: one Send per call, results gathered by a reducer."""

    async def call(state: _CallInput) -> dict[str, Any]:
        completion = await backend.complete(state["request"])
        return {"texts": [completion.text]}

    def fan_out(state: _SendState) -> list[Send]:
        return [Send("call", _CallInput(request=r)) for r in state["requests"]]

    builder = StateGraph(_SendState)
    builder.add_node("call", call)
    builder.add_conditional_edges(START, fan_out, ["call"])
    builder.add_edge("call", END)
    return builder.compile()


def measure_overhead(
    n: int = 100, *, repeats: int = 5, max_concurrency: int = 16
) -> OverheadSection:
    """Wall time per sub-agent of three ways to make the same `n` zero-latency calls."""
    backend = ScriptedBackend(fn=lambda _request: "ok", record=False)
    policy = CallPolicy(max_concurrency=max_concurrency)
    request = bench_request(n)
    requests = [CompletionRequest(prompt=p, max_tokens=policy.max_tokens) for p in bench_prompts(n)]
    coordinator = Coordinator(backend, synthesis="collect", policy=policy)
    graph = _bare_send_graph(backend)

    async def with_coordinator() -> None:
        result = await coordinator.arun(request)
        if not result.ok or len(result.sub_results) != n:
            raise RuntimeError(f"coordinator run failed: {result.failed[:1]}")

    async def with_langgraph() -> None:
        state = await graph.ainvoke(
            {"requests": requests}, config={"max_concurrency": max_concurrency}
        )
        if len(state["texts"]) != n:
            raise RuntimeError("bare LangGraph run lost results")

    async def with_asyncio() -> None:
        await plain_gather(backend, requests, max_concurrency=max_concurrency)

    with asyncio.Runner() as runner:  # one loop for every run, as an application would have
        samples = race(
            {
                "coordinator": lambda: runner.run(with_coordinator()),
                "langgraph": lambda: runner.run(with_langgraph()),
                "asyncio": lambda: runner.run(with_asyncio()),
            },
            rounds=repeats,
        )
    per_call = {name: best(s) / n * 1000 for name, s in samples.items()}
    return OverheadSection(
        goal="<= 1 ms per sub-agent (coordinator, zero-latency backend)",
        met=per_call["coordinator"] <= 1.0,
        n=n,
        repeats=repeats,
        coordinator_ms=per_call["coordinator"],
        langgraph_ms=per_call["langgraph"],
        asyncio_ms=per_call["asyncio"],
        samples_s=samples,
    )
