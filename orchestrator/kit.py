"""The graph kit: the runtime's nodes and verbs, and the preset graph built from them.

    START -> split -> dispatch -(Send x wave)-> sub_agent -> dispatch ... -> reduce -> rank
          -> synthesize -> END

`GraphKit` holds the stages and what runs them (the backend under a `CallPolicy`, the result store,
the failure policy, hooks). Its node methods are LangGraph nodes; `add_fan_out` is the verb that
sends each sub-task to its own sub-agent node in waves, and `join_node` the fan-in that hands every
sub-result to the reduce stage. `build` wires the preset; your own graph uses the same parts::

    builder = kit.new_graph()
    builder.add_node("split", kit.split_node())
    kit.add_fan_out(builder, source="split", then="reduce")
    builder.add_node("reduce", kit.join_node())
    ...

Each `Send` carries one `SubTask` only, so a sub-agent cannot see another document, another task or
an earlier answer. Waves (`wave_size`, one superstep each) keep LangGraph's per-superstep bookkeeping,
which grows with the square of a superstep's tasks, linear at 100,000 sub-agents.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Send
from pydantic import BaseModel

from fanout.agents._portal import run_sync
from fanout.agents._prompts import prompt_text
from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import UserError
from fanout.agents.subagent import task_prompt
from fanout.agents.task import SubTask

from ._finish import run_result, synthesize_checked
from ._subagents import Attempts, SubAgentRunner, ordered
from .auto import RunMode, StrategyChooser
from .context import RunContext, RunHooks, UsageMeter
from .errors import RunFailed
from .policy import CallPolicy, CircuitBreaker, FailurePolicy, ModelCaller
from .request import Request
from .result import RunResult, SubResult
from .split import DocumentSplitter, SplitProgress, TopKSplitter, split_monolithic
from .stages import Stages
from .state import FanoutInput, FanoutOutput, FanoutState, RunPlan, SubAgentInput, merge_usage
from .store import ResultStore

__all__ = ["GraphKit", "wave_size"]

Node = Runnable[Any, Any]


def wave_size(max_concurrency: int) -> int:
    """Sub-agents per superstep: enough to keep every concurrency slot busy through a wave."""
    return max(512, 2 * max_concurrency)


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


class _LoopLimiter:
    """The kit's concurrency slot of whichever event loop the call runs on (made on first use)."""

    def __init__(self, limiter: Callable[[], asyncio.Semaphore]) -> None:
        self._limiter = limiter  # one semaphore per loop: enter and exit find the same one

    async def __aenter__(self) -> None:
        await self._limiter().acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._limiter().release()


