"""The public `Coordinator`: configure once, then ``run``/``arun`` requests through its graph.

The graph is compiled here with the caller's checkpointer; `fanout.orchestrator.graph` wires it and
`fanout.orchestrator.nodes` holds what each node does.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Generic, Literal, cast

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel
from typing_extensions import TypeVar

from fanout.agents.backend import Backend, Closeable, Usage, release
from fanout.agents.errors import UserError
from fanout.agents.portal import run_sync

from .attempts import ordered
from .auto import StrategyChooser, StrategyPlan
from .errors import RunFailed
from .fingerprint import describe_request_change, run_settings, settings_change
from .graph import build_graph
from .nodes import CoordinatorNodes, Splitter, Strategy
from .policy import CallPolicy, FailurePolicy
from .profile import Profile
from .request import Request
from .result import RunResult, RunUsage, SubResult
from .split import DEFAULT_OVERLAP_TOKENS, SplitProgress
from .state import CoordinatorInput, CoordinatorState
from .store import ResultStore
from .subagent import SubAgent, answer_task, structured_answerer
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesizer
from .task import SubTask
from .tracing import run_span, set_run_result

__all__ = ["Coordinator", "RunObserver"]

SchemaT = TypeVar("SchemaT", bound=BaseModel, default=Any)
"""The output schema's model; results then carry instances of it as their ``data``."""


class RunObserver:
    """Hooks called while a run streams (progress bars, live tables); subclass what you need."""

    def on_plan(self, tasks: list[SubTask]) -> None:
        """The request was split into `tasks`."""

    def on_sub_result(self, result: SubResult) -> None:
        """A sub-agent finished (ok or failed)."""


