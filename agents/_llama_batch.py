"""Continuous batching for in-process llama.cpp: concurrent sub-agents decode together.

Isolation multiplies model calls, and one decode step for eight sequences costs far less than
eight steps for one. `LlamaBatchEngine` keeps up to ``max_sequences`` requests in one llama.cpp
context (one sequence id each): every step decodes one token of every running sequence in a single
``llama_decode``, and a request joins or leaves between steps, so nobody waits for a batch to
fill. Sub-agents share their instruction and few-shot examples; that prompt prefix is evaluated
once and copied to the other sequences (``llama_memory_seq_cp``), and a finished sequence's cache
stays behind for the next request that shares its prefix. (A sequential loop through
llama-cpp-python already reuses the previous call's prefix, so on a CPU the gain over it is in the
decode steps: ``fanout bench``'s batch section measures both.)

Same outputs as the sequential path, to the bit, at temperature 0. Two things make llama.cpp's
result for a token depend on what else is in its batch, and both are switched off here:
- KV layout: with a unified cache a sequence's cells are interleaved with its neighbours', which
  changes the order attention sums in. Each sequence therefore gets its own KV stream
  (``kv_unified=False``) with the same cells a single-sequence context would give it.
- CPU kernels: repacked-weight and "tiled" small-batch matmuls give a row a different rounding
  depending on how many rows share the call. `batch_invariant_load` loads weights unpacked and sets
  ``GGML_CPU_TILED_MM=0``, which ggml reads once, at its first matmul in the process.
Temperature > 0 samples with llama-cpp-python's default chain, one seeded sampler per sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._compute import compute_thread
from ._llama_completion import (
    BatchOutput,
    CompletionJob,
    SequenceDecoder,
    common_prefix_length,
    completion_prompt_tokens,
    sampler_chain,
)
from .errors import BackendClosed, BackendError

__all__ = [
    "SEQUENCE_CTX",
    "BatchOutput",
    "BatchStats",
    "LlamaBatchEngine",
    "batch_invariant_load",
    "common_prefix_length",
    "completion_prompt_tokens",
]

SEQUENCE_CTX = 4096
"""Most tokens one batched sequence holds: each owns a KV stream this long, and a model's whole
trained context (32k for Gemma 3) times eight sequences would be gigabytes. Longer calls take the
sequential path."""
MIN_COPY_TOKENS = 16
"""Shortest shared prefix worth copying from another sequence (a copy moves its whole stream)."""


@dataclass(frozen=True, kw_only=True)
class BatchStats:
    """Running totals of one engine, for benchmarks and logs."""

    requests: int = 0
    """Requests answered."""
    prompt_tokens: int = 0
    """Prompt tokens of those requests, shared prefixes included."""
    shared_prefix_tokens: int = 0
    """Prompt tokens that were not evaluated again thanks to a shared prefix."""
    completion_tokens: int = 0
    """Tokens generated."""
    decode_calls: int = 0
    """``llama_decode`` calls: one per step, one per newcomer's prompt, one per shared prefix."""
    max_active: int = 0
    """Most sequences decoded in one step."""


@contextlib.contextmanager
def batch_invariant_load() -> Iterator[None]:
    """Within this block, `Llama(...)` loads weights so a token's result ignores its batch-mates.

    llama-cpp-python has no argument for ``use_extra_bufts`` (weight repacking), so the defaults it
    reads are patched for the block; hold a lock around it if other threads construct models.
    """
    import llama_cpp.llama_cpp as low

    os.environ.setdefault("GGML_CPU_TILED_MM", "0")  # read once, at the first matmul
    original = low.llama_model_default_params

    def unpacked() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = unpacked
    try:
        yield
    finally:
        low.llama_model_default_params = original


@dataclass(eq=False)
class _Slot:
    seq_id: int
    """The llama.cpp sequence id, and so the KV stream, this slot owns."""
    cached: list[int] = field(default_factory=list)
    """Tokens whose keys and values sit in this sequence's stream, at positions 0..len-1."""
    decoder: SequenceDecoder | None = None
    """The request decoding here; None while the slot is free (its cache stays)."""
    pending: int | None = None
    """The token sampled last step, decoded this step."""
    released_at: int = 0
    """Step at which the slot was last freed: the least recently used free slot goes first."""


@dataclass(frozen=True)
class _Placement:
    job: CompletionJob
    slot: _Slot
    source: _Slot | None
    """Whose stream to copy first (None: keep this slot's own cache)."""
    keep: int
    """Cached prefix kept: positions [0, keep)."""
    start: int
    """First prompt token this request evaluates itself."""


