"""One long-lived background event loop shared by fanout.

Async HTTP clients are bound to the loop they first ran on; callers' loops come and go (every
``asyncio.run`` makes a new one). Running network calls on this one loop keeps a single connection
pool per backend alive across runs, and lets synchronous callers (``Coordinator.run``,
``graph.invoke``/``stream``) drive async code without nesting event loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["on_portal", "outlast_cancellation", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None

_SIGNAL_POLL_S = 0.05
"""How often a blocked caller wakes to run Python's signal handlers. A signal the kernel gives to
another thread (it does when the main thread already has one pending) does not interrupt a wait
without a timeout, and its handler (Ctrl-C's ``KeyboardInterrupt``) would wait for the run to end."""


def _portal_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fanout-portal", daemon=True).start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the portal loop and block this thread until it finishes.

    If the wait is interrupted (Ctrl-C's ``KeyboardInterrupt``, or any exception a signal handler
    raises), `coro` is cancelled and this waits until it has unwound before re-raising: work left
    running on the portal thread would go on calling a model that the caller is about to close.
    A second interrupt during that wait stops waiting.

    Raises:
        RuntimeError: called from the portal loop itself, which would wait on itself forever.
    """
    loop = _portal_loop()
    if _running_loop() is loop:
        coro.close()
        raise RuntimeError("blocking call on fanout's own event loop: await the async form instead")
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    finished = threading.Event()
    started: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro)
        started.append(task)
        task.add_done_callback(lambda done: _settle(done, outcome, finished))

    loop.call_soon_threadsafe(start)
    try:
        while not finished.wait(_SIGNAL_POLL_S):
            pass
        return outcome.result()
    except BaseException:
        if not outcome.done():  # interrupted while waiting, not the coroutine's own error
            # Scheduled after `start`, so the task exists by the time this runs.
            loop.call_soon_threadsafe(lambda: started[0].cancel())
            while not finished.wait(_SIGNAL_POLL_S):
                pass
        raise


def _settle(
    task: asyncio.Task[T], outcome: concurrent.futures.Future[T], finished: threading.Event
) -> None:
    """Copy how `task` ended onto `outcome`, the future a blocked thread waits on."""
    if task.cancelled():
        outcome.cancel()
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())
    finished.set()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def on_portal(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the portal loop from any loop; cancelling the caller cancels it there too."""
    loop = _portal_loop()
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


async def outlast_cancellation(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done, however often the waiter is cancelled meanwhile.

    For work that must land even as its caller is stopping (a result's write, a rollback that
    releases a lock): LangGraph may cancel a node more than once, and each cancellation would
    otherwise end the wait early. The caller re-raises its own cancellation afterwards.
    """
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({future})
