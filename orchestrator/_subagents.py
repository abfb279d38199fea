"""How sub-agents are run: attempts and waves, one sub-agent to its `SubResult`, and where it runs.

**Attempts.** Only successes are final, so each new attempt retries what failed before. A run
that stops (Ctrl-C, a crash, a failure policy) and is run again under the same id is a new attempt.
Its first dispatch sends every sub-task without a successful result, the failures of earlier
attempts included; within one attempt a failure is final (its retries were the call policy's).
What an attempt has sent lives in memory, never in the checkpoint, so every resume starts afresh.

**One sub-agent** (`SubAgentRunner`): store, hooks, deadline, and reading what it returned. Every
failure of a sub-agent is caught and becomes its failed `SubResult`: one bad document never sinks
the run. A shutdown is not a failure: a cancelled run or a closed backend stops the run and records
nothing for the sub-agents it cut off. A sub-task the model refuses as too long is cut into pieces
that fit, each run as a sub-agent of its own (`fanout.orchestrator._overflow`).

**Where it runs** (`run_sub_agent`). fanout's own sub-agents never block, so they run as tasks on
the coordinator's event loop. A user's sub-agent might (``time.sleep``, a busy loop, a synchronous
HTTP client) and would then freeze that loop: no other sub-agent, deadline or Ctrl-C would get a
turn. So it runs on an event loop of its own, in a thread of its own, and reaches the model through
a bridge back to the coordinator's loop. One that overruns its deadline, or whose run is cancelled,
is abandoned: Python cannot stop a thread, so it may go on, but its model access is cut (it starts
no new call) and nothing it returns is used. `cooperative` opts a sub-agent that never blocks back
onto the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from fanout.agents._portal import outlast_cancellation
from fanout.agents._secrets import scrub
from fanout.agents.backend import Backend, Completion, Prompt, PromptStyle
from fanout.agents.errors import BackendClosed, ContextOverflow, OutputInvalid, UserError
from fanout.agents.subagent import (
    NOT_FOUND,
    Finding,
    ModelAccess,
    is_cooperative,
    is_not_found,
    validate_output,
)
from fanout.agents.task import SubTask, cut_parent

from ._citations import clean_model_text, sanitize_model_text
from ._fingerprint import sub_task_key
from ._grounding import is_grounded
from ._overflow import MAX_CUTS, cut_to_fit
from ._tracing import traced_sub_agent
from .context import RunContext
from .errors import CheckpointError, SubAgentCancelled, SubAgentTimeout
from .policy import CallPolicy, ModelCaller
from .result import SubResult
from .split import DEFAULT_OVERLAP_TOKENS, DocumentSplitter
from .stages import Stages, SubAgent
from .store import ResultStore, storage_hint

__all__ = [
    "Attempt",
    "Attempts",
    "FinishedWhileStopping",
    "SubAgentRunner",
    "ordered",
    "run_sub_agent",
]


# -- attempts ----------------------------------------------------------------------------

MAX_ATTEMPTS_KEPT = 1024
"""Attempts remembered for runs driven through the graph directly (nobody calls `Attempts.end`)."""


def ordered(tasks: list[SubTask], results: list[SubResult]) -> list[SubResult]:
    """One sub-result per sub-agent, in the order of their tasks (they finish in any order).

    A sub-agent retried by a later attempt has its earlier failure in the log too: a success
    wins, and otherwise the latest attempt. The pieces of a sub-task cut to fit the context take
    its place, in order.
    """
    order = {t.id: i for i, t in enumerate(tasks)}
    latest: dict[str, SubResult] = {}
    for result in results:
        known = latest.get(result.sub_agent_id)
        if known is None or known.status != "ok":
            latest[result.sub_agent_id] = result

    def position(sub_agent_id: str) -> tuple[int, tuple[int, ...]]:
        pieces: list[int] = []
        while sub_agent_id not in order and (cut := cut_parent(sub_agent_id)) is not None:
            sub_agent_id, piece = cut
            pieces.insert(0, piece)
        return order.get(sub_agent_id, len(order)), tuple(pieces)

    return sorted(latest.values(), key=lambda r: position(r.sub_agent_id))


@dataclass(eq=False)
class Attempt:
    """One attempt at a run in this process: what it has sent so far."""

    tried: set[str] = field(default_factory=set)
    """Sub-agents run (or sent) in this attempt: a failure among them is final for it."""
    queue: deque[int] | None = None
    """Indices of the tasks still to send; made at the attempt's first dispatch."""

    def next_wave(self, tasks: list[SubTask], results: list[SubResult], size: int) -> list[int]:
        """Indices of the next (at most) `size` tasks to run; empty once none is left."""
        if self.queue is None:
            done = {r.sub_agent_id for r in results if r.status == "ok"}
            self.queue = deque(
                i for i, t in enumerate(tasks) if t.id not in done and t.id not in self.tried
            )
        wave = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
        self.tried.update(tasks[i].id for i in wave)
        return wave


