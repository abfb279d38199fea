"""The public `Coordinator` and its compiled LangGraph graph: split, fan out, reduce, synthesize.

    START -> split -(Send x N)-> sub_agent -> reduce -> synthesize -> END

Each `Send` carries one `SubTask` only, so a sub-agent cannot see another document, another task or
an earlier answer. A sub-agent's failure is caught in its own node and becomes a failed `SubResult`:
one bad document never sinks the run, and the synthesizer's answer names it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send
from pydantic import BaseModel

from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import UserError
from fanout.agents.portal import run_sync
from fanout.agents.prompts import prompt_text
from fanout.agents.subagent import (
    SubAgent,
    SubAgentOutput,
    SubTask,
    answer_task,
    structured_answerer,
    task_prompt,
    validate_output,
)

from .errors import RunFailed
from .logs import ensure_logging
from .policy import CallPolicy, CircuitBreaker, FailurePolicy, ModelCaller
from .reduce import reduce_chunks
from .request import Request
from .result import RunResult, RunUsage, SubResult
from .split import split_monolithic, split_request
from .state import CoordinatorInput, CoordinatorState, SubAgentInput
from .store import ResultStore
from .synthesize import (
    CollectSynthesizer,
    LLMSynthesizer,
    Synthesizer,
    cited_ids,
    missing_note,
)

__all__ = ["Coordinator", "RunObserver", "Splitter", "Strategy"]

Strategy = Literal["isolated", "monolithic"]
Splitter = Callable[[Request], list[SubTask]]

# Tokens kept free beyond the measured prompt overhead and completion budget (template drift).
_CONTEXT_MARGIN = 32


class RunObserver:
    """Hooks called while a run streams (progress bars, live tables); subclass what you need."""

    def on_plan(self, tasks: list[SubTask]) -> None:
        """The request was split into `tasks`."""

    def on_sub_result(self, result: SubResult) -> None:
        """A sub-agent finished (ok or failed)."""


def _node(fn: Callable[[Any], Coroutine[Any, Any, Any]], name: str) -> RunnableLambda[Any, Any]:
    """Expose an async node to both ``invoke``/``stream`` and ``ainvoke``/``astream``."""

    def blocking(state: Any) -> Any:
        return run_sync(fn(state))

    return RunnableLambda(blocking, afunc=fn, name=name)


class Coordinator:
    """Answers a `Request` by fanning isolated sub-agents out over its documents and tasks.

    Args:
        backend: the model every call goes to.
        strategy: "isolated" (one clean-context sub-agent per document x task x chunk) or
            "monolithic" (one prompt holding everything: the baseline, same accounting).
        synthesis: "llm", "collect", or your own `Synthesizer`.
        sub_agent: your own sub-agent (a coroutine, or `graph_sub_agent(graph)`); default QA.
        splitter: your own request -> sub-tasks function; default one per document x task x chunk.
        output_schema: a pydantic model every sub-agent answer must validate against.
        policy: concurrency, timeout, retries and completion budget for every call.
        chunk_tokens: largest document chunk per sub-agent; default fits the backend's context.
        overlap_tokens: tokens shared by consecutive chunks.
        checkpointer: a LangGraph checkpointer; runs are then keyed by ``run_id`` and an
            interrupted run resumes when run again with the same id.
        result_store: where each finished sub-result is written the moment it completes and
            looked up before any model call, so a resumed run never recomputes finished work.
        failure_policy: "best_effort", "fail_fast", "quorum=K" or a `FailurePolicy`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        strategy: Strategy = "isolated",
        synthesis: Literal["llm", "collect"] | Synthesizer = "llm",
        sub_agent: SubAgent | None = None,
        splitter: Splitter | None = None,
        output_schema: type[BaseModel] | None = None,
        policy: CallPolicy | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = 32,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        result_store: ResultStore | None = None,
        failure_policy: FailurePolicy | str = "best_effort",
    ) -> None:
        ensure_logging()
        if strategy not in ("isolated", "monolithic"):
            raise UserError(f"unknown strategy '{strategy}' (use isolated or monolithic)")
        self.backend = backend
        self.strategy: Strategy = strategy
        self.policy = policy or CallPolicy()
        self.output_schema = output_schema
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        if sub_agent is not None:
            self.sub_agent = sub_agent
        elif output_schema is not None:
            self.sub_agent = structured_answerer(output_schema)
        else:
            self.sub_agent = answer_task
        self.splitter = splitter
        self.result_store = result_store
        self.failure_policy = (
            FailurePolicy.parse(failure_policy)
            if isinstance(failure_policy, str)
            else failure_policy
        )
        self.breaker = CircuitBreaker(self.policy.breaker_threshold, self.policy.breaker_cooldown_s)
        if synthesis == "llm":
            self.synthesizer: Synthesizer = LLMSynthesizer()
        elif synthesis == "collect":
            self.synthesizer = CollectSynthesizer()
        elif isinstance(synthesis, str):
            raise UserError(f"unknown synthesis mode '{synthesis}' (use llm or collect)")
        else:
            self.synthesizer = synthesis
        self._reduce_mode: Literal["llm", "join"] = "join" if synthesis == "collect" else "llm"
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._limiters = weakref.WeakKeyDictionary()
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = self._build().compile(
            checkpointer=checkpointer, name="fanout"
        )

    # -- public entry points -------------------------------------------------------------

    def run(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        observer: RunObserver | None = None,
    ) -> RunResult:
        """Answer `request` synchronously (works from inside a running event loop too)."""
        return run_sync(self.arun(request, run_id=run_id, observer=observer))

    async def arun(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        observer: RunObserver | None = None,
    ) -> RunResult:
        """Answer `request`, telling `observer` about the plan and each sub-agent as it finishes.

        With a checkpointer, a `run_id` whose run was interrupted resumes where it stopped, and a
        finished one returns its stored result without calling any model.
        """
        run_id = run_id or uuid.uuid4().hex[:12]
        config = self.config(run_id)
        inputs: CoordinatorInput | None = {"request": request, "run_id": run_id}
        if self.graph.checkpointer is not None:
            snapshot = await self.graph.aget_state(config)
            if snapshot.values:
                if snapshot.values.get("request") != request:
                    raise UserError(f"run id '{run_id}' was started with a different request")
                if not snapshot.next and "answer" in snapshot.values:
                    return self.result(cast(CoordinatorState, snapshot.values))
                inputs = None  # resume from the last checkpoint
        final: Any = None
        finished: list[SubResult] = []
        try:
            async for mode, chunk in self.graph.astream(
                inputs, config=config, stream_mode=["updates", "values"]
            ):
                if mode == "values":
                    final = chunk
                    continue
                update = cast(dict[str, Any], chunk)
                finished += update.get("sub_agent", {}).get("sub_results", [])
                if observer is not None:
                    self._notify(observer, update)
        except RunFailed as exc:
            known = {r.sub_agent_id for r in exc.partial}
            exc.partial = exc.partial + [r for r in finished if r.sub_agent_id not in known]
            raise
        return self.result(final)

    @staticmethod
    def _notify(observer: RunObserver, update: dict[str, Any]) -> None:
        for node, writes in update.items():
            if not isinstance(writes, dict):
                continue
            if node == "split":
                observer.on_plan(writes["tasks"])
            elif node == "sub_agent":
                for result in writes["sub_results"]:
                    observer.on_sub_result(result)

    def config(self, run_id: str) -> RunnableConfig:
        """The LangGraph config for a run, keyed by run id for checkpoints.

        Model calls are bounded by the coordinator's own semaphore, not LangGraph's
        ``max_concurrency``: that one leaves queued tasks un-awaited when a fail_fast task raises.
        """
        return {"configurable": {"thread_id": run_id}, "recursion_limit": 25}

    def result(self, state: CoordinatorState) -> RunResult:
        """Build the typed result from a finished graph state (e.g. the last ``stream`` value)."""
        sub_results = self._ordered(state["tasks"], state.get("sub_results", []))
        stages = {"sub_agents": sum((r.usage for r in sub_results), Usage())}
        stages.update(state.get("stage_usage", {}))
        return RunResult(
            run_id=state["run_id"],
            strategy=self.strategy,
            answer=state["answer"],
            answers=state["answers"],
            sub_results=sub_results,
            citations=state.get("citations", []),
            usage=RunUsage.from_stages(stages, state["finished_at"] - state["started_at"]),
        )

    # -- graph ---------------------------------------------------------------------------

    def _build(self) -> StateGraph[CoordinatorState, None, CoordinatorInput, CoordinatorState]:
        builder = StateGraph(CoordinatorState, input_schema=CoordinatorInput)
        builder.add_node("split", _node(self._split, "split"))
        builder.add_node("sub_agent", _node(self._sub_agent, "sub_agent"))
        builder.add_node("reduce", _node(self._reduce, "reduce"))
        builder.add_node("synthesize", _node(self._synthesize, "synthesize"))
        builder.add_edge(START, "split")
        builder.add_conditional_edges("split", self._fan_out, ["sub_agent"])
        builder.add_edge("sub_agent", "reduce")
        builder.add_edge("reduce", "synthesize")
        builder.add_edge("synthesize", END)
        return builder

    async def _split(self, state: CoordinatorState) -> dict[str, Any]:
        request = state["request"]
        if self.strategy == "monolithic":
            tasks = split_monolithic(request)
        elif self.splitter is not None:
            tasks = self.splitter(request)
        else:
            tasks = split_request(
                request,
                chunk_tokens=self._chunk_budget(request),
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

    def _fan_out(self, state: CoordinatorState) -> list[Send]:
        return [
            Send("sub_agent", SubAgentInput(task=task, run_id=state["run_id"]))
            for task in state["tasks"]
        ]

    async def _sub_agent(self, inputs: SubAgentInput) -> dict[str, Any]:
        result = await self.run_sub_task(inputs["task"], inputs["run_id"])
        if result.status == "failed" and self.failure_policy.mode == "fail_fast":
            raise RunFailed(
                f"fail_fast: sub-agent {result.sub_agent_id} failed: {result.error}",
                partial=[result],
            )
        return {"sub_results": [result]}

    async def _reduce(self, state: CoordinatorState) -> dict[str, Any]:
        sub_results = self._ordered(state["tasks"], state["sub_results"])
        succeeded = sum(r.status == "ok" for r in sub_results)
        if self.failure_policy.mode == "quorum" and succeeded < self.failure_policy.quorum:
            raise RunFailed(
                f"quorum not met: {succeeded} of {len(sub_results)} sub-agents succeeded, "
                f"{self.failure_policy.quorum} required",
                partial=sub_results,
            )
        callers: list[ModelCaller] = []
        answers = await reduce_chunks(
            sub_results, mode=self._reduce_mode, llm=self._caller_factory(state, "reduce", callers)
        )
        return {"answers": answers, "stage_usage": {"reduce": _total(callers)}}

    async def _synthesize(self, state: CoordinatorState) -> dict[str, Any]:
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
        note = missing_note(self._ordered(state["tasks"], state["sub_results"]))
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

    def _chunk_budget(self, request: Request) -> int | None:
        """Largest chunk that fits the context next to the prompt and the completion budget."""
        if self.chunk_tokens is not None:
            return self.chunk_tokens
        window = self.backend.context_window
        if window is None:
            return None
        overhead = max(
            self.backend.count_tokens(
                prompt_text(
                    task_prompt(SubTask(id="probe", document_id="probe", task=t, context="")),
                    self.backend.prompt_style,
                )
            )
            for t in request.tasks
        )
        budget = window - overhead - self.policy.max_tokens - _CONTEXT_MARGIN
        if budget < 16:
            raise UserError(
                f"the model's context ({window} tokens) leaves no room for a document next to the "
                f"prompt ({overhead} tokens) and the answer ({self.policy.max_tokens} tokens)"
            )
        return budget

    @staticmethod
    def _ordered(tasks: list[SubTask], results: list[SubResult]) -> list[SubResult]:
        order = {t.id: i for i, t in enumerate(tasks)}
        return sorted(results, key=lambda r: order.get(r.sub_agent_id, len(order)))


def _total(callers: list[ModelCaller]) -> Usage:
    return sum((c.usage for c in callers), Usage())
