"""The coordinator graph's nodes: split, one sub-agent, reduce chunks, synthesize.

Each node reads the state and returns only what it writes. A sub-agent's failure is caught in its
own node and becomes a failed `SubResult`: one bad document never sinks the run. A shutdown is not
a failure: a cancelled run or a closed backend stops the run and records nothing for the sub-agents
it cut off. Only successes are final: each new attempt at a run (a resume) retries what failed
before.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langgraph.types import Send
from pydantic import BaseModel

from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import BackendClosed, ContextOverflow, OutputInvalid, UserError
from fanout.agents.secrets import scrub

from .aliases import DocumentAliases
from .attempts import Attempts, ordered
from .auto import Mode, StrategyChooser, StrategyPlan
from .budget import chunk_budget
from .citations import check_citations, clean_model_text, sanitize_model_text
from .errors import CheckpointError, RunFailed
from .execution import FinishedWhileStopping, run_sub_agent
from .fingerprint import sub_task_key
from .grounding import is_grounded
from .overflow import MAX_CUTS, cut_to_fit
from .policy import CallPolicy, CircuitBreaker, FailurePolicy, ModelCaller
from .prompts import NOT_FOUND, is_not_found
from .reduce import ReduceMode, reduce_chunks
from .relevance import select_findings
from .request import Request
from .result import DocumentAnswer, SubResult
from .split import SplitProgress, split_monolithic, split_request
from .state import CoordinatorState, SubAgentInput
from .store import ResultStore, storage_hint
from .subagent import Finding, SubAgent, validate_output
from .synthesize import Synthesis, Synthesizer, collect_findings
from .task import SubTask
from .tracing import traced_sub_agent

__all__ = ["CoordinatorNodes", "Splitter", "Strategy", "wave_size"]

Strategy = Literal["isolated", "monolithic", "auto"]
Splitter = Callable[[Request], list[SubTask]]


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a background future's failure as seen (asyncio logs unseen ones at exit)."""
    if not future.cancelled():
        future.exception()


def wave_size(max_concurrency: int) -> int:
    """Sub-agents per superstep: enough to keep every concurrency slot busy through a wave.

    Waves keep LangGraph's per-superstep bookkeeping (quadratic in a superstep's tasks) small.
    """
    return max(512, 2 * max_concurrency)


def _total(callers: list[ModelCaller]) -> Usage:
    return sum((c.usage for c in callers), Usage())


