"""Where a sub-agent runs, and how it is stopped: its deadline, a cancellation, a blocking user.

fanout's own sub-agents never block, so they run as tasks on the coordinator's event loop. A
user's sub-agent might (``time.sleep``, a busy loop, a synchronous HTTP client) and would then
freeze that loop: no other sub-agent, deadline or Ctrl-C would get a turn. So it runs on an event
loop of its own, in a thread of its own, and reaches the model through a bridge back to the
coordinator's loop. One that overruns its deadline, or whose run is cancelled, is abandoned: Python
cannot stop a thread, so it may go on, but its model access is cut (it starts no new call) and
nothing it returns is used. `cooperative` opts a sub-agent that never blocks back onto the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from fanout.agents.backend import Completion, Prompt, PromptStyle
from fanout.agents.errors import BackendClosed
from fanout.agents.subagent import ModelAccess, is_cooperative

from .context import RunContext
from .errors import SubAgentCancelled, SubAgentTimeout
from .stages import SubAgent

__all__ = ["FinishedWhileStopping", "run_sub_agent"]

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