class Attempts:
    """The attempt in progress for each run id."""

    def __init__(self) -> None:
        self._by_run: dict[str, Attempt] = {}

    def begin(self, run_id: str) -> None:
        """A new attempt at `run_id` starts."""
        self._by_run[run_id] = Attempt()

    def end(self, run_id: str) -> None:
        """The attempt at `run_id` is over."""
        self._by_run.pop(run_id, None)

    def current(self, run_id: str) -> Attempt:
        """The attempt in progress (a new one if none was begun: the graph driven directly)."""
        attempt = self._by_run.get(run_id)
        if attempt is None:
            while len(self._by_run) >= MAX_ATTEMPTS_KEPT:
                del self._by_run[next(iter(self._by_run))]
            attempt = self._by_run[run_id] = Attempt()
        return attempt


# -- one sub-agent ---------------------------------------------------------------------


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a background future's failure as seen (asyncio logs unseen ones at exit)."""
    if not future.cancelled():
        future.exception()


@dataclass(eq=False, kw_only=True)
class SubAgentRunner:
    """Runs sub-tasks with a kit's sub-agent stage, store, hooks and policy."""

    backend: Backend
    stages: Stages
    policy: CallPolicy
    result_store: ResultStore | None
    output_schema: type[BaseModel] | None
    settings: Callable[[], dict[str, str]]
    """What the results depend on, read at each lookup (part of every content key)."""
    typed: Callable[[SubResult[Any]], SubResult[Any]]
    """A sub-result with its ``data`` typed as the output schema (for the hooks)."""

    async def run_fitting(
        self, run_ctx: RunContext[Any], task: SubTask, *, cuts: int = 0
    ) -> list[SubResult[Any]]:
        """Run `task`; if the model refuses it as too long, run the pieces it is cut into instead."""
        overflows: list[ContextOverflow] = []
        result = await self.run(run_ctx, task, overflows=overflows)
        if not overflows or cuts >= MAX_CUTS:
            return [result]
        split = self.stages.split
        overlap = (
            split.overlap_tokens if isinstance(split, DocumentSplitter) else DEFAULT_OVERLAP_TOKENS
        )
        pieces = cut_to_fit(
            task,
            overflows[0],
            self.backend,
            max_tokens=self.policy.max_tokens,
            overlap_tokens=overlap,
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
            result = await traced_sub_agent(
                task.id, task.document_id, task.chunk_index, lambda: self._run(ctx, task, overflows)
            )
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


# -- where a sub-agent runs ---------------------------------------------------------------

_THREAD_SLOTS_PER_CALL = 2
"""User sub-agents running at once, per concurrent model call allowed (a few more than the calls,
so the next sub-agent is ready when a call ends)."""

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


class FinishedWhileStopping(BaseException):
    """The run was cancelled just after the sub-agent returned: here is what it returned.

    Raised instead of ``CancelledError`` so that a finished answer can still be stored before the
    run goes on stopping; whoever catches it must end in ``CancelledError``.
    """

    def __init__(self, value: object) -> None:
        super().__init__("the run was cancelled as the sub-agent finished")
        self.value = value


def _thread_slots(size: int) -> asyncio.Semaphore:
    """Bounds the threads running user sub-agents (each holds an event loop and its descriptors)."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    slots = per_loop.get(size)
    if slots is None:
        slots = per_loop[size] = asyncio.Semaphore(size)
    return slots


async def run_sub_agent(
    sub_agent: SubAgent,
    ctx: RunContext[Any],
    caller: Any,
    *,
    deadline_s: float | None,
    max_concurrency: int,
) -> object:
    """Run `sub_agent` on ``ctx.task`` until it returns, fails or overruns `deadline_s`.

    The deadline counts only time outside model calls (`caller.time_outside_calls`), so a long
    queue for a busy model never trips it.

    Raises:
        SubAgentTimeout: it spent more than `deadline_s` outside its model calls.
        SubAgentCancelled: its own code raised ``CancelledError`` (fanout did not cancel it).
        asyncio.CancelledError: the run itself was cancelled; the sub-agent was stopped first.
        FinishedWhileStopping: the run was cancelled as the sub-agent returned (its value).
    """
    if is_cooperative(sub_agent):
        return await _supervise(_OnLoop(sub_agent(ctx)), caller, deadline_s)
    async with _thread_slots(_THREAD_SLOTS_PER_CALL * max_concurrency + 2):
        running = _InThread(sub_agent, ctx, caller)
        return await _supervise(running, caller, deadline_s)


async def _supervise(running: _OnLoop | _InThread, caller: Any, deadline_s: float | None) -> object:
    started = time.monotonic()
    try:
        while True:
            remaining = None
            if deadline_s is not None:
                remaining = deadline_s - caller.time_outside_calls(started)
                if remaining <= 0:
                    await running.stop()
                    raise SubAgentTimeout(
                        f"the sub-agent spent more than {deadline_s:g} s outside its model calls"
                    )
            done, _ = await asyncio.wait({running.outcome}, timeout=remaining)
            if done:
                return _result(running.outcome)
    except asyncio.CancelledError:
        outcome = running.outcome
        if outcome.done() and not outcome.cancelled() and outcome.exception() is None:
            raise FinishedWhileStopping(outcome.result()) from None
        await running.stop()  # the run is stopping: the sub-agent starts nothing more
        raise


def _result(outcome: asyncio.Future[object]) -> object:
    """The sub-agent's return value; a ``CancelledError`` fanout did not cause is its failure."""
    if outcome.cancelled():
        raise _own_cancellation()
    return outcome.result()


class _OnLoop:
    """A cooperative sub-agent: a task on the coordinator's own loop."""

    def __init__(self, work: Awaitable[object]) -> None:
        self.outcome: asyncio.Future[object] = asyncio.ensure_future(work)

    async def stop(self) -> None:
        """Cancel it and wait until it has unwound."""
        self.outcome.cancel()
        await asyncio.wait({self.outcome})


class _BridgedAccess:
    """`ModelAccess` for a sub-agent on another thread's loop: each call runs on the home loop.

    Once the sub-agent is abandoned (`cut`), its calls in flight are cancelled and new ones fail.
    """

    def __init__(self, caller: ModelAccess, home: asyncio.AbstractEventLoop) -> None:
        self._caller = caller
        self._home = home
        self._cut = False
        self._calls: set[asyncio.Task[Any]] = set()

    @property
    def prompt_style(self) -> PromptStyle:
        """The backend's prompt style."""
        return self._caller.prompt_style

    @property
    def context_window(self) -> int | None:
        """The backend's context window."""
        return self._caller.context_window

    @property
    def max_tokens(self) -> int:
        """The policy's completion budget."""
        return self._caller.max_tokens

    def count_tokens(self, text: str) -> int:
        """The backend's token count."""
        return self._caller.count_tokens(text)

    async def complete(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """One model call under the coordinator's limits, made on the coordinator's loop."""
        call = self._call(prompt, max_tokens=max_tokens, json_schema=json_schema)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self._home))

    async def _call(
        self, prompt: Prompt, *, max_tokens: int | None, json_schema: dict[str, Any] | None
    ) -> Completion:
        """On the home loop, where `cut` is decided: no call starts after it."""
        if self._cut:
            raise BackendClosed("the sub-agent was stopped: it may start no new model call")
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await self._caller.complete(
                prompt, max_tokens=max_tokens, json_schema=json_schema
            )
        finally:
            self._calls.discard(task)

    def cut(self) -> None:
        """Abandon the sub-agent (on the home loop): cancel its calls, refuse new ones."""
        self._cut = True
        for call in list(self._calls):
            call.cancel()


