"""The one thread on which this process runs llama.cpp computations.

llama.cpp's CPU backend spreads each decode over its threads with OpenMP, and libgomp keeps a team
of worker threads per thread that starts a parallel region. Once a second calling thread has a
team, the process manages more threads than there are cores and libgomp stops spinning between
regions, so every token waits for its workers to wake: on 2 cores a loop of 16-token completions
ran about 30% slower from a pool of worker threads than from a single thread. Every sequential
call, every batched decode step and the bench's plain loop therefore run on this thread, and the
process keeps one OpenMP team however many sub-agents wait for the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from .errors import BackendClosed

__all__ = ["ComputeThread", "compute_thread"]

P = ParamSpec("P")
T = TypeVar("T")


class ComputeThread:
    """A single worker thread with a first-in, first-out queue of blocking llama.cpp work."""

    def __init__(self) -> None:
        self._ident: int | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="fanout-llama", initializer=self._started
        )

    def _started(self) -> None:
        self._ident = threading.get_ident()

    def on_thread(self) -> bool:
        """Whether the caller is this thread (waiting on its own queue would deadlock)."""
        return threading.get_ident() == self._ident

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn` behind the work already waiting.

        Raises:
            RuntimeError: the interpreter is shutting down and takes no new work.
        """
        return self._executor.submit(fn, *args, **kwargs)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await `fn` on this thread; cancelling drops it if it has not started yet.

        Raises:
            BackendClosed: the interpreter is exiting and the thread takes no new work.
        """
        try:
            future = self.submit(fn, *args, **kwargs)
        except RuntimeError:
            raise BackendClosed("the interpreter is exiting: no new call starts") from None
        return await asyncio.wrap_future(future)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on this thread and wait for it (at once when already on it)."""
        if self.on_thread():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()


_thread: ComputeThread | None = None
_thread_lock = threading.Lock()


def compute_thread() -> ComputeThread:
    """The process's compute thread, started on first use."""
    global _thread
    with _thread_lock:
        if _thread is None:
            _thread = ComputeThread()
        return _thread
