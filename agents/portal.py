"""One long-lived background event loop shared by fanout.

Async HTTP clients are bound to the loop they first ran on; callers' loops come and go (every
``asyncio.run`` makes a new one). Running network calls on this one loop keeps a single connection
pool per backend alive across runs, and lets synchronous callers (``Coordinator.run``,
``graph.invoke``/``stream``) drive async code without nesting event loops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["on_portal", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


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

    Raises:
        RuntimeError: called from the portal loop itself, which would wait on itself forever.
    """
    loop = _portal_loop()
    if _running_loop() is loop:
        coro.close()
        raise RuntimeError("blocking call on fanout's own event loop: await the async form instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


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