@dataclass(eq=False, kw_only=True)
class GraphKit:
    """The stages of a run and everything that runs them; makes nodes, wires graphs, makes contexts.

    Args:
        backend: the model every call goes to.
        stages: the stages; defaults to fanout's own.
        policy: concurrency, timeout, retries and completion budget of every call.
        mode: isolated or monolithic when `chooser` is None.
        chooser: ``strategy="auto"``: chooses the mode per request.
        output_schema: a pydantic model the results' ``data`` fields are typed as.
        result_store: where finished sub-results are kept for a resume.
        failure_policy: what a run does when sub-agents fail.
        hooks: lifecycle hooks of every run (a run may bring its own).
        deps: the application's dependencies, `RunContext.deps` of every run.
    """

    backend: Backend
    stages: Stages = field(default_factory=Stages)
    policy: CallPolicy = field(default_factory=CallPolicy)
    mode: RunMode = "isolated"
    chooser: StrategyChooser | None = None
    output_schema: type[BaseModel] | None = None
    result_store: ResultStore | None = None
    failure_policy: FailurePolicy = field(default_factory=FailurePolicy)
    hooks: RunHooks = field(default_factory=RunHooks)
    deps: Any = None
    breaker: CircuitBreaker = field(init=False)
    _limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        init=False, default_factory=weakref.WeakKeyDictionary
    )
    settings: dict[str, str] = field(default_factory=dict)
    """What the results depend on (`fingerprint.run_settings`): part of every content key."""
    _meters: dict[str, UsageMeter] = field(init=False, default_factory=dict)
    _attempts: Attempts = field(init=False, default_factory=Attempts)
    _finished: dict[str, list[SubResult]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.policy.breaker_threshold, self.policy.breaker_cooldown_s)
        self._runner = SubAgentRunner(
            backend=self.backend,
            stages=self.stages,
            policy=self.policy,
            result_store=self.result_store,
            output_schema=self.output_schema,
            settings=lambda: self.settings,
            typed=self.typed,
        )

    # -- contexts ------------------------------------------------------------------------

    def context(
        self, run_id: str, *, hooks: RunHooks | None = None, deps: Any = None
    ) -> RunContext[Any]:
        """The run-level context of `run_id`: what the graph's nodes and your stages receive."""
        hooks = hooks or self.hooks
        meter = self._meters.setdefault(run_id, UsageMeter())

        def spawn(tags: dict[str, str]) -> ModelCaller:
            limiter = _LoopLimiter(self._limiter)
            return ModelCaller(self.backend, self.policy, limiter, tags=tags, breaker=self.breaker)

        model = spawn({"run_id": run_id, "sub_agent_id": "run", "document_id": "*"})
        ctx: RunContext[Any] = RunContext(
            run_id=run_id,
            model=model,
            deps=self.deps if deps is None else deps,
            hooks=hooks,
            meter=meter,
            _spawn=spawn,
        )
        model.bind(ctx)
        return ctx

    async def run_sub_task(self, ctx: RunContext[Any], task: SubTask) -> SubResult[Any]:
        """Run one sub-task's sub-agent in the run of `ctx` (failures are caught into the result)."""
        result = await self._runner.run(ctx, task)
        self._finished.setdefault(ctx.run_id, []).append(result)
        return result

    def finished(self, run_id: str) -> list[SubResult]:
        """The sub-results of `run_id` finished so far in this process (kept for `RunFailed`)."""
        return list(self._finished.get(run_id, ()))

    def begin_attempt(self, run_id: str) -> None:
        """A new attempt at `run_id` starts (a run, or a resume): earlier failures get retried."""
        self._attempts.begin(run_id)

    def end_attempt(self, run_id: str) -> None:
        """The attempt at `run_id` is over (finished, failed or interrupted)."""
        self._attempts.end(run_id)

    def forget(self, run_id: str) -> None:
        """Drop what the kit keeps of a run while it runs (its usage meter, finished results)."""
        self._meters.pop(run_id, None)
        self._finished.pop(run_id, None)

    def _context(self, run_id: str) -> RunContext[Any]:
        """The context this graph run was given, or one from the kit's defaults.

        A graph that embeds fanout's as a node passes its own context (or none): then the kit's
        hooks and dependencies apply.
        """
        given = get_runtime().context
        if isinstance(given, RunContext) and given.run_id == run_id:
            return given
        return self.context(run_id)

    def _limiter(self) -> asyncio.Semaphore:
        # asyncio primitives belong to one loop: run() and arun() may use different ones.
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = asyncio.Semaphore(self.policy.max_concurrency)
        return limiter

    # -- planning ------------------------------------------------------------------------

    def plan(
        self, ctx: RunContext[Any], request: Request, *, progress: SplitProgress | None = None
    ) -> RunPlan:
        """Choose the mode (auto) and split `request`, before any model call."""
        choice = None
        if self.chooser is not None:
            choice = self.chooser.choose(request, self.backend, max_tokens=self.policy.max_tokens)
        mode = choice.strategy if choice is not None else self.mode
        scoped = ctx.for_request(request)
        split = self.stages.split
        if choice is not None and choice.top_k is not None:  # auto chose the pre-filter
            inner = split.of if isinstance(split, TopKSplitter) else split
            if isinstance(inner, DocumentSplitter):
                split = TopKSplitter(k=choice.top_k, of=inner)
        if mode == "monolithic":
            tasks = split_monolithic(request)
        elif isinstance(split, DocumentSplitter | TopKSplitter):
            tasks = split.split(scoped, progress)
        else:
            tasks = split(scoped)
        if not tasks:
            raise UserError("the splitter produced no sub-tasks")
        return RunPlan(request=request, tasks=tasks, mode=mode, choice=choice)

    def estimate(self, plan: RunPlan) -> int:
        """Tokens the plan's sub-agent calls may spend, before any of them is made.

        Every prompt of the default sub-agent is counted with the model's tokenizer and every
        completion budget is assumed spent; merges and synthesis come on top.
        """
        style = self.backend.prompt_style
        overhead: dict[str, int] = {}
        total = 0
        for task in plan.tasks:
            if task.task not in overhead:
                # a one-character document: a prompt may show the task on both sides of it
                probe = task.model_copy(update={"context": "."})
                overhead[task.task] = self.backend.count_tokens(
                    prompt_text(task_prompt(probe, style=style), style)
                )
            total += overhead[task.task] + self.backend.count_tokens(task.context)
        return total + len(plan.tasks) * self.policy.max_tokens

    # -- nodes ---------------------------------------------------------------------------

    def split_node(self) -> Node:
        """Plan the run (or take the plan it was given), then tell the hooks it starts."""

        async def split(state: FanoutState) -> dict[str, Any]:
            run_id = state.get("run_id") or uuid.uuid4().hex[:12]
            ctx = self._context(run_id)
            request = state["request"]
            plan = state.get("plan")
            if plan is None or plan.request != request:
                plan = self.plan(ctx, request)
            await ctx.hooks.on_run_start(ctx.for_request(request), plan)
            return {
                "run_id": run_id,
                "plan": None,  # consumed: the checkpoint keeps tasks and choice, not a copy
                "tasks": plan.tasks,
                "mode": plan.mode,
                "choice": plan.choice,
                "started_at": time.time(),
            }

        return _AsyncNode(split, "split")

    def add_fan_out(
        self, builder: StateGraph[Any, Any, Any, Any], *, source: str, then: str
    ) -> None:
        """The fan-out verb: `source` -> one sub-agent node per sub-task, in waves -> `then`.

        Adds the nodes ``dispatch`` (picks the next wave) and ``sub_agent``.
        """
        size = wave_size(self.policy.max_concurrency)

        def dispatch(state: FanoutState) -> dict[str, Any]:
            # The first dispatch of an attempt queues every task without a successful result:
            # those never run, and those that failed in an earlier attempt (only successes are
            # final).
            attempt = self._attempts.current(state["run_id"])
            return {"wave": attempt.next_wave(state["tasks"], state.get("sub_results", []), size)}

        def fan_out(state: FanoutState) -> list[Send] | str:
            wave, tasks = state["wave"], state["tasks"]
            if not wave:
                return then
            return [
                Send("sub_agent", SubAgentInput(task=tasks[i], run_id=state["run_id"]))
                for i in wave
            ]

        builder.add_node("dispatch", dispatch)
        builder.add_node("sub_agent", self.sub_agent_node())
        builder.add_edge(source, "dispatch")
        builder.add_conditional_edges("dispatch", fan_out, ["sub_agent", then])
        builder.add_edge("sub_agent", "dispatch")

    def sub_agent_node(self) -> Node:
        """Run one sub-task's sub-agent; under fail_fast a failure stops the run."""

        async def sub_agent(inputs: SubAgentInput) -> dict[str, Any]:
            task, run_id = inputs["task"], inputs["run_id"]
            # Noted also when the graph resumes an interrupted wave (no dispatch sent it this time).
            self._attempts.current(run_id).tried.add(task.id)
            ctx = self._context(run_id)
            results = await self._runner.run_fitting(ctx, task)
            self._finished.setdefault(run_id, []).extend(results)
            for result in results:
                if result.status == "failed" and self.failure_policy.mode == "fail_fast":
                    raise RunFailed(
                        f"fail_fast: sub-agent {result.sub_agent_id} failed: {result.error}",
                        partial=[result],
                    )
            return {"sub_results": results}

        return _AsyncNode(sub_agent, "sub_agent")

    def join_node(self) -> Node:
        """The fan-in: check the failure policy, then hand every sub-result to the reduce stage."""

        async def reduce(state: FanoutState) -> dict[str, Any]:
            sub_results = ordered(state["tasks"], state["sub_results"])
            succeeded = sum(r.status == "ok" for r in sub_results)
            if self.failure_policy.mode == "quorum" and succeeded < self.failure_policy.quorum:
                raise RunFailed(
                    f"quorum not met: {succeeded} of {len(sub_results)} sub-agents succeeded, "
                    f"{self.failure_policy.quorum} required",
                    partial=sub_results,
                )
            ctx = self._stage(state, "reduce")
            answers = await self.stages.reduce(ctx, sub_results)
            return {
                "answers": answers,
                "stage_usage": {"reduce": getattr(ctx.model, "usage", Usage())},
            }

        return _AsyncNode(reduce, "reduce")

    def rank_node(self) -> Node:
        """Select each task's findings (one prompt's single answer is kept as it is)."""

        async def rank(state: FanoutState) -> dict[str, Any]:
            answers = list(state["answers"])
            if state.get("mode") == "monolithic":
                selected = [
                    a.model_copy(update={"selected": a.outcome == "found"}) for a in answers
                ]
                return {"answers": selected}
            return {"answers": self.stages.rank(self._stage(state, "rank"), answers)}

        return _AsyncNode(rank, "rank")

    def synthesize_node(self) -> Node:
        """Merge the selected findings, check the answer's citations, then build the result.

        A synthesis failure is not the run's failure: the answer falls back to the ranked findings
        and `synthesis_error` says why, while every sub-result stays in the result and the store.
        """

        async def synthesize(state: FanoutState) -> dict[str, Any]:
            ctx = self._stage(state, "synthesis")
            update = await synthesize_checked(ctx, self.stages, state)
            spent = merge_usage(state.get("stage_usage", {}), update["stage_usage"])
            finished = cast(
                FanoutState,
                {**state, **update, "stage_usage": spent, "finished_at": time.time()},
            )
            result = self.result(finished)
            await ctx.hooks.on_run_end(ctx, result)
            self.forget(ctx.run_id)
            return {**update, "finished_at": finished["finished_at"], "result": result}

        return _AsyncNode(synthesize, "synthesize")

    # -- wiring --------------------------------------------------------------------------

    def new_graph(self) -> StateGraph[FanoutState, RunContext[Any], FanoutInput, FanoutOutput]:
        """An empty graph with fanout's state, context and declared input and output keys."""
        return StateGraph(
            FanoutState,
            context_schema=RunContext,
            input_schema=FanoutInput,
            output_schema=FanoutOutput,
        )

    def build(self) -> StateGraph[FanoutState, RunContext[Any], FanoutInput, FanoutOutput]:
        """The preset graph: split, fan out, reduce, rank, synthesize (uncompiled)."""
        builder = self.new_graph()
        builder.add_node("split", self.split_node())
        self.add_fan_out(builder, source="split", then="reduce")
        builder.add_node("reduce", self.join_node())
        builder.add_node("rank", self.rank_node())
        builder.add_node("synthesize", self.synthesize_node())
        builder.add_edge(START, "split")
        builder.add_edge("reduce", "rank")
        builder.add_edge("rank", "synthesize")
        builder.add_edge("synthesize", END)
        return builder

    # -- the parts behind the nodes ---------------------------------------------------------

    def _stage(self, state: FanoutState, stage: str) -> RunContext[Any]:
        return self._context(state["run_id"]).for_request(state["request"]).for_stage(stage)

    def result(self, state: FanoutState) -> RunResult[Any]:
        """The typed result of a finished run's state."""
        typed: RunResult[Any] = self.typed(run_result(state, mode=self.mode))
        return typed

    def typed(self, result: Any) -> Any:
        """`result` (a `RunResult` or `SubResult`) with its ``data`` fields as the output schema."""
        schema = self.output_schema
        if schema is None:
            return result
        generic: Any = RunResult if isinstance(result, RunResult) else SubResult
        typed: Any = generic[schema].model_validate(result.model_dump())
        return typed
