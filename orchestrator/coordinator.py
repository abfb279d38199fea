"""The public `Coordinator`: the preset run built from fanout's default stages.

Configure once, then ``plan``/``run``/``arun`` requests. `fanout.orchestrator.kit` holds the nodes
and verbs the graph is built from; ``stages=`` replaces any stage, ``build_graph=`` the wiring.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, cast

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel
from typing_extensions import TypeVar

from fanout.agents._portal import run_sync
from fanout.agents.backend import Backend, Closeable, release
from fanout.agents.errors import UserError
from fanout.agents.subagent import structured_answerer
from fanout.agents.task import SubTask

from ._fingerprint import describe_request_change, run_settings, settings_change
from ._subagents import ordered
from ._tracing import run_span, set_run_result
from .auto import StrategyChooser
from .context import RunContext, RunHooks
from .errors import RunFailed
from .kit import GraphKit
from .policy import CallPolicy, FailurePolicy
from .profile import Profile
from .request import Request
from .result import RunResult, SubResult
from .split import DEFAULT_OVERLAP_TOKENS, DocumentSplitter, SplitProgress
from .stages import ChunkReducer, Splitter, Stages, SubAgent, Synthesizer
from .state import FanoutInput, FanoutState, RunPlan
from .store import ResultStore
from .synthesize import CollectSynthesizer, LLMSynthesizer

__all__ = ["Coordinator", "StrategyName", "SynthesisMode"]

SchemaT = TypeVar("SchemaT", bound=BaseModel, default=Any)
"""The output schema's model; results then carry instances of it as their ``data``."""

StrategyName = Literal["isolated", "monolithic", "auto"]
"""How a coordinator runs requests: a sub-agent per sub-task, one prompt, or chosen per request."""

SynthesisMode = Literal["llm", "collect"]
"""The built-in synthesizers: one more call merging the findings, or the findings listed."""

GraphBuilder = Callable[[GraphKit], StateGraph[Any, Any, Any, Any]]