def _plan_admission(
    jobs: Sequence[CompletionJob], free: list[_Slot], active: Sequence[_Slot], *, share: bool = True
) -> tuple[list[_Placement], int]:
    """Give each new job a free slot and the longest cached prefix it can reuse.

    A job prefers the free slot whose leftover cache matches it best (nothing to copy), and copies
    from a running sequence when that shares more. When newcomers share more with one another than
    with any cache, the first one's prompt is evaluated up to the shared length before the others
    copy it; the second value returned is that length (0: no such pass).
    """
    placements: list[_Placement] = []
    for job in jobs:
        limit = len(job.tokens) - 1  # the last prompt token is always evaluated, for its logits

        def own_match(slot: _Slot, job: CompletionJob = job, limit: int = limit) -> tuple[int, int]:
            return min(common_prefix_length(job.tokens, slot.cached), limit), -slot.released_at

        slot = max(free, key=own_match)
        free.remove(slot)
        source, keep = None, own_match(slot)[0]
        for other in active:
            shared = min(common_prefix_length(job.tokens, other.cached), limit)
            if shared >= MIN_COPY_TOKENS and shared > keep:
                source, keep = other, shared
        placements.append(_Placement(job, slot, source, keep, keep))
    if len(placements) < 2 or not share:
        return placements, 0
    leader = placements[0]
    candidates: dict[int, int] = {}
    for i, p in enumerate(placements[1:], 1):
        shared = common_prefix_length(leader.job.tokens, p.job.tokens)
        shared = min(shared, len(leader.job.tokens) - 1, len(p.job.tokens) - 1)
        if shared - p.keep >= MIN_COPY_TOKENS:
            candidates[i] = shared
    shared = min(candidates.values(), default=0)
    groups = [i for i in candidates if shared - placements[i].keep >= MIN_COPY_TOKENS]
    if not groups:
        return placements, 0
    prefix_end = shared if shared > leader.keep else 0
    if prefix_end:
        placements[0] = replace(leader, start=prefix_end)
    # Copy from the leader's stream once it holds the prefix; when it only gets the prefix by a
    # copy made this same step, copy from that copy's source instead (copies are not chained).
    source = leader.slot if prefix_end or leader.source is None else leader.source
    for i in groups:
        placements[i] = replace(placements[i], source=source, keep=shared, start=shared)
    return placements, prefix_end


