"""Section "input": the input side, before any model call: reading many files, splitting long text.

Loading goes through `load_documents` as ``fanout run`` does, over a folder of small files (a
quadratic duplicate-path check took 88.7 s for 2,000 files). Splitting cuts about 1 MB of prose for
the embedded model's context with its own tokenizer, exactly as the coordinator's split node does,
next to two baselines measured in the same run: the cutter it replaced (a binary search with the
token counter for every cut, kept here; 22 s per MB when issue 9 was filed), on a tenth of the text,
and the floor, one plain tokenizer pass over the whole text.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from fanout.evals.suites.filler import filler
from fanout.orchestrator.documents import load_documents
from fanout.orchestrator.request import Document, Request
from fanout.orchestrator.split import (
    DEFAULT_OVERLAP_TOKENS,
    CountTokens,
    chunk_budget,
    split_request,
)

from .section import Section
from .timing import best

if TYPE_CHECKING:
    from fanout.agents.llama_cpp import LlamaCppBackend

__all__ = [
    "InputSection",
    "SplitTiming",
    "measure_input",
    "measure_loading",
    "measure_splitting",
    "search_cutter",
]

LOAD_GOAL_S = 5.0
"""Loading 10,000 small files must take less than this."""
SPLIT_GOAL_SPEEDUP = 10.0
"""Splitting must be at least this much faster than the search cutter it replaced."""
_PIECE = 8192
"""Characters per call in the plain tokenizer pass (llama.cpp slows down on very long inputs)."""


class InputSection(Section):
    """The input side before any model call: loading many small files, splitting long text."""

    n_files: int
    """Files in the folder loaded."""
    load_s: float
    """Best wall time of `load_documents` over the folder."""
    split_mb: float
    """Millions of characters split."""
    chunk_tokens: int
    """The chunk budget (the coordinator's own, for the embedded model)."""
    chunks: int
    """Chunks the text became."""
    split_s_per_mb: float
    """Best wall seconds of the split, per million characters."""
    search_s_per_mb: float
    """The same for the search cutter fanout used before (timed on a tenth of the text)."""
    speedup: float
    """search_s_per_mb / split_s_per_mb."""
    tokenize_s_per_mb: float
    """Best wall seconds of one plain tokenizer pass over the same text, per million characters:
    the floor for any cutter that checks its chunks with the tokenizer."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds: load, split, search, tokenize."""

    def summary(self) -> str:
        """Both figures and the tokenizer floor."""
        return (
            f"{self.n_files:,} files loaded in {self.load_s:.2f} s; {self.split_mb:g} MB split into "
            f"{self.chunks} chunks of <= {self.chunk_tokens} tokens at {self.split_s_per_mb:.2f} s/MB "
            f"vs {self.search_s_per_mb:.1f} s/MB for the old search cutter = {self.speedup:.1f}x "
            f"(one plain tokenizer pass: {self.tokenize_s_per_mb:.2f} s/MB)"
        )


def measure_loading(n_files: int, *, repeats: int) -> tuple[float, list[float]]:
    """Best wall seconds of `load_documents` over a folder of `n_files` small files, and samples."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as folder:
        for i in range(n_files):
            Path(folder, f"memo-{i:05d}.md").write_text(f"Memo {i}: the code is K{i:05d}.\n")
        for _ in range(repeats):
            started = time.perf_counter()
            documents = load_documents([folder])
            samples.append(time.perf_counter() - started)
            if len(documents) != n_files:
                raise RuntimeError(f"loaded {len(documents)} of {n_files} files")
    return best(samples), samples


def _prose(chars: int) -> str:
    rng = random.Random(0)
    parts: list[str] = []
    size = 0
    while size < chars:
        paragraph = " ".join(filler(rng, 200)) + "\n\n"
        parts.append(paragraph)
        size += len(paragraph)
    return "".join(parts)[:chars]


_BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


def search_cutter(text: str, *, max_tokens: int, overlap_tokens: int, count: CountTokens) -> int:
    """The baseline: fanout's cutter before issue 9, which searched for every cut with `count`.

    Returns the number of chunks. Kept only to measure against; it is not used to split.
    """
    chunks, start, last_end = 0, 0, 0
    while True:
        hi = min(len(text), start + max_tokens * 16)
        end = hi
        if count(text[start:hi]) > max_tokens:  # largest end that fits, by binary search
            lo = start + 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if count(text[start:mid]) <= max_tokens else (lo, mid - 1)
            end = lo
        if end < len(text):  # back to a boundary in the last 30% of the window
            floor = start + int((end - start) * 0.7)
            for boundary in _BOUNDARIES:
                at = text.rfind(boundary, floor, end)
                if at > start:
                    end = at + len(boundary)
                    break
        end = max(end, last_end + 1) if chunks else end
        chunks, last_end = chunks + 1, end
        if end >= len(text):
            return chunks
        lo, hi = start + 1, end
        while lo < hi:  # the overlap's start: smallest s with count(text[s:end]) <= overlap
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if count(text[mid:end]) <= overlap_tokens else (mid + 1, hi)
        space = text.find(" ", lo, end)
        start = max(space + 1 if space != -1 else lo, start + 1)


class SplitTiming(NamedTuple):
    """What `measure_splitting` measured."""

    chunk_tokens: int
    """The chunk budget the coordinator derives for this model and a short question."""
    chunks: int
    """Sub-tasks the text became."""
    split_s: list[float]
    """Wall seconds of each split."""
    tokenize_s: list[float]
    """Wall seconds of each plain tokenizer pass over the same text."""
    baseline_chars: int
    """Characters of the same text the search cutter was timed on (it is slow)."""
    search_s: list[float]
    """Wall seconds of each search-cutter run over the first `baseline_chars` characters."""


def measure_splitting(
    chars: int,
    *,
    repeats: int,
    baseline_chars: int | None = None,
    backend: LlamaCppBackend | None = None,
) -> SplitTiming:
    """Splitting `chars` characters of prose for the embedded model, and one tokenizer pass."""
    from fanout.agents.llama_cpp import LlamaCppBackend

    backend = backend or LlamaCppBackend.default()
    request = Request(documents=(Document(id="long.md", text=_prose(chars)),), question="Who?")
    budget = chunk_budget(backend, request, max_tokens=128) or 0
    text = request.documents[0].text
    baseline = text[: baseline_chars or chars // 10]
    timing = SplitTiming(
        chunk_tokens=budget,
        chunks=0,
        split_s=[],
        tokenize_s=[],
        baseline_chars=len(baseline),
        search_s=[],
    )
    for _ in range(repeats):
        started = time.perf_counter()
        tasks = split_request(
            request,
            chunk_tokens=budget,
            overlap_tokens=DEFAULT_OVERLAP_TOKENS,
            count_tokens=backend.count_tokens,
            token_offsets=backend.token_offsets,
        )
        timing.split_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        for at in range(0, len(text), _PIECE):
            backend.count_tokens(text[at : at + _PIECE])
        timing.tokenize_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        search_cutter(
            baseline,
            max_tokens=budget,
            overlap_tokens=DEFAULT_OVERLAP_TOKENS,
            count=backend.count_tokens,
        )
        timing.search_s.append(time.perf_counter() - started)
        timing = timing._replace(chunks=len(tasks))
    return timing


def measure_input(
    *,
    n_files: int = 10_000,
    split_chars: int = 1_000_000,
    repeats: int = 3,
    backend: LlamaCppBackend | None = None,
) -> InputSection:
    """Both measurements, against their goals (a verdict only at the full sizes)."""
    load_s, load_samples = measure_loading(n_files, repeats=repeats)
    split = measure_splitting(split_chars, repeats=repeats, backend=backend)
    mb = split_chars / 1e6
    split_s_per_mb = best(split.split_s) / mb
    search_s_per_mb = best(split.search_s) / (split.baseline_chars / 1e6)
    speedup = search_s_per_mb / split_s_per_mb
    full_size = n_files >= 10_000 and split_chars >= 1_000_000
    return InputSection(
        goal=(
            f"10,000 small files load in < {LOAD_GOAL_S:g} s; splitting >= "
            f"{SPLIT_GOAL_SPEEDUP:g}x faster than the search cutter it replaced"
        ),
        met=(load_s < LOAD_GOAL_S and speedup >= SPLIT_GOAL_SPEEDUP) if full_size else None,
        n_files=n_files,
        load_s=load_s,
        split_mb=mb,
        chunk_tokens=split.chunk_tokens,
        chunks=split.chunks,
        split_s_per_mb=split_s_per_mb,
        search_s_per_mb=search_s_per_mb,
        speedup=speedup,
        tokenize_s_per_mb=best(split.tokenize_s) / mb,
        samples_s={
            "load": load_samples,
            "split": split.split_s,
            "search": split.search_s,
            "tokenize": split.tokenize_s,
        },
    )
