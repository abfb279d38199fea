"""The coordinator graph's nodes: split, one sub-agent, reduce chunks, synthesize.

Each node reads the state and returns only what it writes. A sub-agent's failure is caught in its
own node and becomes a failed `SubResult`: one bad document never sinks the run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.types import Send
from pydantic import BaseModel

from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import UserError

from .budget import chunk_budget
from .errors import RunFailed
from .policy import CallPolicy, CircuitBreaker, FailurePolicy, ModelCaller
from .reduce import ReduceMode, reduce_chunks
from .request import Request
from .result import SubResult
from .split import split_monolithic, split_request
from .state import CoordinatorState, SubAgentInput
from .store import ResultStore
from .subagent import SubAgent, SubAgentOutput, validate_output
from .synthesize import Synthesizer, cited_ids, missing_note
from .task import SubTask

__all__ = ["CoordinatorNodes", "Splitter", "Strategy", "ordered"]

Strategy = Literal["isolated", "monolithic"]
Splitter = Callable[[Request], list[SubTask]]


def ordered(tasks: list[SubTask], results: list[SubResult]) -> list[SubResult]:
    """Sub-results in the order of their tasks (they finish in any order)."""
    order = {t.id: i for i, t in enumerate(tasks)}
    return sorted(results, key=lambda r: order.get(r.sub_agent_id, len(order)))


def _total(callers: list[ModelCaller]) -> Usage:
    return sum((c.usage for c in callers), Usage())


@dataclass(eq=False, kw_only=True)
class CoordinatorNodes:
    """What the nodes need from the coordinator's settings, and the node functions themselves."""

    backend: Backend
    strategy: Strategy
    policy: CallPolicy
    sub_agent: SubAgent
    splitter: Splitter | None
    output_schema: type[BaseModel] | None
    chunk_tokens: int | None
    overlap_tokens: int
    result_store: ResultStore | None
    failure_policy: FailurePolicy
    synthesizer: Synthesizer
    reduce_mode: ReduceMode
    breaker: CircuitBreaker = field(init=False)
    _limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        init=False, default_factory=weakref.WeakKeyDictionary
    )

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.policy.breaker_threshold, self.policy.breaker_cooldown_s)

    # -- nodes ---------------------------------------------------------------------------

    async def split(self, state: CoordinatorState) -> dict[str, Any]:
        """Cut the request into sub-tasks: one per document x task x chunk (or one, monolithic)."""
        request = state["request"]
        if self.strategy == "monolithic":
            tasks = split_monolithic(request)
        elif self.splitter is not None:
            tasks = self.splitter(request)
        else:
            budget = self.chunk_tokens
            if budget is None:
                budget = chunk_budget(self.backend, request, max_tokens=self.policy.max_tokens)
            tasks = split_request(
                request,
                chunk_tokens=budget,
                overlap_tokens=self.overlap_tokens,
                count_tokens=self.backend.count_tokens,
            )
        if not tasks:
            raise UserError("the splitter produced no sub-tasks")
        return {
            "tasks": tasks,
            "run_id": state.get("run_id") or uuid.uuid4().hex[:12],
            "started_at": time.time(),
        }

    def fan_out(self, state: CoordinatorState) -> list[Send]:
        """One `Send` per sub-task, carrying that task and nothing else of the request."""
        return [
            Send("sub_agent", SubAgentInput(task=task, run_id=state["run_id"]))
            for task in state["tasks"]
        ]

    async def run_one(self, inputs: SubAgentInput) -> dict[str, Any]:
        """The sub-agent node: run one sub-task; under fail_fast a failure stops the run."""
        result = await self.run_sub_task(inputs["task"], inputs["run_id"])
        if result.status == "failed" and self.failure_policy.mode == "fail_fast":
            raise RunFailed(
                f"fail_fast: sub-agent {result.sub_agent_id} failed: {result.error}",
                partial=[result],
            )
        return {"sub_results": [result]}

    async def reduce(self, state: CoordinatorState) -> dict[str, Any]:
        """Check the failure policy, then merge each chunked document's partial answers."""
        sub_results = ordered(state["tasks"], state["sub_results"])
        succeeded = sum(r.status == "ok" for r in sub_results)
        if self.failure_policy.mode == "quorum" and succeeded < self.failure_policy.quorum:
            raise RunFailed(
                f"quorum not met: {succeeded} of {len(sub_results)} sub-agents succeeded, "
                f"{self.failure_policy.quorum} required",
                partial=sub_results,
            )
        callers: list[ModelCaller] = []
        answers = await reduce_chunks(
            sub_results, mode=self.reduce_mode, llm=self._caller_factory(state, "reduce", callers)
        )
        return {"answers": answers, "stage_usage": {"reduce": _total(callers)}}

    async def synthesize(self, state: CoordinatorState) -> dict[str, Any]:
        """Merge the per-document answers; the coordinator itself names failed sub-agents."""
        request, answers = state["request"], state["answers"]
        known = [d.id for d in request.documents]
        callers: list[ModelCaller] = []
        if self.strategy == "monolithic":
            answer = answers[0].answer or ""
            citations = cited_ids(answer, known)
        else:
            synthesis = await self.synthesizer.synthesize(
                request, answers, self._caller_factory(state, "synthesis", callers)
            )
            answer, citations = synthesis.answer, synthesis.citations
        note = missing_note(ordered(state["tasks"], state["sub_results"]))
        if note:
            answer = f"{answer}\n{note}" if answer else note
        return {
            "answer": answer,
            "citations": citations,
            "stage_usage": {"synthesis": _total(callers)},
            "finished_at": time.time(),
        }

    # -- sub-agents ----------------------------------------------------------------------

    async def run_sub_task(self, task: SubTask, run_id: str) -> SubResult:
        """Run one sub-agent to a `SubResult`; every failure is caught and reported in it.

        A result already in the result store (an earlier, interrupted attempt at this run) is
        returned as it is; a new successful one is stored before this returns.
        """
        if self.result_store is not None:
            stored = self.result_store.get(run_id, task.id)
            if stored is not None:
                return stored
        caller = self._caller(run_id, task.id, task.document_id)
        base: dict[str, Any] = {
            "sub_agent_id": task.id,
            "document_id": task.document_id,
            "chunk_index": task.chunk_index,
            "n_chunks": task.n_chunks,
            "task_index": task.task_index,
            "task": task.task,
        }
        try:
            output, data = self._normalise(await self.sub_agent(task, caller))
        except Exception as exc:  # isolate the failure to this sub-agent
            return SubResult(
                **base,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                attempts=caller.attempts,
                usage=caller.usage,
            )
        result = SubResult(
            **base,
            status="ok",
            output=output,
            data=data,
            attempts=caller.attempts,
            usage=caller.usage,
        )
        if self.result_store is not None:
            self.result_store.put(run_id, result)
        return result

    def _normalise(self, output: SubAgentOutput) -> tuple[str, dict[str, Any] | None]:
        if isinstance(output, dict):
            output = json.dumps(output)
        if self.output_schema is not None and isinstance(output, str):
            output = validate_output(self.output_schema, output)
        if isinstance(output, BaseModel):
            return output.model_dump_json(), output.model_dump(mode="json")
        return str(output).strip(), None

    def _limiter(self) -> asyncio.Semaphore:
        # asyncio primitives belong to one loop: run() and arun() may use different ones.
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = asyncio.Semaphore(self.policy.max_concurrency)
        return limiter

    def _caller(self, run_id: str, agent_id: str, document_id: str | None) -> ModelCaller:
        tags = {"run_id": run_id, "sub_agent_id": agent_id, "document_id": document_id or "*"}
        return ModelCaller(
            self.backend, self.policy, self._limiter(), tags=tags, breaker=self.breaker
        )

    def _caller_factory(
        self, state: CoordinatorState, stage: str, callers: list[ModelCaller]
    ) -> Callable[[], ModelCaller]:
        def make() -> ModelCaller:
            caller = self._caller(state["run_id"], f"{stage}-{len(callers)}", None)
            callers.append(caller)
            return caller

        return make
