"""The public `Coordinator`: configure once, then ``run``/``arun`` requests through its graph.

The graph is compiled here with the caller's checkpointer; `fanout.orchestrator.graph` wires it and
`fanout.orchestrator.nodes` holds what each node does.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import UserError
from fanout.agents.portal import run_sync

from .errors import RunFailed
from .graph import build_graph
from .logs import ensure_logging
from .nodes import CoordinatorNodes, Splitter, Strategy, ordered
from .policy import CallPolicy, FailurePolicy
from .request import Request
from .result import RunResult, RunUsage, SubResult
from .state import CoordinatorInput, CoordinatorState
from .store import ResultStore
from .subagent import SubAgent, answer_task, structured_answerer
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesizer
from .task import SubTask
from .tracing import run_span, set_run_result

__all__ = ["Coordinator", "RunObserver"]


class RunObserver:
    """Hooks called while a run streams (progress bars, live tables); subclass what you need."""

    def on_plan(self, tasks: list[SubTask]) -> None:
        """The request was split into `tasks`."""

    def on_sub_result(self, result: SubResult) -> None:
        """A sub-agent finished (ok or failed)."""


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
        synthesizer: Synthesizer
        if synthesis == "llm":
            synthesizer = LLMSynthesizer()
        elif synthesis == "collect":
            synthesizer = CollectSynthesizer()
        elif isinstance(synthesis, str):
            raise UserError(f"unknown synthesis mode '{synthesis}' (use llm or collect)")
        else:
            synthesizer = synthesis
        if sub_agent is None:
            sub_agent = structured_answerer(output_schema) if output_schema else answer_task
        self.nodes = CoordinatorNodes(
            backend=backend,
            strategy=strategy,
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
        self.graph: CompiledStateGraph[Any, Any, Any, Any] = build_graph(self.nodes).compile(
            checkpointer=checkpointer, name="fanout"
        )

    @property
    def backend(self) -> Backend:
        """The model every call goes to."""
        return self.nodes.backend

    @property
    def strategy(self) -> Strategy:
        """Isolated or monolithic."""
        return self.nodes.strategy

    @property
    def policy(self) -> CallPolicy:
        """Limits on every model call."""
        return self.nodes.policy

    # -- public entry points -------------------------------------------------------------

    def run(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        observer: RunObserver | None = None,
        config: RunnableConfig | None = None,
    ) -> RunResult:
        """Answer `request` synchronously (works from inside a running event loop too)."""
        return run_sync(self.arun(request, run_id=run_id, observer=observer, config=config))

    async def arun(
        self,
        request: Request,
        *,
        run_id: str | None = None,
        observer: RunObserver | None = None,
        config: RunnableConfig | None = None,
    ) -> RunResult:
        """Answer `request`, telling `observer` about the plan and each sub-agent as it finishes.

        With a checkpointer, a `run_id` whose run was interrupted resumes where it stopped, and a
        finished one returns its stored result without calling any model. `config` is merged into
        the graph's: its ``callbacks`` (LangChain handlers, LangSmith) see every node and every
        LangChain model call, nested under the node that made it.
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

    async def run_sub_task(self, task: SubTask, run_id: str) -> SubResult:
        """Run one sub-agent outside a graph run (its failures are caught into the result)."""
        return await self.nodes.run_sub_task(task, run_id)

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
        sub_results = ordered(state["tasks"], state.get("sub_results", []))
        stages = {"sub_agents": sum((r.usage for r in sub_results), Usage())}
        stages.update(state.get("stage_usage", {}))
        return RunResult(
            run_id=state["run_id"],
            strategy=self.strategy,
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
