"""A blocking `Coordinator.run()` that gets Ctrl-C (SIGINT) once three calls have started.

Run by test_interrupts.py. Prints one JSON line: the calls made when the KeyboardInterrupt arrived,
and the calls made once fanout's background loop has no task left (all work it kept, ended).
"""

import asyncio
import json
import os
import signal
import threading
import time

from fanout.agents._portal import run_sync
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request

backend = ScriptedBackend(fn=lambda r: "the code is 7", delay_s=0.2)
coordinator = Coordinator(backend, synthesis="collect", policy=CallPolicy(max_concurrency=2))
request = Request(
    documents=[Document(id=f"d{i}", text="the code is 7") for i in range(12)], question="code?"
)


def press_ctrl_c() -> None:
    while backend.n_calls < 3:
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGINT)


async def others() -> int:
    return len(asyncio.all_tasks()) - 1


threading.Thread(target=press_ctrl_c, daemon=True).start()
try:
    coordinator.run(request)
    at_interrupt = -1
except KeyboardInterrupt:
    at_interrupt = backend.n_calls
deadline = time.monotonic() + 60
while run_sync(others()) and time.monotonic() < deadline:  # until the background work has ended
    time.sleep(0.01)
print(json.dumps({"at_interrupt": at_interrupt, "after": backend.n_calls, "of": 12}))
