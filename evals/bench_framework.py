"""Bench sections 1 and 2: what the framework itself costs, measured against fake models.

Overhead runs the coordinator, a bare LangGraph Send graph and a plain asyncio loop over the same
zero-latency scripted calls; fan-out runs the coordinator through `OpenAIBackend` against a loopback
server whose fixed delay makes the ideal wall time known exactly.
"""

from __future__ import annotations

import asyncio
import gc
import math
import operator
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from fanout.agents.backend import CompletionRequest
from fanout.agents.portal import run_sync
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.prompts import task_prompt
from fanout.orchestrator.request import Document, Request
from fanout.orchestrator.split import split_request

from .bench import FanoutSection, OverheadSection

__all__ = ["bench_request", "best", "measure_fanout", "measure_overhead", "timed"]

_QUESTION = "By how much did the supplier raise its prices?"
_MONTHS = ("January", "March", "May", "July", "September", "November")


def bench_request(n: int) -> Request:
    """N short supplier memos and one question: a sub-agent per memo, answers a few tokens long."""
    documents = tuple(
        Document(
            id=f"supplier-{i:03d}.md",
            text=(
                f"Supplier {i} ships office furniture from its warehouse in district {i % 7}. "
                f"In {_MONTHS[i % len(_MONTHS)]} it raised its prices by {3 + i % 9}% "
                f"and shortened delivery to {2 + i % 4} days."
            ),
        )
        for i in range(n)
    )
    return Request(documents=documents, question=_QUESTION)


def best(samples: list[float]) -> float:
    """The figure a timing reports: noise from other processes only ever adds time."""
    return min(samples)


async def timed(run: Callable[[], Awaitable[object]]) -> float:
    """Wall seconds of one awaited run."""
    gc.collect()  # a collection left over from the previous run would be charged to this one
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


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


def _requests(request: Request, max_tokens: int) -> list[CompletionRequest]:
    return [
        CompletionRequest(prompt=task_prompt(task), max_tokens=max_tokens)
        for task in split_request(request)
    ]


async def _interleaved(
    contenders: Mapping[str, Callable[[], Awaitable[None]]], repeats: int
) -> dict[str, list[float]]:
    """Time each contender `repeats` times, taking turns so drift in the machine hits all alike.

    Round 0 warms imports, caches and connections up, and is dropped.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(repeats + 1):
        for name, run in contenders.items():
            elapsed = await timed(run)
            if round_:
                samples[name].append(elapsed)
    return samples


def measure_overhead(
    n: int = 100, *, repeats: int = 5, max_concurrency: int = 16
) -> OverheadSection:
    """Wall time per sub-agent of three ways to make the same N zero-latency calls."""
    return asyncio.run(_overhead(n, repeats, max_concurrency))


async def _overhead(n: int, repeats: int, max_concurrency: int) -> OverheadSection:
    backend = ScriptedBackend(fn=lambda _request: "ok")
    policy = CallPolicy(max_concurrency=max_concurrency)
    request = bench_request(n)
    coordinator = Coordinator(backend, synthesis="collect", policy=policy)
    graph = _bare_send_graph(backend)

    async def with_coordinator() -> None:
        result = await coordinator.arun(request)
        if not result.ok or len(result.sub_results) != n:
            raise RuntimeError(f"coordinator run failed: {result.failed[:1]}")

    async def with_langgraph() -> None:
        state = await graph.ainvoke(
            {"requests": _requests(request, policy.max_tokens)},
            config={"max_concurrency": max_concurrency},
        )
        if len(state["texts"]) != n:
            raise RuntimeError("bare LangGraph run lost results")

    async def with_asyncio() -> None:
        limiter = asyncio.Semaphore(max_concurrency)

        async def call(item: CompletionRequest) -> str:
            async with limiter:
                return (await backend.complete(item)).text

        await asyncio.gather(*(call(r) for r in _requests(request, policy.max_tokens)))

    contenders = {
        "coordinator": with_coordinator,
        "langgraph": with_langgraph,
        "asyncio": with_asyncio,
    }
    samples = await _interleaved(contenders, repeats)
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


def measure_fanout(
    n: int = 64,
    *,
    max_concurrency: int = 16,
    delay_s: float = 0.25,
    repeats: int = 3,
    endpoint: Literal["chat", "completions"] = "chat",
) -> FanoutSection:
    """A coordinator run through `OpenAIBackend` against a loopback server with a fixed delay.

    A plain asyncio loop over the same backend runs alongside, so the report separates what the
    HTTP stack costs from what the coordinator adds.
    """
    from fanout.agents.openai import OpenAIBackend

    from .loopback import LoopbackServer

    with LoopbackServer(delay_s) as server:
        backend = OpenAIBackend("loopback", base_url=server.base_url, endpoint=endpoint)
        policy = CallPolicy(max_concurrency=max_concurrency, timeout_s=max(30.0, 20 * delay_s))
        coordinator = Coordinator(backend, synthesis="collect", policy=policy)
        request = bench_request(n)

        async def with_coordinator() -> None:
            result = await coordinator.arun(request)
            if not result.ok:
                raise RuntimeError(f"fan-out run failed: {result.failed[0].error}")

        async def with_asyncio() -> None:
            limiter = asyncio.Semaphore(max_concurrency)

            async def call(item: CompletionRequest) -> str:
                async with limiter:
                    return (await backend.complete(item)).text

            await asyncio.gather(*(call(r) for r in _requests(request, policy.max_tokens)))

        # On the portal loop, where the backend's connections live: no hop between loops per call.
        contenders = {"coordinator": with_coordinator, "asyncio": with_asyncio}
        samples = run_sync(_interleaved(contenders, repeats))
    ideal = math.ceil(n / max_concurrency) * delay_s
    wall = best(samples["coordinator"])
    return FanoutSection(
        goal="<= 1.1x the ideal ceil(N/concurrency) x delay",
        met=wall / ideal <= 1.1,
        n=n,
        max_concurrency=max_concurrency,
        delay_s=delay_s,
        ideal_s=ideal,
        wall_s=wall,
        ratio=wall / ideal,
        asyncio_wall_s=best(samples["asyncio"]),
        excess_ms_per_call=(wall - ideal) / n * 1000,
        samples_s=samples,
    )