class _InThread:
    """A user's sub-agent on an event loop of its own, in a daemon thread of its own."""

    def __init__(self, sub_agent: SubAgent, ctx: RunContext[Any], caller: ModelAccess) -> None:
        self._home = asyncio.get_running_loop()
        self.outcome: asyncio.Future[object] = self._home.create_future()
        self._access = _BridgedAccess(caller, self._home)
        self._sub_agent = sub_agent
        self._ctx = replace(ctx, model=self._access)  # its calls hop back to the home loop
        task = ctx.task
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inner: asyncio.Task[object] | None = None
        self._stopped = False
        context = contextvars.copy_context()  # tracing spans nest across the hop
        threading.Thread(
            target=context.run, args=(self._main,), name=f"fanout-sub-agent {task.id}", daemon=True
        ).start()

    def _main(self) -> None:
        value: object = None
        error: BaseException | None = None
        runner = asyncio.Runner()
        try:
            try:
                value = runner.run(self._body(runner.get_loop()))
            except asyncio.CancelledError:
                error = None if self._stopped else _own_cancellation()
            except BaseException as exc:  # reported on the home loop, as the sub-agent's
                error = exc
            try:
                self._home.call_soon_threadsafe(self._settle, value, error)
            except RuntimeError:
                pass  # the home loop is gone: nobody waits for this sub-agent any more
        finally:
            runner.close()  # after reporting: closing waits for what the sub-agent left running

    async def _body(self, loop: asyncio.AbstractEventLoop) -> object:
        with self._lock:
            if self._stopped:
                raise asyncio.CancelledError
            self._loop, self._inner = loop, asyncio.current_task()
        return await self._sub_agent(self._ctx)

    def _settle(self, value: object, error: BaseException | None) -> None:
        if self.outcome.done():
            return  # abandoned: what it returned late is not used
        if self._stopped:
            self.outcome.cancel()
        elif error is None:
            self.outcome.set_result(value)
        elif not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit in its thread
            self.outcome.set_exception(
                SubAgentCancelled(f"the sub-agent raised {type(error).__name__} in its thread")
            )
        else:
            self.outcome.set_exception(error)

    async def stop(self) -> None:
        """Abandon it: cut its model access and ask its loop to cancel it; never wait for it."""
        with self._lock:
            self._stopped = True
            loop, inner = self._loop, self._inner
        self._access.cut()
        if loop is not None and inner is not None:
            try:
                loop.call_soon_threadsafe(inner.cancel)
            except RuntimeError:
                pass  # its loop has finished already
        if not self.outcome.done():
            self.outcome.cancel()


def _own_cancellation() -> BaseException:
    return SubAgentCancelled(
        "the sub-agent raised CancelledError without being cancelled by fanout"
    )
