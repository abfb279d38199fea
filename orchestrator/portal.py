"""A background event loop, so synchronous callers (``run``, ``graph.invoke``/``stream``) can drive
the async nodes without nesting event loops or binding async clients to throwaway loops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

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
    """Run `coro` on the shared background loop and wait for its result in this thread."""
    return asyncio.run_coroutine_threadsafe(coro, _portal_loop()).result()
