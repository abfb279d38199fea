"""Section "batch": batched local sub-agents against the plain llama-cpp-python loop, by answer length.

Two workloads over the same documents: the sub-agents' QA prompts (answers of a few tokens, ended
by stop sequences) and a copy task whose answers run to the token budget (16, 32, 64 tokens). Per
workload three contenders take turns, each answering the same N prompts at once: the plain loop
(what a user writes without fanout), the default backend (``n_parallel="auto"``, which batches only
where it was measured to pay) and a backend that always batches (``n_parallel=N``, default
kernels). The automatic mode must never be slower than the plain loop.

It runs in a fresh process: ggml picks its matmul kernels at the first computation in a process,
and the model loads stay out of the caller's memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from fanout.agents.backend import CompletionRequest, Prompt

from .baseline import plain_llama_loop
from .section import Section, run_probe
from .timing import median, race, ratios, spread
from .workload import bench_prompts, copy_prompts

__all__ = ["BatchSection", "BatchWorkload", "batch_probe", "measure_batch"]

LONG_ANSWER_GOAL = 1.4
"""Speedup batching must reach at 64-token answers on a CPU."""


class BatchWorkload(BaseModel):
    """One workload's figures: both batched contenders against the plain loop."""

    model_config = ConfigDict(frozen=True)

    name: str
    """"qa" (the sub-agents' prompts) or "copy" (answers run to the budget)."""
    max_tokens: int
    """The completion budget."""
    answer_tokens: float
    """Mean completion length of the automatic mode's answers."""
    auto_speedup: float
    """Median per-round ratio plain loop time / automatic mode time."""
    auto_spread: tuple[float, float]
    """Lowest and highest per-round ratio."""
    auto_batched: bool
    """Whether the automatic mode chose to batch in the timed rounds."""
    batched_speedup: float
    """Median per-round ratio plain loop time / always-batched time."""
    batched_spread: tuple[float, float]
    """Lowest and highest per-round ratio."""
    outputs_match: bool
    """The automatic mode's answers equal the plain loop's, prompt by prompt."""
    batched_outputs_match: bool
    """The always-batched answers equal the plain loop's (not guaranteed: that backend loads the
    weights for speed, not batch-invariant, so sums depend on which calls share a decode step)."""

    def summary(self) -> str:
        """One workload in a phrase."""
        mode = "batched" if self.auto_batched else "sequential"
        return (
            f"{self.name} {self.answer_tokens:.0f} tok: auto {self.auto_speedup:.2f}x ({mode}), "
            f"always-batched {self.batched_speedup:.2f}x"
        )


class BatchSection(Section):
    """Batched and automatic local sub-agents against the plain loop, by answer length."""

    model: str
    """The GGUF file."""
    n: int
    """Prompts answered together."""
    repeats: int
    """Timed rounds per workload (after one warm-up round)."""
    n_threads: int
    """llama.cpp threads."""
    gpu: str
    """What ran on a GPU: "none" on a CPU-only machine."""
    workloads: list[BatchWorkload]
    """QA first, then the copy task by budget."""

    def summary(self) -> str:
        """Every workload's speedups."""
        return f"N={self.n} on {self.gpu if self.gpu != 'none' else 'CPU'}: " + "; ".join(
            w.summary() for w in self.workloads
        )


def measure_batch(
    *, n: int = 8, budgets: tuple[int, ...] = (16, 32, 64), repeats: int = 3, quick: bool = False
) -> BatchSection:
    """Run the workloads in a fresh process (see the module docstring).

    Goal: the automatic mode >= 1.0x the plain loop for every workload, and >= 1.4x at 64-token
    answers (on a CPU).
    """
    options = {
        "n": n,
        "budgets": [b for b in budgets if b <= 32] if quick else list(budgets),
        "repeats": 1 if quick else repeats,
        "n_threads": os.cpu_count() or 1,
    }
    code = f"from {__name__} import batch_probe; batch_probe({json.dumps(options)!r})"
    data = run_probe(code, "batch measurement")
    workloads = [BatchWorkload(**w) for w in data.pop("workloads")]
    long = [w for w in workloads if w.name == "copy" and w.max_tokens >= 64]
    met = all(w.auto_speedup >= 1.0 for w in workloads) and all(
        w.auto_speedup >= LONG_ANSWER_GOAL for w in long
    )
    return BatchSection(
        goal=(
            f"automatic mode >= 1.0x the plain loop at every answer length, "
            f">= {LONG_ANSWER_GOAL}x at 64-token answers (CPU)"
        ),
        met=met,
        workloads=workloads,
        **data,
    )


def batch_probe(options_json: str) -> None:
    """Child-process body of `measure_batch`: prints one JSON line."""
    options = json.loads(options_json)
    sys.stdout.write(json.dumps(_measure(**options)) + "\n")


def _measure(*, n: int, budgets: list[int], repeats: int, n_threads: int) -> dict[str, Any]:
    from fanout.agents.llama_cpp import LlamaCppBackend

    always = LlamaCppBackend.default(n_parallel=n, batch_invariant=False, n_threads=n_threads)
    workloads = [_workload("qa", bench_prompts(n), 48, always, repeats, n_threads)]
    for budget in budgets:
        workloads.append(_workload("copy", copy_prompts(n), budget, always, repeats, n_threads))
    return {
        "model": always.name,
        "n": n,
        "repeats": repeats,
        "n_threads": n_threads,
        "gpu": "none",
        "workloads": [w.model_dump() for w in workloads],
    }


def _workload(
    name: str, prompts: list[Prompt], max_tokens: int, always: Any, repeats: int, n_threads: int
) -> BatchWorkload:
    from fanout.agents.llama_cpp import LlamaCppBackend

    auto = LlamaCppBackend.default(n_threads=n_threads)  # a fresh policy: no earlier answers
    requests = [CompletionRequest(prompt=p, max_tokens=max_tokens) for p in prompts]
    texts: dict[str, list[str]] = {}
    lengths: list[int] = []

    def plain() -> None:
        with always.lock:
            always.llama.reset()  # every run starts cold, as the batched ones do
            texts["plain"] = plain_llama_loop(always.llama, prompts, max_tokens=max_tokens)

    def through(backend: Any, key: str) -> Callable[[], None]:
        async def together() -> list[Any]:
            return list(await asyncio.gather(*(backend.complete(r) for r in requests)))

        def run() -> None:
            for engine in (always.batch_engine, auto.batch_engine):
                if engine is not None:
                    engine.clear_cache()  # or later runs would find their whole prompts cached
            with always.lock:
                always.llama.reset()
            completions = asyncio.run(together())
            texts[key] = [c.text for c in completions]
            if key == "auto":
                lengths[:] = [c.completion_tokens for c in completions]

        return run

    samples = race(
        {"plain": plain, "auto": through(auto, "auto"), "batched": through(always, "batched")},
        rounds=repeats,
    )
    to_auto = ratios(samples["plain"], samples["auto"])
    to_batched = ratios(samples["plain"], samples["batched"])
    return BatchWorkload(
        name=name,
        max_tokens=max_tokens,
        answer_tokens=sum(lengths) / len(lengths),
        auto_speedup=median(to_auto),
        auto_spread=spread(to_auto),
        auto_batched=auto.batch_engine is not None,
        batched_speedup=median(to_batched),
        batched_spread=spread(to_batched),
        outputs_match=texts["auto"] == texts["plain"],
        batched_outputs_match=texts["batched"] == texts["plain"],
    )
