"""Running one sub-agent to a `SubResult`: store, hooks, deadline, and reading what it returned.

Every failure of a sub-agent is caught here and becomes its failed `SubResult`: one bad document
never sinks the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from fanout.agents.errors import OutputInvalid, UserError
from fanout.agents.secrets import scrub

from .citations import clean_model_text, sanitize_model_text
from .context import RunContext
from .errors import SubAgentTimeout
from .grounding import is_grounded
from .policy import CallPolicy, ModelCaller
from .prompts import NOT_FOUND, is_not_found
from .result import SubResult
from .stages import Stages
from .store import ResultStore
from .subagent import Finding, validate_output
from .task import SubTask
from .tracing import traced_sub_agent

__all__ = ["SubAgentRunner"]


class SubAgentRunner:
    """Runs sub-tasks with a kit's sub-agent stage, store, hooks and policy."""

    def __init__(
        self,
        *,
        stages: Stages,
        policy: CallPolicy,
        result_store: ResultStore | None,
        output_schema: type[BaseModel] | None,
        typed: Callable[[SubResult[Any]], SubResult[Any]],
    ) -> None:
        self.stages = stages
        self.policy = policy
        self.result_store = result_store
        self.output_schema = output_schema
        self.typed = typed

    async def run(self, run_ctx: RunContext[Any], task: SubTask) -> SubResult[Any]:
        """`task`'s result: from the store when an earlier attempt at this run finished it."""
        hooks = run_ctx.hooks
        if self.result_store is not None:
            # Off the event loop: a SQLite store waiting for the file's write lock would block
            # the loop, and with it the checkpointer's commit that would free the lock (deadlock).
            stored = await asyncio.to_thread(self.result_store.get, run_ctx.run_id, task.id)
            if stored is not None:
                await hooks.on_sub_agent_end(run_ctx.for_sub_agent(task), self.typed(stored))
                return stored
        ctx = run_ctx.for_sub_agent(task)
        await hooks.on_sub_agent_start(ctx)
        result = await traced_sub_agent(task, lambda: self._run(ctx, task))
        if result.status == "ok" and self.result_store is not None:
            # Off the event loop: a durable write waits for the disk, and a SQLite writer must not
            # block the loop that LangGraph's own checkpointer needs to finish its transaction.
            await asyncio.to_thread(self.result_store.put, run_ctx.run_id, result)
        await hooks.on_sub_agent_end(ctx, self.typed(result))
        return result

    async def _run(self, ctx: RunContext[Any], task: SubTask) -> SubResult[Any]:
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
        try:
            raw = await self._within_deadline(self.stages.sub_agent(ctx), caller)
            fields = self._interpret(raw, task)
        except Exception as exc:  # isolate the failure to this sub-agent
            error = scrub(f"{type(exc).__name__}: {exc}")
            return SubResult(
                **base, status="failed", error=error, attempts=caller.attempts, usage=caller.usage
            )
        result = SubResult(**base, **fields, attempts=caller.attempts, usage=caller.usage)
        return result.redacted()  # before any store, checkpoint or output sees it

    async def _within_deadline(self, work: Awaitable[object], caller: ModelCaller) -> object:
        """Await `work`, cancelling it once it has spent the deadline outside its model calls."""
        deadline = self.policy.sub_agent_deadline_s
        if deadline is None:
            return await work
        task = asyncio.ensure_future(work)
        started = time.monotonic()
        while True:
            remaining = deadline - caller.time_outside_calls(started)
            if remaining <= 0:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise SubAgentTimeout(
                    f"the sub-agent spent more than {deadline:g} s outside its model calls"
                )
            done, _ = await asyncio.wait({task}, timeout=remaining)
            if done:
                return task.result()

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
