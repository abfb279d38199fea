"""When an in-process call should decode in a batch: only where batching was measured faster.

Batching shares each decode step among the sequences in flight, but a batched call also pays for a
second context and for copying the shared prompt prefix into its own KV stream. On a CPU the
shared steps win only once answers are long: ``fanout bench`` (batch section) measures the plain
llama-cpp-python loop against the batched path at several answer lengths, and
`CPU_MIN_ANSWER_TOKENS` is the shortest length at which batching was faster there. On a GPU no
measurement exists yet, so the automatic mode never batches on one (ask for ``n_parallel=N``).

The expected answer length of the next call is the median length of this backend's recent
answers; until there are any, calls run sequentially, which is the plain loop's own speed.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque

__all__ = ["AUTO_SEQUENCES", "CPU_MIN_ANSWER_TOKENS", "AutoBatchPolicy"]

CPU_MIN_ANSWER_TOKENS = 32
"""Shortest typical answer, in tokens, for which batching beat the plain loop on a CPU."""

AUTO_SEQUENCES = 8
"""Sequences the automatic mode decodes together (each costs a KV stream of the model's context)."""


class AutoBatchPolicy:
    """Decides per call whether to batch, from the lengths of the answers seen so far.

    Args:
        min_answer_tokens: batch only when the expected answer is at least this long; None never
            batches (no measurement for this hardware).
        window: how many recent answers the expected length is taken over.
    """

    def __init__(self, min_answer_tokens: int | None, *, window: int = 32) -> None:
        self.min_answer_tokens = min_answer_tokens
        self._recent: deque[int] = deque(maxlen=window)
        self._lock = threading.Lock()

    @property
    def expected_answer_tokens(self) -> float | None:
        """Median completion length of the recent calls; None before the first one finished."""
        with self._lock:
            return statistics.median(self._recent) if self._recent else None

    def should_batch(self) -> bool:
        """Whether the next call should join the batch."""
        expected = self.expected_answer_tokens
        return (
            self.min_answer_tokens is not None
            and expected is not None
            and expected >= self.min_answer_tokens
        )

    def record(self, completion_tokens: int) -> None:
        """Remember how long an answer was."""
        with self._lock:
            self._recent.append(completion_tokens)
