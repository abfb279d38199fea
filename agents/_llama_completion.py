"""One request of a batched llama.cpp run, held to ``Llama.create_completion``'s rules exactly.

The batching engine decodes many sequences at once, so it cannot call ``create_completion``; these
are that method's per-request rules, reimplemented token for token so a batched answer and its
usage counts equal the sequential path's: how the prompt is tokenized, where a stop sequence cuts,
how an incomplete UTF-8 character holds the answer back, when the budget ends it, and which
sampling chain runs above temperature 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ContextOverflow

__all__ = [
    "BatchOutput",
    "CompletionJob",
    "SequenceDecoder",
    "common_prefix_length",
    "completion_prompt_tokens",
    "sampler_chain",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, kw_only=True)
class BatchOutput:
    """What one batched request produced, counted the way ``Llama.create_completion`` counts."""

    text: str
    """The completion text, unstripped, cut before the first stop sequence."""
    prompt_tokens: int
    """The whole prompt's length, shared prefix included (what the model attended to)."""
    completion_tokens: int
    """Tokens generated."""
    shared_prefix_tokens: int
    """Prompt tokens not evaluated for this request: copied from, or kept in, a cached sequence."""
    finish_reason: FinishReason
    """"stop" at a stop sequence or end-of-generation token, "length" at the token budget."""
    queue_s: float = 0.0
    """Seconds from submission until a batch slot took the request."""


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def completion_prompt_tokens(llama: Any, text: str) -> list[int]:
    """The tokens ``Llama.create_completion(text)`` feeds the model: BOS/EOS as the GGUF asks."""
    model = llama._model
    bos = model.token_cls() if model.token_cls() != -1 else llama.token_bos()
    head = [bos] if model.add_bos_token() and bos != -1 else []
    sep = model.token_sep()
    tail = (
        [] if not model.add_eos_token() and sep == -1 else [sep if sep != -1 else llama.token_eos()]
    )
    body: list[int] = llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    return head + body + tail


@dataclass(eq=False, kw_only=True)
class CompletionJob:
    """A tokenized request waiting for, or decoding in, a batch."""

    tokens: list[int]
    """The prompt, as `completion_prompt_tokens` makes it."""
    max_tokens: int
    """Token budget, already cut to fit the context."""
    stop: list[bytes]
    """Stop sequences, UTF-8 encoded."""
    temperature: float
    """0 decodes greedily."""
    seed: int
    """Seed of the sampling chain when temperature > 0."""
    future: Future[BatchOutput] = field(default_factory=Future)
    """Resolved by the engine's worker thread when the sequence finishes."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set by the caller to drop the sequence at the next step."""
    submitted_at: float = field(default_factory=time.perf_counter)
    """When the request was queued."""
    admitted_at: float | None = None
    """When a batch slot took it; None while it waits."""

    @classmethod
    def for_prompt(
        cls,
        tokens: list[int],
        *,
        n_ctx: int,
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        seed: int,
    ) -> CompletionJob:
        """A job whose budget is cut as ``create_completion`` cuts it (0: fill the context).

        Raises:
            ContextOverflow: the prompt alone fills the context window.
        """
        if not tokens:
            raise ValueError("empty prompt")
        if len(tokens) >= n_ctx:
            raise ContextOverflow(
                f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}"
            )
        room = n_ctx - len(tokens)
        budget = room if max_tokens <= 0 or max_tokens + len(tokens) >= n_ctx else max_tokens
        return cls(
            tokens=tokens,
            max_tokens=budget,
            stop=[s.encode("utf-8") for s in stop],
            temperature=temperature,
            seed=seed,
        )


class SequenceDecoder:
    """One request's generation state: mirrors create_completion's stop and UTF-8 rules exactly."""

    def __init__(self, job: CompletionJob, shared: int) -> None:
        self.job = job
        self.shared = shared
        self.generated: list[int] = []
        self.multibyte_fix = 0
        self.sampler: Any = None

    def push(
        self, token: int, detokenize: Callable[[list[int]], bytes], *, is_eog: bool
    ) -> BatchOutput | None:
        """Take one sampled token; the finished output once the request is done."""
        if is_eog:
            return self.output(detokenize(self.generated), "stop")
        self.generated.append(token)
        text = detokenize(self.generated)
        for k, char in enumerate(text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    self.multibyte_fix = num - k
        if self.multibyte_fix > 0:  # an incomplete UTF-8 character: wait for its other bytes
            self.multibyte_fix -= 1
            return None
        hits = [s for s in self.job.stop if s in text]
        if hits:
            return self.output(text[: text.index(hits[0])], "stop")
        if len(self.generated) >= self.job.max_tokens:
            return self.output(text, "length")
        return None

    def output(self, text: bytes, reason: FinishReason) -> BatchOutput:
        """The finished request, with `text` as the answer."""
        return BatchOutput(
            text=text.decode("utf-8", errors="ignore"),
            prompt_tokens=len(self.job.tokens),
            completion_tokens=len(self.generated),
            shared_prefix_tokens=self.shared,
            finish_reason=reason,
        )


def sampler_chain(job: CompletionJob) -> Any:
    """llama-cpp-python's default sampling chain for `create_completion`, seeded per request."""
    from llama_cpp import _internals

    sampler_type: Any = _internals.LlamaSampler  # untyped
    sampler = sampler_type()
    sampler.add_top_k(40)
    sampler.add_typical(1.0, 1)
    sampler.add_top_p(0.95, 1)
    sampler.add_min_p(0.05, 1)
    sampler.add_temp(job.temperature)
    sampler.add_dist(job.seed)
    return sampler