@dataclass(eq=False, kw_only=True)
class CoordinatorNodes:
    """What the nodes need from the coordinator's settings, and the node functions themselves."""

    backend: Backend
    strategy: Mode
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
    chooser: StrategyChooser | None = None
    settings: dict[str, str] = field(default_factory=dict)
    """What the results depend on (`fingerprint.run_settings`): part of every content key."""
    breaker: CircuitBreaker = field(init=False)
    _limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        init=False, default_factory=weakref.WeakKeyDictionary
    )
    _planned: tuple[Request, list[SubTask], StrategyPlan | None] | None = field(
        init=False, default=None
    )
    _attempts: Attempts = field(init=False, default_factory=Attempts)

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.policy.breaker_threshold, self.policy.breaker_cooldown_s)

    def begin_attempt(self, run_id: str) -> None:
        """A new attempt at `run_id` starts (a run, or a resume): earlier failures get retried."""
        self._attempts.begin(run_id)

    def end_attempt(self, run_id: str) -> None:
        """The attempt at `run_id` is over (finished, failed or interrupted)."""
        self._attempts.end(run_id)

    def mode(self, state: CoordinatorState) -> Mode:
        """How this run executes: the fixed strategy, or what auto's plan chose."""
        plan = state.get("plan")
        return plan.strategy if plan is not None else self.strategy

    # -- nodes ---------------------------------------------------------------------------

    async def split(self, state: CoordinatorState) -> dict[str, Any]:
        """Cut the request into sub-tasks: one per document x task x chunk (or one, monolithic).

        A plan the caller made ahead with `plan` for this same request is used instead, once.
        Under ``strategy="auto"`` the choice is made here (or in `plan`) and kept in the state, so
        it is checkpointed and a resumed run keeps the choice it started with.
        """
        request = state["request"]
        planned, self._planned = self._planned, None
        if planned is not None and planned[0] == request:
            _, tasks, plan = planned
        else:
            plan = self.choose(request)
            tasks = self._split_request(request, mode=plan.strategy if plan else self.strategy)
        return {
            "tasks": tasks,
            "plan": plan,
            "run_id": state.get("run_id") or uuid.uuid4().hex[:12],
            "started_at": time.time(),
        }

    def plan(self, request: Request, *, progress: SplitProgress | None = None) -> list[SubTask]:
        """The sub-tasks `request` becomes, before any model call; the next split reuses them."""
        plan = self.choose(request)
        mode = plan.strategy if plan else self.strategy
        tasks = self._split_request(request, progress, mode=mode)
        self._planned = (request, tasks, plan)
        return tasks

    def choose(self, request: Request) -> StrategyPlan | None:
        """How ``strategy="auto"`` runs `request`, and why; None for a fixed strategy."""
        if self.chooser is None:
            return None
        return self.chooser.plan(request, self.backend, max_tokens=self.policy.max_tokens)

    def _split_request(
        self, request: Request, progress: SplitProgress | None = None, *, mode: Mode
    ) -> list[SubTask]:
        if mode == "monolithic":
            tasks = split_monolithic(request)
        elif self.splitter is not None:
            tasks = self.splitter(request)
        else:
            overlap = self.overlap_tokens
            budget = self.chunk_tokens
            if budget is None:
                budget = chunk_budget(self.backend, request, max_tokens=self.policy.max_tokens)
                # a small context would leave no room for the default overlap: shrink it instead
                overlap = overlap if budget is None else min(overlap, budget // 4)
            tasks = split_request(
                request,
                chunk_tokens=budget,
                overlap_tokens=overlap,
                count_tokens=self.backend.count_tokens,
                token_offsets=getattr(self.backend, "token_offsets", None),
                progress=progress,
            )
        if not tasks:
            raise UserError("the splitter produced no sub-tasks")
        return tasks

    def dispatch(self, state: CoordinatorState) -> dict[str, Any]:
        """Pick the next wave of sub-tasks (an empty one once all have run).

        The first dispatch of an attempt queues every task without a successful result: those
        never run, and those that failed in an earlier attempt (only successes are final).
        """
        tasks = state["tasks"]
        attempt = self._attempts.current(state["run_id"])
        wave = attempt.next_wave(
            tasks, state.get("sub_results", []), wave_size(self.policy.max_concurrency)
        )
        return {"wave": wave}

    def fan_out(self, state: CoordinatorState) -> list[Send] | str:
        """One `Send` per sub-task of the wave, carrying that task and nothing else of the request."""
        wave, tasks = state["wave"], state["tasks"]
        if not wave:
            return "reduce"
        return [
            Send("sub_agent", SubAgentInput(task=tasks[i], run_id=state["run_id"])) for i in wave
        ]

    async def run_one(self, inputs: SubAgentInput) -> dict[str, Any]:
        """The sub-agent node: run one sub-task; under fail_fast a failure stops the run."""
        task, run_id = inputs["task"], inputs["run_id"]
        # Noted also when the graph resumes an interrupted wave (no dispatch sent it this time).
        self._attempts.current(run_id).tried.add(task.id)
        results = await self._run_fitting(task, run_id, cuts=0)
        for i, result in enumerate(results):
            if result.error is not None:  # before the state (and its checkpoint) keeps it
                results[i] = result = result.model_copy(update={"error": scrub(result.error)})
            if result.status == "failed" and self.failure_policy.mode == "fail_fast":
                raise RunFailed(
                    f"fail_fast: sub-agent {result.sub_agent_id} failed: {result.error}",
                    partial=[result],
                )
        return {"sub_results": results}

    async def _run_fitting(self, task: SubTask, run_id: str, *, cuts: int) -> list[SubResult]:
        """Run `task`; if the model refuses it as too long, run the pieces it is cut into instead."""
        overflows: list[ContextOverflow] = []
        result = await traced_sub_agent(
            task, lambda: self.run_sub_task(task, run_id, overflows=overflows)
        )
        if not overflows or cuts >= MAX_CUTS:
            return [result]
        pieces = cut_to_fit(
            task,
            overflows[0],
            self.backend,
            max_tokens=self.policy.max_tokens,
            overlap_tokens=self.overlap_tokens,
        )
        if pieces is None:
            return [result]
        runs = await asyncio.gather(*(self._run_fitting(p, run_id, cuts=cuts + 1) for p in pieces))
        return [r for run in runs for r in run]

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

    async def rank(self, state: CoordinatorState) -> dict[str, Any]:
        """Select each task's findings: found, relevant to the question, grounded ones first."""
        request = state["request"]
        texts = {d.id: d.text for d in request.documents}
        # Relevance ranks findings of a question over documents; instructions every document
        # should answer, and known pairings, keep every finding.
        rank = request.question is not None and not request.instructions and not request.paired
        answers = list(state["answers"])
        selected: list[DocumentAnswer] = []
        for index, task in enumerate(request.tasks):
            mine = [a for a in answers if a.task_index == index]
            selected += select_findings(
                task, mine, texts, rank=rank and self.mode(state) != "monolithic"
            )
        order = {(a.document_id, a.task_index): i for i, a in enumerate(answers)}
        return {"answers": sorted(selected, key=lambda a: order[(a.document_id, a.task_index)])}

    async def synthesize(self, state: CoordinatorState) -> dict[str, Any]:
        """Merge the selected findings, then check the answer's citations against them.

        A synthesis failure is not the run's failure: the answer falls back to the ranked findings
        and `synthesis_error` says why, while every sub-result stays in the result and the store.
        """
        request, answers = state["request"], state["answers"]
        aliases = DocumentAliases.of(request)  # what the one prompt and `collect_findings` show
        callers: list[ModelCaller] = []
        error: str | None = None
        rounds = 0
        monolithic = self.mode(state) == "monolithic"
        if monolithic:
            checked = check_citations(answers[0].answer or "", aliases=aliases, findings=None)
        else:
            try:
                synthesis = await self.synthesizer.synthesize(
                    request, answers, self._caller_factory(state, "synthesis", callers)
                )
            except Exception as exc:  # a custom synthesizer's failure loses no finding either
                synthesis = Synthesis(
                    answer=collect_findings(request, answers),
                    error=f"{type(exc).__name__}: {exc}",
                )
            error, rounds = synthesis.error, synthesis.rounds
            findings: dict[str, list[str]] = {}
            for a in answers:
                if a.selected and a.document_id is not None:
                    findings.setdefault(a.document_id, []).append(a.answer or "")
            cited_by = aliases if synthesis.sources is None else DocumentAliases(synthesis.sources)
            checked = check_citations(synthesis.answer, aliases=cited_by, findings=findings)
            if findings and not checked.citations and error is None:
                # Nothing the synthesizer wrote is backed by a finding: list the findings instead.
                error = "the synthesized answer cited no finding correctly"
                listed = check_citations(
                    collect_findings(request, answers), aliases=aliases, findings=findings
                )
                checked = replace(listed, invalid=checked.invalid + listed.invalid)
        selected_docs = [a.document_id for a in answers if a.selected and a.document_id]
        unanswered = [
            task
            for index, task in enumerate(request.tasks)
            if not any(a.selected and a.task_index == index for a in answers)
        ]
        if request.question is not None and request.instructions:
            unanswered = [] if selected_docs else [request.question]
        if monolithic:
            unanswered = [] if checked.text and answers[0].outcome == "found" else request.tasks
        cited = set(checked.citations)  # a set: a list here is quadratic at 100,000 documents
        return {
            "answer": checked.text,
            "citations": checked.citations,
            "invalid_citations": checked.invalid,
            "uncited": [d for d in dict.fromkeys(selected_docs) if d not in cited],
            "unanswered": unanswered,
            "synthesis_error": error,
            "synthesis_rounds": rounds,
            "stage_usage": {"synthesis": _total(callers)},
            "finished_at": time.time(),
        }

    # -- sub-agents ----------------------------------------------------------------------

    async def run_sub_task(
        self, task: SubTask, run_id: str, *, overflows: list[ContextOverflow] | None = None
    ) -> SubResult:
        """Run one sub-agent to a `SubResult`; every failure is caught and reported in it.

        A result already in the result store under this sub-task's content key (an earlier,
        interrupted attempt at this run, on the same text, prompt, model and settings) is returned
        as it is; a new successful one is stored before this returns. A shutdown is
        not the sub-agent's result: cancellation and `BackendClosed` propagate, recording nothing.
        A failure that is a `ContextOverflow` is also appended to `overflows` (the caller may cut).
        """
        key = ""
        if self.result_store is not None:
            key = sub_task_key(self.settings, task, self.backend.prompt_style)
            # Off the event loop: a SQLite store waiting for the file's write lock would block
            # the loop, and with it the checkpointer's commit that would free the lock (deadlock).
            stored = await asyncio.to_thread(self.result_store.get, run_id, task.id, key)
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
        stopping = False  # the run was cancelled just as this sub-agent finished
        try:
            try:
                raw = await run_sub_agent(
                    self.sub_agent,
                    task,
                    caller,
                    deadline_s=self.policy.sub_agent_deadline_s,
                    max_concurrency=self.policy.max_concurrency,
                )
            except FinishedWhileStopping as finished:
                raw, stopping = finished.value, True
            fields = self._interpret(raw, task)
        except BackendClosed:
            raise  # the backend was closed under the run: stop it, record nothing
        except Exception as exc:  # isolate the failure to this sub-agent
            if stopping:
                raise asyncio.CancelledError from None
            if isinstance(exc, ContextOverflow) and overflows is not None:
                overflows.append(exc)
            error = f"{type(exc).__name__}: {exc}"
            return SubResult(
                **base, status="failed", error=error, attempts=caller.attempts, usage=caller.usage
            )
        result = SubResult(**base, **fields, attempts=caller.attempts, usage=caller.usage)
        if self.result_store is not None:
            await self._store(run_id, result, key)
        if stopping:
            raise asyncio.CancelledError  # kept in the store; the run goes on stopping
        return result

    async def _store(self, run_id: str, result: SubResult, key: str) -> None:
        """Commit `result`; a cancellation meanwhile waits for the write (a finished result is kept).

        Off the event loop: a durable write waits for the disk, and a SQLite writer must not block
        the loop that LangGraph's own checkpointer needs to finish its transaction.
        """
        assert self.result_store is not None
        put = asyncio.ensure_future(asyncio.to_thread(self.result_store.put, run_id, result, key))
        put.add_done_callback(_retrieved)  # its failure is raised below, or moot if stopping
        try:
            await asyncio.shield(put)
        except asyncio.CancelledError:
            await asyncio.wait({put})
            raise
        except (sqlite3.Error, OSError) as exc:
            raise CheckpointError(
                f"cannot store the result of sub-agent {result.sub_agent_id}: {exc} "
                f"({storage_hint(exc)})"
            ) from None

    def _interpret(self, output: object, task: SubTask) -> dict[str, Any]:
        """A sub-agent's return value as `SubResult` fields: outcome, answer, evidence, grounding."""
        if isinstance(output, Finding):
            if not output.found:
                return {"status": "ok", "outcome": "not_found", "output": NOT_FOUND}
            quote = clean_model_text(output.evidence) or None
            answer = clean_model_text(output.answer) or quote or ""
            return {
                "status": "ok",
                "outcome": "found",
                "output": answer,
                "evidence": quote,
                "grounded": is_grounded(quote or answer, task.context),
            }
        if isinstance(output, dict):
            output = json.dumps(output)
        if self.output_schema is not None and isinstance(output, str):
            output = validate_output(self.output_schema, output)
        if isinstance(output, BaseModel):
            return {
                "status": "ok",
                "output": output.model_dump_json(),
                "data": output.model_dump(mode="json"),
            }
        if not isinstance(output, str):
            raise OutputInvalid(
                f"a sub-agent must return str, dict or a pydantic model, not {type(output).__name__}"
            )
        # A monolithic answer cites documents itself; a per-document answer's brackets are data.
        text = sanitize_model_text(output) if task.document_id is None else clean_model_text(output)
        outcome = "not_found" if is_not_found(text) else "found"
        return {"status": "ok", "outcome": outcome, "output": text}

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