class Coordinator(Closeable, Generic[SchemaT]):
    """Answers a `Request` by fanning isolated sub-agents out over its documents and tasks.

    It owns its backend: ``close()``/``aclose()``, or leaving a ``with``/``async with`` block,
    closes the backend too (frees a local model, closes connections).

    Args:
        backend: the model every call goes to.
        strategy: "isolated" (one clean-context sub-agent per document x task x chunk),
            "monolithic" (one prompt holding everything: the baseline, same accounting), or
            "auto" (per request, whichever `profile` says wins for its N and document length;
            `RunResult.plan` says which and why).
        synthesis: "llm", "collect", or your own `Synthesizer`.
        sub_agent: your own sub-agent (a coroutine, or `graph_sub_agent(graph)`); default QA.
        splitter: your own request -> sub-tasks function; default one per document x task x chunk.
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
    """

    def __init__(
        self,
        backend: Backend,
        *,
        strategy: Strategy = "isolated",
        synthesis: Literal["llm", "collect"] | Synthesizer = "llm",
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
        self._strategy: Strategy = strategy
        synthesizer: Synthesizer
        if synthesis == "llm":
            synthesizer = LLMSynthesizer()
        elif synthesis == "collect":
            synthesizer = CollectSynthesizer()
        elif isinstance(synthesis, str):
            raise UserError(
                f"unknown synthesis mode '{synthesis}' (use llm or collect)", parameter="synthesis"
            )
        else:
            synthesizer = synthesis
        if sub_agent is None:
            sub_agent = structured_answerer(output_schema) if output_schema else answer_task
        self.nodes = CoordinatorNodes(
            backend=backend,
            strategy="monolithic" if strategy == "monolithic" else "isolated",
            chooser=chooser,
            policy=policy or CallPolicy(),
            sub_agent=sub_agent,
            splitter=splitter,
            output_schema=output_schema,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            result_store=result_store,
            failure_policy=(
                FailurePolicy.parse(failure_policy)
                if isinstance(failure_policy, str)
                else failure_policy
            ),
            synthesizer=synthesizer,
            reduce_mode="join" if synthesis == "collect" else "llm",
        )
        self.nodes.settings = run_settings(
            backend=backend,
            max_tokens=self.nodes.policy.max_tokens,
            output_schema=output_schema,
            sub_agent=sub_agent,
            strategy=strategy,
            synthesis=synthesis if isinstance(synthesis, str) else type(synthesis).__qualname__,
            chunking=f"{chunk_tokens or 'fit the context'} tokens, {overlap_tokens} overlap"
            + (f", splitter {splitter.__module__}.{splitter.__qualname__}" if splitter else ""),
        )
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build_graph(self.nodes).compile(
            checkpointer=checkpointer, name="fanout"
        )
        self._closed = False

    @property
    def backend(self) -> Backend:
        """The model every call goes to."""
        return self.nodes.backend

    @property
    def strategy(self) -> Strategy:
        """isolated, monolithic, or auto (chosen per request)."""
        return self._strategy

    @property
    def policy(self) -> CallPolicy:
        """Limits on every model call."""
        return self.nodes.policy

    async def aclose(self) -> None:
        """Close the backend (checkpoints are closed by whoever opened them); runs end here."""
        self._closed = True
        await release(self.backend)

    # -- public entry points -------------------------------------------------------------

    def run(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        observer: RunObserver | None = None,
        config: RunnableConfig | None = None,
    ) -> RunResult[SchemaT]:
        """Answer `request` synchronously (works from inside a running event loop too)."""
        return run_sync(self.arun(request, run_id=run_id, observer=observer, config=config))

    async def arun(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        observer: RunObserver | None = None,
        config: RunnableConfig | None = None,
    ) -> RunResult[SchemaT]:
        """Answer `request`, telling `observer` about the plan and each sub-agent as it finishes.

        With a checkpointer, a `run_id` whose run was interrupted resumes where it stopped, and a
        finished one returns its stored result without calling any model. Only successes are
        final: a resumed run, finished or not, runs its failed sub-agents again. `config` is merged
        into the graph's: its ``callbacks`` (LangChain handlers, LangSmith) see every node and
        every LangChain model call, nested under the node that made it.

        Cancelling this coroutine stops the run: no new model call starts, calls in flight are
        cancelled, and the sub-agents it cut off are not recorded (a resume computes them).

        Raises:
            UserError: the coordinator is closed, or `run_id` was started with another request.
            BackendClosed: the backend was closed while the run was in flight.
        """
        run_id = run_id or uuid.uuid4().hex[:12]
        with run_span(run_id, self.strategy) as span:
            result = await self._arun(
                request, run_id, observer, merge_configs(config, self.config(run_id))
            )
            set_run_result(span, result)
        return result

    async def _arun(
        self,
        request: Request,
        run_id: str,
        observer: RunObserver | None,
        config: RunnableConfig,
    ) -> RunResult:
        if self._closed:
            raise UserError("this Coordinator is closed (and its backend with it): make a new one")
        inputs: CoordinatorInput | None = {
            "request": request,
            "run_id": run_id,
            "settings": self.nodes.settings,
        }
        if self.graph.checkpointer is not None:
            snapshot = await self.graph.aget_state(config)
            if snapshot.values:
                values = cast(CoordinatorState, snapshot.values)
                self._check_same_run(run_id, values, request)
                failed = any(
                    r.status == "failed"
                    for r in ordered(values.get("tasks", []), values.get("sub_results", []))
                )
                if not snapshot.next and "answer" in values and not failed:
                    return self.result(values)
                if failed and not {"dispatch", "sub_agent"} & set(snapshot.next):
                    # Finished, or stopped after its sub-agents (a quorum not met): go back to
                    # the fan-out, whose first dispatch sends the failed sub-agents again.
                    await self.graph.aupdate_state(config, None, as_node="split")
                inputs = None  # resume from the last checkpoint
        self.nodes.begin_attempt(run_id)
        try:
            return await self._stream(inputs, observer, config)
        finally:
            self.nodes.end_attempt(run_id)

    async def _stream(
        self, inputs: CoordinatorInput | None, observer: RunObserver | None, config: RunnableConfig
    ) -> RunResult:
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
            partial = exc.partial + [r for r in finished if r.sub_agent_id not in known]
            exc.partial = [self._typed_sub_result(r) for r in partial]
            raise
        return self.result(final)

    def plan(self, request: Request, *, progress: SplitProgress | None = None) -> list[SubTask]:
        """The sub-tasks `request` becomes, before any model call (to show a plan, or stop there).

        The next run of the same request uses them instead of splitting again.

        Args:
            request: what to plan.
            progress: told (characters split, characters in all) as long documents are cut.
        """
        return self.nodes.plan(request, progress=progress)

    def choose(self, request: Request) -> StrategyPlan | None:
        """How ``strategy="auto"`` would run `request` and why (None for a fixed strategy).

        `plan` makes the same choice and the run keeps it, in `RunResult.plan`.
        """
        return self.nodes.choose(request)

    def saved_plan(self, request: Request, run_id: str) -> list[SubTask] | None:
        """The sub-tasks the checkpoint holds for `run_id` (a resume), or None for a new run.

        Raises:
            UserError: the checkpoint holds `run_id` for a different request (said before any
                splitting, rather than after it).
        """
        if self.graph.checkpointer is None:
            return None
        snapshot = run_sync(self.graph.aget_state(self.config(run_id)))
        if not snapshot.values:
            return None
        values = cast(CoordinatorState, snapshot.values)
        self._check_same_run(run_id, values, request)
        tasks: list[SubTask] | None = values.get("tasks")
        return tasks

    def _check_same_run(self, run_id: str, stored: CoordinatorState, request: Request) -> None:
        """Refuse to resume `run_id` with another request or other settings, naming the change."""
        before = stored.get("request")
        if before is not None and before != request:
            raise UserError(
                f"run id '{run_id}' was started with a different request "
                f"({describe_request_change(before, request)}): use another run id"
            )
        change = settings_change(stored.get("settings") or {}, self.nodes.settings)
        if change is not None:
            raise UserError(
                f"run id '{run_id}' was started with {change}: use another run id, "
                "or the settings it was started with"
            )

    async def run_sub_task(self, task: SubTask, run_id: str) -> SubResult[SchemaT]:
        """Run one sub-agent outside a graph run (its failures are caught into the result)."""
        return self._typed_sub_result(await self.nodes.run_sub_task(task, run_id))

    def _notify(self, observer: RunObserver, update: dict[str, Any]) -> None:
        for node, writes in update.items():
            if not isinstance(writes, dict):
                continue
            if node == "split":
                observer.on_plan(writes["tasks"])
            elif node == "sub_agent":
                for result in writes["sub_results"]:
                    observer.on_sub_result(self._typed_sub_result(result))

    def config(self, run_id: str) -> RunnableConfig:
        """The LangGraph config for a run, keyed by run id for checkpoints.

        Model calls are bounded by the coordinator's own semaphore, not LangGraph's
        ``max_concurrency``: that one leaves queued tasks un-awaited when a fail_fast task raises.
        Sub-agents run in waves of two supersteps each, so the step limit is no loop guard here
        (every wave takes tasks off a finite list): it is set far above any real run.
        """
        return {"configurable": {"thread_id": run_id}, "recursion_limit": 1_000_000}

    def result(self, state: CoordinatorState) -> RunResult[SchemaT]:
        """Build the typed result from a finished graph state (e.g. the last ``stream`` value)."""
        sub_results = ordered(state["tasks"], state.get("sub_results", []))
        stages = {"sub_agents": sum((r.usage for r in sub_results), Usage())}
        stages.update(state.get("stage_usage", {}))
        raw = RunResult[Any](
            run_id=state["run_id"],
            strategy=self.nodes.mode(state),
            plan=state.get("plan"),
            answer=state["answer"],
            answers=state["answers"],
            sub_results=sub_results,
            citations=state.get("citations", []),
            invalid_citations=state.get("invalid_citations", []),
            uncited=state.get("uncited", []),
            unanswered=state.get("unanswered", []),
            synthesis_error=state.get("synthesis_error"),
            usage=RunUsage.from_stages(
                stages,
                state["finished_at"] - state["started_at"],
                synthesis_rounds=state.get("synthesis_rounds", 0),
            ),
        )
        return self._typed_result(raw)

    # -- structured data: JSON objects inside the graph, schema instances in results -------

    def _typed_result(self, result: RunResult[Any]) -> RunResult[SchemaT]:
        schema = self.nodes.output_schema
        if schema is None:
            return cast(RunResult[SchemaT], result)
        typed = cast(Any, RunResult)[schema].model_validate(result.model_dump())
        return cast(RunResult[SchemaT], typed)

    def _typed_sub_result(self, result: SubResult[Any]) -> SubResult[SchemaT]:
        schema = self.nodes.output_schema
        if schema is None:
            return cast(SubResult[SchemaT], result)
        typed = cast(Any, SubResult)[schema].model_validate(result.model_dump())
        return cast(SubResult[SchemaT], typed)