class LlamaBatchEngine:
    """Runs concurrent completions of one loaded model together, in a second llama.cpp context.

    Args:
        llama: the loaded ``llama_cpp.Llama``; its weights and context settings are reused.
        lock: serialises compute with the sequential path, so two contexts never fight for cores.
        max_sequences: sequences decoded together (llama.cpp ``n_seq_max``).
        share_prefix: reuse cached prompt prefixes; off only to measure what sharing saves.

    Each sequence owns a KV stream as long as the model's context, at most `SEQUENCE_CTX`
    tokens, so memory grows with ``max_sequences``: for the embedded Gemma 3 270M at 2048 tokens,
    about 40 MB a sequence.
    """

    def __init__(
        self, llama: Any, lock: threading.Lock, *, max_sequences: int, share_prefix: bool = True
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        if max_sequences < 1:
            raise ValueError("max_sequences must be at least 1")
        self.max_sequences = max_sequences
        self.share_prefix = share_prefix
        self.n_ctx: int = min(llama.n_ctx(), SEQUENCE_CTX)
        self.n_batch: int = llama.n_batch
        self._llama = llama
        self._lock = lock
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)
        params.n_seq_max = max_sequences
        params.n_ctx = self.n_ctx * max_sequences
        params.kv_unified = False  # one stream per sequence: the layout a lone sequence would get
        self._ctx: Any = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self._batch: Any = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1)
        self._n_vocab: int = llama.n_vocab()
        self._slots = [_Slot(seq_id) for seq_id in range(max_sequences)]
        self._pending: deque[CompletionJob] = deque()
        self._state_lock = threading.Lock()
        self._idle = threading.Event()
        """Clear while a `_serve` is queued on or running on the compute thread."""
        self._idle.set()
        self._closed = False
        self._steps = 0
        self._forget_finished = False
        self._totals: dict[str, int] = dict.fromkeys(BatchStats.__dataclass_fields__, 0)

    @property
    def stats(self) -> BatchStats:
        """Totals since the engine was created."""
        return BatchStats(**self._totals)

    def clear_cache(self) -> None:
        """Forget the prefixes finished sequences left behind, before the next request is admitted.

        For benchmarks that must start cold; sequences still running keep theirs.
        """
        with self._state_lock:
            self._forget_finished = True

    def close(self) -> None:
        """Free this engine's context: sequences decoding finish first, queued ones fail."""
        error = BackendClosed("the llama.cpp batch engine is closed")
        with self._state_lock:
            self._closed = True
            while self._pending:
                job = self._pending.popleft()
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(error)
        if compute_thread().on_thread():
            while self._serve_step():  # a queued `_serve` would wait behind this very call
                pass
        self._idle.wait()
        self._batch.close()
        self._ctx.close()

    def prompt_tokens(self, text: str) -> list[int]:
        """The prompt as this engine (and ``create_completion``) tokenizes it."""
        return completion_prompt_tokens(self._llama, text)

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int = 0,
    ) -> BatchOutput:
        """Complete `prompt` alongside whatever else is running; cancelling ends its sequence.

        Raises:
            ContextOverflow: the prompt does not fit the model's context window.
            BackendClosed: the engine is closed (its model is being freed).
            BackendError: llama.cpp failed, or the request was cancelled.
        """
        with self._state_lock:  # `close` takes it first: the model is not freed while this reads it
            if self._closed:
                raise BackendClosed("the llama.cpp batch engine is closed")
            tokens = self.prompt_tokens(prompt)
        job = self._submit(
            tokens, max_tokens=max_tokens, stop=stop, temperature=temperature, seed=seed
        )
        try:
            return await asyncio.wrap_future(job.future)
        finally:
            job.cancelled.set()  # a no-op once finished; otherwise the worker drops the sequence

    def _submit(
        self,
        tokens: list[int],
        *,
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        seed: int,
    ) -> CompletionJob:
        job = CompletionJob.for_prompt(
            tokens, n_ctx=self.n_ctx, max_tokens=max_tokens, stop=stop,
            temperature=temperature, seed=seed,
        )  # fmt: skip
        with self._state_lock:
            if self._closed:
                raise BackendClosed("the llama.cpp batch engine is closed")
            if self._idle.is_set():
                # The interpreter's exit waits for the compute thread: no context is freed mid-decode.
                try:
                    compute_thread().submit(self._serve)
                except RuntimeError:
                    raise BackendClosed("the interpreter is exiting: no new call starts") from None
                self._idle.clear()
            self._pending.append(job)  # `_serve` needs this lock to look, so the order is safe
        return job

    # Everything below runs on the compute thread, the only one that touches slots and the context.

    def _serve(self) -> None:
        """One decode step, then the next one queued behind whatever else waits for the thread.

        Queuing each step anew lets sequential calls of the same model run between steps. At
        interpreter exit nothing new can be queued, and the steps go on here until the running
        sequences finish.
        """
        while self._serve_step():
            try:
                compute_thread().submit(self._serve)
            except RuntimeError:  # the interpreter is exiting
                continue
            return

    def _serve_step(self) -> bool:
        """Admit what fits and decode one token of every sequence; False once nothing is left."""
        try:
            with self._state_lock:
                free = [s for s in self._slots if s.decoder is None]
                fresh: list[CompletionJob] = []
                while self._pending and len(fresh) < len(free):
                    job = self._pending.popleft()
                    if job.future.set_running_or_notify_cancel():
                        fresh.append(job)
                if not fresh and len(free) == len(self._slots):
                    self._idle.set()
                    return False
                forget, self._forget_finished = self._forget_finished, False
            if forget or not self.share_prefix:
                for slot in free:
                    self._forget(slot)
            with self._lock:
                self._step(fresh, free)
        except Exception as exc:  # the step's requests get the error; later ones start afresh
            self._fail_everything(exc)
            return False
        return True

    def _step(self, fresh: list[CompletionJob], free: list[_Slot]) -> None:
        """Admit `fresh` jobs into `free` slots, then decode one token of every running sequence.

        Each newcomer's prompt is evaluated in a call of its own, as the sequential path does:
        llama.cpp splits a call that mixes one sequence's prompt with other sequences' tokens into
        micro-batches whose shape changes the prompt's rounding. Prompt throughput is the same
        either way; the batching gain is in the decode steps, one call for every sequence.
        """
        self._steps += 1
        for slot in self._slots:
            if slot.decoder is not None and slot.decoder.job.cancelled.is_set():
                self._finish(slot, BackendError("cancelled"))
        running = [s for s in self._slots if s.decoder is not None]
        shared_with = running if self.share_prefix else ()
        placements, prefix_end = _plan_admission(fresh, free, shared_with, share=self.share_prefix)
        if prefix_end:  # the newcomers' common prefix, once, in the first newcomer's stream
            leader = placements[0]
            self._place(leader)
            prefix = leader.job.tokens[leader.keep : prefix_end]
            self._decode([(leader.slot, token, False) for token in prefix])
            placements[0] = replace(leader, source=None, keep=prefix_end)
        for p in placements:
            self._place(p)  # copies land at the next decode, before anything is written
        for p in placements:
            p.job.admitted_at = time.perf_counter()
            p.slot.decoder = SequenceDecoder(p.job, shared=p.keep)
            if p.job.temperature > 0:
                p.slot.decoder.sampler = sampler_chain(p.job)
            last = len(p.job.tokens) - 1
            self._decode([(p.slot, p.job.tokens[i], i == last) for i in range(p.start, last + 1)])
        self._totals["max_active"] = max(self._totals["max_active"], len(running) + len(fresh))
        work = []
        for slot in running:
            assert slot.pending is not None
            work.append((slot, slot.pending, True))
        self._decode(work)

    def _place(self, p: _Placement) -> None:
        """Leave exactly the reused prefix in the slot's stream, copying it in first if needed."""
        import llama_cpp

        mem, seq = self._ctx.memory, p.slot.seq_id
        if p.source is not None and p.source is not p.slot:
            # Streams copy whole (llama.cpp has no partial cross-stream copy); the tail is cut below.
            llama_cpp.llama_memory_seq_rm(mem, seq, -1, -1)
            llama_cpp.llama_memory_seq_cp(mem, p.source.seq_id, seq, -1, -1)
            p.slot.cached = list(p.source.cached)
        llama_cpp.llama_memory_seq_rm(mem, seq, p.keep, -1)
        del p.slot.cached[p.keep :]

    def _forget(self, slot: _Slot) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._ctx.memory, slot.seq_id, -1, -1)
        slot.cached.clear()

    def _decode(self, work: list[tuple[_Slot, int, bool]]) -> None:
        """Evaluate (slot, token, wants_logits) in order, ``n_batch`` at a time, sampling as it goes."""
        import llama_cpp

        batch = self._batch.batch
        for begin in range(0, len(work), self.n_batch):  # nothing to do for empty work
            chunk = work[begin : begin + self.n_batch]
            outputs: list[tuple[int, _Slot]] = []
            for i, (slot, token, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = len(slot.cached)
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = slot.seq_id
                batch.logits[i] = logits
                slot.cached.append(token)
                if logits:
                    outputs.append((i, slot))
            batch.n_tokens = len(chunk)
            code = llama_cpp.llama_decode(self._ctx.ctx, batch)
            self._totals["decode_calls"] += 1
            if code != 0:
                raise BackendError(f"llama_decode returned {code}")
            for index, slot in outputs:
                self._sample(slot, index)

    def _sample(self, slot: _Slot, index: int) -> None:
        import llama_cpp
        import numpy as np

        decoder = slot.decoder
        assert decoder is not None
        if decoder.sampler is None:  # greedy, like llama.cpp's greedy sampler: the first maximum
            logits = llama_cpp.llama_get_logits_ith(self._ctx.ctx, index)
            token = int(np.ctypeslib.as_array(logits, shape=(self._n_vocab,)).argmax())
        else:
            token = llama_cpp.llama_sampler_sample(decoder.sampler.sampler, self._ctx.ctx, index)
        is_eog = bool(llama_cpp.llama_vocab_is_eog(self._llama._model.vocab, token))
        done = decoder.push(token, self._llama.detokenize, is_eog=is_eog)
        if done is None and len(slot.cached) >= self.n_ctx:  # no room left to decode the token
            done = decoder.output(self._llama.detokenize(decoder.generated), "length")
        if done is None:
            slot.pending = token
        else:
            self._finish(slot, done)

    def _finish(self, slot: _Slot, outcome: BatchOutput | BaseException) -> None:
        """Resolve the slot's request; its cache stays for whoever shares its prefix next."""
        decoder = slot.decoder
        assert decoder is not None
        if decoder.sampler is not None:
            decoder.sampler.close()
        slot.decoder, slot.pending, slot.released_at = None, None, self._steps
        if isinstance(outcome, BaseException):
            decoder.job.future.set_exception(outcome)
            return
        self._totals["requests"] += 1
        self._totals["prompt_tokens"] += outcome.prompt_tokens
        self._totals["shared_prefix_tokens"] += outcome.shared_prefix_tokens
        self._totals["completion_tokens"] += outcome.completion_tokens
        job = decoder.job
        queued = (job.admitted_at or job.submitted_at) - job.submitted_at
        job.future.set_result(replace(outcome, queue_s=queued))

    def _fail_everything(self, exc: Exception) -> None:
        """After a failed step the caches are unknown: fail every request and forget the caches."""
        import llama_cpp

        error = exc if isinstance(exc, BackendError) else BackendError(f"llama.cpp batch: {exc}")
        for slot in self._slots:
            if slot.decoder is not None:
                self._finish(slot, error)
            slot.cached.clear()
        llama_cpp.llama_memory_clear(self._ctx.memory, True)
        with self._state_lock:
            while self._pending:
                job = self._pending.popleft()
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(error)
            self._idle.set()
