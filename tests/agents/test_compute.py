"""The compute thread: one thread, first in first out, no deadlock from its own work."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from fanout.agents._compute import ComputeThread, compute_thread


def test_the_process_has_one_compute_thread() -> None:
    assert compute_thread() is compute_thread()


def test_work_runs_in_order_on_one_thread() -> None:
    thread = ComputeThread()
    seen: list[tuple[int, int]] = []
    futures = [
        thread.submit(lambda i=i: seen.append((i, threading.get_ident()))) for i in range(20)
    ]
    for future in futures:
        future.result()
    assert [i for i, _ in seen] == list(range(20))
    assert len({ident for _, ident in seen}) == 1
    assert seen[0][1] != threading.get_ident()


def test_call_from_the_thread_itself_runs_at_once() -> None:
    thread = ComputeThread()
    # Waiting on its own queue from inside would never return.
    assert thread.call(lambda: thread.call(lambda: 7) + 1) == 8


def test_cancelling_a_queued_call_drops_it() -> None:
    thread = ComputeThread()
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(thread.run(release.wait))
        queued = asyncio.ensure_future(thread.run(ran.append, "queued"))
        await asyncio.sleep(0)
        queued.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued  # the cancellation has reached the queued work before it can start
        release.set()
        await blocker
        thread.call(lambda: None)  # everything queued before this has run or been dropped

    asyncio.run(main())
    assert ran == []
