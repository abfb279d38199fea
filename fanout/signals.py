"""How the command line stops on a signal: SIGINT (Ctrl-C), SIGTERM and SIGHUP all stop it alike.

The first signal raises `Interrupted` in the main thread: a run waiting there is cancelled (no new
model call starts, the call in flight is cut off, nothing cut off is recorded) and has unwound
before the model and the checkpoint close. Later signals are ignored: the process is already
stopping, and stopping it half-way through closing could lose what it was about to keep. A signal
the process inherited as ignored (``nohup``, a shell's background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["STOP_SIGNALS", "Interrupted", "exit_code", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a command cleanly."""


class Interrupted(BaseException):
    """A signal asked the command to stop.

    A `BaseException` like ``KeyboardInterrupt``, so no ``except Exception`` swallows it, but not
    one: the command-line framework turns a ``KeyboardInterrupt`` into a silent exit code.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        """The signal's number (the exit code is 128 plus it)."""


def exit_code(exc: BaseException) -> int:
    """128 plus the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first stop signal raises `Interrupted`; later ones are ignored.

    After an interruption they stay ignored (the process is on its way out); otherwise the
    handlers found on entry are put back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)

    previous: dict[signal.Signals, object] = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            # Once stopping, the process is exiting: later signals must not cut its cleanup short.
            signal.signal(sig, signal.SIG_IGN if received else old)  # type: ignore[arg-type]