class Coordinator(Closeable, Generic[SchemaT]):
    """Answers a `Request` by fanning isolated sub-agents out over its documents and tasks.

    It owns its backend: ``close()``/``aclose()``, or leaving a ``with``/``async with`` block,
    closes the backend too (frees a local model, closes connections).

    Args:
        backend: the model every call goes to.
        strategy: "isolated" (one clean-context sub-agent per document x task x chunk),
            "monolithic" (one prompt holding everything: the baseline, same accounting), or
            "auto" (per request, whichever `profile` says wins for its N and document length;
            `RunResult.choice` says which and why).
        stages: the stages to run (`Stages`); the arguments below replace single ones.
        synthesis: "llm", "collect", or your own `Synthesizer` stage.
        sub_agent: your own sub-agent stage (a coroutine of a `RunContext`, or
            `graph_sub_agent(graph)`); default QA.
        splitter: your own splitter stage (request -> sub-tasks).
        output_schema: a pydantic model every sub-agent answer must validate against; the
            result's ``data`` fields are then instances of it (a ``RunResult[Schema]``).
        policy: concurrency, timeout, retries and completion budget for every call.
        chunk_tokens: largest document chunk per sub-agent; default fits the backend's context.
        overlap_tokens: tokens shared by consecutive chunks.
        checkpointer: a LangGraph checkpointer; runs are then keyed by ``run_id`` and an
            interrupted run resumes when run again with the same id.
        result_store: where each finished sub-result is written the moment it completes and
            looked up before any model call, so a resumed run never recomputes finished work.
        failure_policy: "best_effort", "fail_fast", "quorum=K" or a `FailurePolicy`.
        profile: for "auto": what ``fanout eval --out DIR`` measured on this model (a `Profile` or
            DIR/profile.json); None uses a built-in conservative rule. A profile of another model
            is refused.
        objective: for "auto": "accuracy" (the most accurate, ties to the cheaper) or "cost" (the
            cheapest expected to reach `min_accuracy`).
        min_accuracy: for "auto" with the cost objective: the accuracy floor, 0 to 1.
        hooks: lifecycle hooks of every run (`RunHooks`); a run may bring its own.
        deps: your application's dependencies, `RunContext.deps` in every stage.
        build_graph: wires the graph from the kit (default `GraphKit.build`, the preset).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        strategy: StrategyName = "isolated",
        stages: Stages | None = None,
        synthesis: SynthesisMode | Synthesizer | None = None,
        sub_agent: SubAgent | None = None,
        splitter: Splitter | None = None,
        output_schema: type[SchemaT] | None = None,
        policy: CallPolicy | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        result_store: ResultStore | None = None,
        failure_policy: FailurePolicy | str = "best_effort",
        profile: Profile | str | Path | None = None,
        objective: Literal["accuracy", "cost"] = "accuracy",
        min_accuracy: float | None = None,
        hooks: RunHooks | None = None,
        deps: Any = None,
        build_graph: GraphBuilder | None = None,
    ) -> None:
        if strategy not in ("isolated", "monolithic", "auto"):
            raise UserError(
                f"unknown strategy '{strategy}' (use isolated, monolithic or auto)",
                parameter="strategy",
            )
        chooser: StrategyChooser | None = None
        if strategy == "auto":
            chooser = StrategyChooser.create(
                profile, objective=objective, min_accuracy=min_accuracy
            )
            chooser.check_backend(backend)
        elif profile is not None or objective != "accuracy" or min_accuracy is not None:
            raise UserError(
                f"applies to strategy 'auto' only, not '{strategy}'",
                parameter=(
                    "profile"
                    if profile is not None
                    else "objective"
                    if objective != "accuracy"
                    else "min_accuracy"
                ),
            )
        self._strategy: StrategyName = strategy
        self.kit = GraphKit(
            backend=backend,
            stages=_stages(
                stages,
                synthesis=synthesis,
                sub_agent=sub_agent,
                splitter=splitter,
                output_schema=output_schema,
                chunk_tokens=chunk_tokens,
                overlap_tokens=overlap_tokens,
            ),
            policy=policy or CallPolicy(),
            mode="monolithic" if strategy == "monolithic" else "isolated",
            chooser=chooser,
            output_schema=output_schema,
            result_store=result_store,
            failure_policy=(
                FailurePolicy.parse(failure_policy)
                if isinstance(failure_policy, str)
                else failure_policy
            ),
            hooks=hooks or RunHooks(),
            deps=deps,
        )
        self.kit.settings = run_settings(
            backend=backend,
            max_tokens=self.kit.policy.max_tokens,
            output_schema=output_schema,
            sub_agent=self.kit.stages.sub_agent,
            strategy=strategy,
            synthesis=_stage_name(self.kit.stages.synthesize),
            chunking=_stage_name(self.kit.stages.split),
        )
        builder = (build_graph or GraphKit.build)(self.kit)
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = builder.compile(
            checkpointer=checkpointer, name="fanout"
        )
        self._closed = False
        self._closed = False

    @property
    def backend(self) -> Backend:
        """The model every call goes to."""
        return self.kit.backend

    @property
    def strategy(self) -> StrategyName:
        """isolated, monolithic, or auto (chosen per request)."""
        return self._strategy

    @property
    def policy(self) -> CallPolicy:
        """Limits on every model call."""
        return self.kit.policy

    @property
    def stages(self) -> Stages:
        """The stages every run is built from."""
        return self.kit.stages

    async def aclose(self) -> None:
        """Close the backend (checkpoints are closed by whoever opened them); runs end here."""
        self._closed = True
        await release(self.backend)

    # -- public entry points -------------------------------------------------------------

    def context(
        self, run_id: str, *, hooks: RunHooks | None = None, deps: Any = None
    ) -> RunContext[Any]:
        """The run-level context of `run_id`: pass it as ``context=`` when you drive ``graph``."""
        return self.kit.context(run_id, hooks=hooks, deps=deps)

    def plan(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        progress: SplitProgress | None = None,
    ) -> RunPlan:
        """How `request` will run, before any model call: hand the plan to `run`.

        With a checkpointer and the `run_id` of an earlier run, the plan is the one that run
        started with (``plan.resumed``), so a resume shows what it continues.

        Args:
            request: what to plan.
            run_id: the run this plan is for, when it may be a resume.
            progress: told (characters split, characters in all) as long documents are cut.

        Raises:
            UserError: the checkpoint holds `run_id` for a different request.
        """
        if run_id is not None and self.graph.checkpointer is not None:
            values = cast(FanoutState, run_sync(self.graph.aget_state(self.config(run_id))).values)
            if values:
                self._check_same_run(run_id, values, request)
                if "tasks" in values:
                    return RunPlan(
                        request=request,
                        tasks=values["tasks"],
                        mode=values.get("mode", self.kit.mode),
                        choice=values.get("choice"),
                        resumed=True,
                    )
        ctx = self.kit.context(run_id or "plan")
        return self.kit.plan(ctx, request, progress=progress)

    def run(
        self,
        request: Request | RunPlan,
        *,
        run_id: str | None = None,
        hooks: RunHooks | None = None,
        deps: Any = None,
        config: RunnableConfig | None = None,
    ) -> RunResult[SchemaT]:
        """Answer `request` (or run a `plan` of it) synchronously; works inside a running loop too."""
        return run_sync(self.arun(request, run_id=run_id, hooks=hooks, deps=deps, config=config))

    async def arun(
        self,
        request: Request | RunPlan,
        *,
        run_id: str | None = None,
        hooks: RunHooks | None = None,
        deps: Any = None,
        config: RunnableConfig | None = None,
    ) -> RunResult[SchemaT]:
        """Answer `request` (or run a plan of it from `plan`).

        With a checkpointer, a `run_id` whose run was interrupted resumes where it stopped, and a
        finished one returns its stored result without calling any model. Only successes are
        final: a resumed run, finished or not, runs its failed sub-agents again. `hooks` replace
        the coordinator's for this run; `deps` its dependencies. `config` is merged into the
        graph's: its ``callbacks`` (LangChain handlers, LangSmith) see every node and every
        LangChain model call, nested under the node that made it.

        Cancelling this coroutine stops the run: no new model call starts, calls in flight are
        cancelled, and the sub-agents it cut off are not recorded (a resume computes them).

        Raises:
            UserError: the coordinator is closed, or `run_id` was started with another request.
            BackendClosed: the backend was closed while the run was in flight.
        """
        plan = request if isinstance(request, RunPlan) else None
        the_request = plan.request if plan is not None else cast(Request, request)
        run_id = run_id or uuid.uuid4().hex[:12]
        ctx = self.kit.context(run_id, hooks=hooks, deps=deps)
        with run_span(run_id, self.strategy) as span:
            result = await self._arun(
                the_request, plan, ctx, merge_configs(config, self.config(run_id))
            )
            set_run_result(span, result)
        return result

    async def _arun(
        self,
        request: Request,
        plan: RunPlan | None,
        ctx: RunContext[Any],
        config: RunnableConfig,
    ) -> RunResult[SchemaT]:
        if self._closed:
            raise UserError("this Coordinator is closed (and its backend with it): make a new one")
        inputs: FanoutInput | None = {
            "request": request,
            "run_id": ctx.run_id,
            "plan": None if plan is None or plan.resumed else plan,
            "settings": self.kit.settings,
        }
        if self.graph.checkpointer is not None:
            snapshot = await self.graph.aget_state(config)
            if snapshot.values:
                values = cast(FanoutState, snapshot.values)
                self._check_same_run(ctx.run_id, values, request)
                failed = any(
                    r.status == "failed"
                    for r in ordered(values.get("tasks", []), values.get("sub_results", []))
                )
                if not snapshot.next and "answer" in values and not failed:
                    return cast(RunResult[SchemaT], self.kit.result(values))
                if failed and not {"dispatch", "sub_agent"} & set(snapshot.next):
                    # Finished, or stopped after its sub-agents (a quorum not met): go back to
                    # the fan-out, whose first dispatch sends the failed sub-agents again.
                    await self.graph.aupdate_state(config, None, as_node="split")
                inputs = None  # resume from the last checkpoint
        self.kit.begin_attempt(ctx.run_id)
        try:
            final = await self.graph.ainvoke(inputs, config=config, context=ctx)
        except RunFailed as exc:
            known = {r.sub_agent_id for r in exc.partial}
            finished = self.kit.finished(ctx.run_id)
            partial = exc.partial + [r for r in finished if r.sub_agent_id not in known]
            exc.partial = [self.kit.typed(r) for r in partial]
            raise
        finally:
            self.kit.end_attempt(ctx.run_id)
            self.kit.forget(ctx.run_id)
        return cast(RunResult[SchemaT], final["result"])

    def _check_same_run(self, run_id: str, stored: FanoutState, request: Request) -> None:
        """Refuse to resume `run_id` with another request or other settings, naming the change."""
        before = stored.get("request")
        if before is not None and before != request:
            raise UserError(
                f"run id '{run_id}' was started with a different request "
                f"({describe_request_change(before, request)}): use another run id"
            )
        change = settings_change(stored.get("settings") or {}, self.kit.settings)
        if change is not None:
            raise UserError(
                f"run id '{run_id}' was started with {change}: use another run id, "
                "or the settings it was started with"
            )

    async def run_sub_task(self, task: SubTask, run_id: str) -> SubResult[SchemaT]:
        """Run one sub-agent outside a graph run (its failures are caught into the result)."""
        ctx = self.kit.context(run_id)
        try:
            result = await self.kit.run_sub_task(ctx, task)
        finally:
            self.kit.forget(run_id)
        return cast(SubResult[SchemaT], self.kit.typed(result))

    def config(self, run_id: str) -> RunnableConfig:
        """The LangGraph config for a run, keyed by run id for checkpoints.

        Model calls are bounded by the coordinator's own semaphore, not LangGraph's
        ``max_concurrency``: that one leaves queued tasks un-awaited when a fail_fast task raises.
        Sub-agents run in waves of two supersteps each, so the step limit is no loop guard here
        (every wave takes tasks off a finite list): it is set far above any real run.
        """
        return {"configurable": {"thread_id": run_id}, "recursion_limit": 1_000_000}


def _stage_name(stage: object) -> str:
    """A stage as a resume compares it: a dataclass by its settings, else by its name."""
    if isinstance(stage, LLMSynthesizer | CollectSynthesizer):
        return "llm" if isinstance(stage, LLMSynthesizer) else "collect"
    if dataclasses.is_dataclass(stage) and not isinstance(stage, type):
        return repr(stage)
    module = getattr(stage, "__module__", None) or type(stage).__module__
    name = getattr(stage, "__qualname__", None) or type(stage).__qualname__
    return f"{module}.{name}"


def _stages(
    stages: Stages | None,
    *,
    synthesis: SynthesisMode | Synthesizer | None,
    sub_agent: SubAgent | None,
    splitter: Splitter | None,
    output_schema: type[BaseModel] | None,
    chunk_tokens: int | None,
    overlap_tokens: int,
) -> Stages:
    """`stages` (or the defaults) with the single stages the coordinator's arguments name."""
    base = stages or Stages()
    changes: dict[str, Any] = {}
    if synthesis == "llm":
        changes["synthesize"] = LLMSynthesizer()
    elif synthesis == "collect":
        changes.update(synthesize=CollectSynthesizer(), reduce=ChunkReducer(mode="join"))
    elif isinstance(synthesis, str):
        raise UserError(
            f"unknown synthesis mode '{synthesis}' (use llm or collect)", parameter="synthesis"
        )
    elif synthesis is not None:
        changes["synthesize"] = synthesis
    if sub_agent is not None:
        changes["sub_agent"] = sub_agent
    elif output_schema is not None:
        changes["sub_agent"] = structured_answerer(output_schema)
    if splitter is not None:
        changes["split"] = splitter
    elif chunk_tokens is not None or overlap_tokens != DEFAULT_OVERLAP_TOKENS:
        changes["split"] = DocumentSplitter(
            chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens
        )
    return Stages(**{**vars(base), **changes})
