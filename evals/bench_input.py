"""Bench section 6: the input side, before any model call: reading many files, splitting long text.

Loading goes through `load_documents` as ``fanout run`` does, over a folder of small files (a
quadratic duplicate-path check took 88.7 s for 2,000 files). Splitting cuts about 1 MB of prose for
the embedded model's context with its own tokenizer, exactly as the coordinator's split node does,
next to the floor: one plain tokenizer pass over the same text. The cutter it replaced tokenized
each chunk some thirty times (22 s per MB).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from fanout.evals.suites.filler import filler
from fanout.orchestrator.budget import chunk_budget
from fanout.orchestrator.documents import load_documents
from fanout.orchestrator.request import Document, Request
from fanout.orchestrator.split import DEFAULT_OVERLAP_TOKENS, split_request

from .bench import InputSection
from .bench_framework import best

if TYPE_CHECKING:
    from fanout.agents.llama_cpp import LlamaCppBackend

__all__ = ["SplitTiming", "measure_input", "measure_loading", "measure_splitting"]

LOAD_GOAL_S = 5.0
"""Loading 10,000 small files must take less than this."""
SPLIT_GOAL_S_PER_MB = 2.2
"""A tenth of the 22 s per MB the previous cutter took (issue 9): at least 10x faster."""
_PIECE = 8192
"""Characters per call in the plain tokenizer pass (llama.cpp slows down on very long inputs)."""


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


def measure_splitting(
    chars: int, *, repeats: int, backend: LlamaCppBackend | None = None
) -> SplitTiming:
    """Splitting `chars` characters of prose for the embedded model, and one tokenizer pass."""
    from fanout.agents.llama_cpp import LlamaCppBackend

    backend = backend or LlamaCppBackend.default()
    request = Request(documents=(Document(id="long.md", text=_prose(chars)),), question="Who?")
    budget = chunk_budget(backend, request, max_tokens=128) or 0
    text = request.documents[0].text
    timing = SplitTiming(chunk_tokens=budget, chunks=0, split_s=[], tokenize_s=[])
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
    full_size = n_files >= 10_000 and split_chars >= 1_000_000
    return InputSection(
        goal=(
            f"10,000 small files load in < {LOAD_GOAL_S:g} s; splitting takes "
            f"<= {SPLIT_GOAL_S_PER_MB:g} s/MB (10x faster than the old 22 s/MB)"
        ),
        met=(load_s < LOAD_GOAL_S and split_s_per_mb <= SPLIT_GOAL_S_PER_MB) if full_size else None,
        n_files=n_files,
        load_s=load_s,
        split_mb=mb,
        chunk_tokens=split.chunk_tokens,
        chunks=split.chunks,
        split_s_per_mb=split_s_per_mb,
        tokenize_s_per_mb=best(split.tokenize_s) / mb,
        samples_s={"load": load_samples, "split": split.split_s, "tokenize": split.tokenize_s},
    )
