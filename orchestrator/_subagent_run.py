"""Running one sub-agent to a `SubResult`: store, hooks, deadline, and reading what it returned.

Every failure of a sub-agent is caught here and becomes its failed `SubResult`: one bad document
never sinks the run. A shutdown is not a failure: a cancelled run or a closed backend stops the run
and records nothing for the sub-agents it cut off. A sub-task the model refuses as too long is cut
into pieces that fit, each run as a sub-agent of its own (`fanout.orchestrator.overflow`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from fanout.agents.backend import Backend
from fanout.agents.errors import BackendClosed, ContextOverflow, OutputInvalid, UserError
from fanout.agents.portal import outlast_cancellation
from fanout.agents.qa_prompts import NOT_FOUND, is_not_found
from fanout.agents.secrets import scrub
from fanout.agents.subagent import Finding, validate_output
from fanout.agents.task import SubTask

from .citations import clean_model_text, sanitize_model_text
from .context import RunContext
from .errors import CheckpointError
from .execution import FinishedWhileStopping, run_sub_agent
from .fingerprint import sub_task_key
from .grounding import is_grounded
from .overflow import MAX_CUTS, cut_to_fit
from .policy import CallPolicy, ModelCaller
from .result import SubResult
from .split import DEFAULT_OVERLAP_TOKENS
from .stages import DocumentSplitter, Stages
from .store import ResultStore, storage_hint
from .tracing import traced_sub_agent

__all__ = ["SubAgentRunner"]


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a background future's failure as seen (asyncio logs unseen ones at exit)."""
    if not future.cancelled():
        future.exception()


class SubAgentRunner:
    """Runs sub-tasks with a kit's sub-agent stage, store, hooks and policy."""

    def __init__(
        self,
        *,
        backend: Backend,
        stages: Stages,
        policy: CallPolicy,
        result_store: ResultStore | None,
        output_schema: type[BaseModel] | None,
        settings: Callable[[], dict[str, str]],
        typed: Callable[[SubResult[Any]], SubResult[Any]],
    ) -> None:
        self.backend = backend
        self.stages = stages
        self.policy = policy
        self.result_store = result_store
        self.output_schema = output_schema
        self.settings = settings
        self.typed = typed

    async def run_fitting(
        self, run_ctx: RunContext[Any], task: SubTask, *, cuts: int = 0
    ) -> list[SubResult[Any]]:
        """Run `task`; if the model refuses it as too long, run the pieces it is cut into instead."""
        overflows: list[ContextOverflow] = []
        result = await self.run(run_ctx, task, overflows=overflows)
        if not overflows or cuts >= MAX_CUTS:
            return [result]
        split = self.stages.split
        overlap = split.overlap_tokens if isinstance(split, DocumentSplitter) else None
        pieces = cut_to_fit(
            task,
            overflows[0],
            self.backend,
            max_tokens=self.policy.max_tokens,
            overlap_tokens=DEFAULT_OVERLAP_TOKENS if overlap is None else overlap,
        )
        if pieces is None:
            return [result]
        runs = await asyncio.gather(*(self.run_fitting(run_ctx, p, cuts=cuts + 1) for p in pieces))
        return [r for run in runs for r in run]

    async def run(
        self,
        run_ctx: RunContext[Any],
        task: SubTask,
        *,
        overflows: list[ContextOverflow] | None = None,
    ) -> SubResult[Any]:
        """`task`'s result: from the store when an earlier attempt at this run finished it.

        A stored result stands in only under this sub-task's content key (the same text, prompt,
        model and settings). A `ContextOverflow` failure is also appended to `overflows`.
        """
        hooks = run_ctx.hooks
        key = ""
        if self.result_store is not None:
            key = sub_task_key(self.settings(), task, self.backend.prompt_style)
            # Off the event loop: a SQLite store waiting for the file's write lock would block
            # the loop, and with it the checkpointer's commit that would free the lock (deadlock).
            stored = await asyncio.to_thread(self.result_store.get, run_ctx.run_id, task.id, key)
            if stored is not None:
                await hooks.on_sub_agent_end(run_ctx.for_sub_agent(task), self.typed(stored))
                return stored
        ctx = run_ctx.for_sub_agent(task)
        await hooks.on_sub_agent_start(ctx)
        stopping = False
        try:
            result = await traced_sub_agent(task, lambda: self._run(ctx, task, overflows))
        except FinishedWhileStopping as finished:  # the run is stopping: keep what finished
            assert isinstance(finished.value, SubResult)
            result, stopping = finished.value, True
        if result.status == "ok" and self.result_store is not None:
            await self._store(run_ctx.run_id, result, key)
        if stopping:
            raise asyncio.CancelledError  # kept in the store; the run goes on stopping
        await hooks.on_sub_agent_end(ctx, self.typed(result))
        return result

    async def _run(
        self,
        ctx: RunContext[Any],
        task: SubTask,
        overflows: list[ContextOverflow] | None,
    ) -> SubResult[Any]:
        caller = ctx.model
        if not isinstance(caller, ModelCaller):  # a context built without the runtime's spawn
            raise UserError("a sub-agent's context needs the runtime's model access (spawn)")
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
                    self.stages.sub_agent,
                    ctx,
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
            error = scrub(f"{type(exc).__name__}: {exc}")
            return SubResult(
                **base, status="failed", error=error, attempts=caller.attempts, usage=caller.usage
            )
        result = SubResult(**base, **fields, attempts=caller.attempts, usage=caller.usage)
        result = result.redacted()  # before any store, checkpoint or output sees it
        if stopping:
            raise FinishedWhileStopping(result)
        return result

    async def _store(self, run_id: str, result: SubResult[Any], key: str) -> None:
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
            await outlast_cancellation(put)  # the write lands even if cancelled again
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
        schema = self.output_schema
        if schema is not None and isinstance(output, str):
            output = validate_output(schema, output)
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
