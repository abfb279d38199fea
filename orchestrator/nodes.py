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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langgraph.types import Send
from pydantic import BaseModel

from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import OutputInvalid, UserError

from .budget import chunk_budget
from .citations import check_citations, clean_model_text, sanitize_model_text
from .errors import RunFailed
from .grounding import is_grounded
from .policy import CallPolicy, CircuitBreaker, FailurePolicy, ModelCaller
from .prompts import NOT_FOUND, is_not_found
from .reduce import ReduceMode, reduce_chunks
from .relevance import select_findings
from .request import Request
from .result import DocumentAnswer, SubResult
from .split import split_monolithic, split_request
from .state import CoordinatorState, SubAgentInput
from .store import ResultStore
from .subagent import Finding, SubAgent, validate_output
from .synthesize import Synthesis, Synthesizer, collect_findings
from .task import SubTask
from .tracing import traced_sub_agent

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
        task, run_id = inputs["task"], inputs["run_id"]
        result = await traced_sub_agent(task, lambda: self.run_sub_task(task, run_id))
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
                task, mine, texts, rank=rank and self.strategy != "monolithic"
            )
        order = {(a.document_id, a.task_index): i for i, a in enumerate(answers)}
        return {"answers": sorted(selected, key=lambda a: order[(a.document_id, a.task_index)])}

    async def synthesize(self, state: CoordinatorState) -> dict[str, Any]:
        """Merge the selected findings, then check the answer's citations against them.

        A synthesis failure is not the run's failure: the answer falls back to the ranked findings
        and `synthesis_error` says why, while every sub-result stays in the result and the store.
        """
        request, answers = state["request"], state["answers"]
        documents = [d.id for d in request.documents]
        callers: list[ModelCaller] = []
        error: str | None = None
        rounds = 0
        if self.strategy == "monolithic":
            checked = check_citations(answers[0].answer or "", documents=documents, findings=None)
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
            checked = check_citations(synthesis.answer, documents=documents, findings=findings)
            if findings and not checked.citations and error is None:
                # Nothing the synthesizer wrote is backed by a finding: list the findings instead.
                error = "the synthesized answer cited no finding correctly"
                listed = check_citations(
                    collect_findings(request, answers), documents=documents, findings=findings
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
        if self.strategy == "monolithic":
            unanswered = [] if checked.text and answers[0].outcome == "found" else request.tasks
        return {
            "answer": checked.text,
            "citations": checked.citations,
            "invalid_citations": checked.invalid,
            "uncited": [d for d in dict.fromkeys(selected_docs) if d not in checked.citations],
            "unanswered": unanswered,
            "synthesis_error": error,
            "synthesis_rounds": rounds,
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
            raw = await asyncio.wait_for(
                self.sub_agent(task, caller), timeout=self.policy.sub_agent_deadline_s
            )
            fields = self._interpret(raw, task)
        except Exception as exc:  # isolate the failure to this sub-agent
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, TimeoutError) and not str(exc):
                error = f"SubAgentTimeout: no answer within {self.policy.sub_agent_deadline_s:g} s"
            return SubResult(
                **base, status="failed", error=error, attempts=caller.attempts, usage=caller.usage
            )
        result = SubResult(**base, **fields, attempts=caller.attempts, usage=caller.usage)
        if self.result_store is not None:
            self.result_store.put(run_id, result)
        return result

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
