"""How much batching and prefix reuse save on a local model, measured side by side.

The baseline is what a user would write without fanout: a loop of llama-cpp-python
``create_completion`` calls over the same sub-agent prompts (which already reuses the previous
call's prompt prefix). Contestants alternate and repeat, so a noisy machine hurts each alike;
medians are reported with every sample. Two workloads: the sub-agents' real extractive QA prompts
(short answers: prefill-bound) and the same prompts answered at a fixed length (decode-bound).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["measure_batch_speedup", "qa_prompts"]

GOAL = ">= 1.5x the plain sequential llama-cpp-python loop (embedded model, CPU, N=8)"

_SUPPLIERS = (
    ("Harbor Plastics", "granules", "$1,450 per tonne", "Tom Becker", "Monday"),
    ("Lumen Glass", "float glass", "$95 per square metre", "Ana Ribeiro", "Tuesday"),
    ("Northwind Metals", "steel coil", "$610 per tonne", "Priya Shah", "Wednesday"),
    ("Cedar Timber", "oak planks", "$880 per cubic metre", "Jonas Berg", "Thursday"),
    ("Delta Chemicals", "solvent", "$3.20 per litre", "Mei Lin", "Friday"),
    ("Orbit Electronics", "circuit boards", "$12 per unit", "Samir Haddad", "Monday"),
    ("Pine Paper", "cardboard", "$410 per tonne", "Claire Dubois", "Tuesday"),
    ("Summit Textiles", "cotton", "$2.10 per metre", "Kofi Mensah", "Thursday"),
)
_QUESTIONS = (
    "Who is the account manager?",
    "What does {product} cost now?",
    "On which day are deliveries made?",
    "Why did the price change?",
)


def qa_prompts(n: int) -> list[Any]:
    """`n` sub-agent prompts (`fanout.agents.subagent.task_prompt`) over short supplier updates.

    They share the sub-agent's instruction and few-shot examples, as a real fan-out does, and differ
    in document and question.
    """
    from fanout.orchestrator.prompts import task_prompt
    from fanout.orchestrator.task import SubTask

    prompts = []
    for i in range(n):
        name, product, price, manager, day = _SUPPLIERS[i % len(_SUPPLIERS)]
        document = (
            f"{name} supplier update. {name} now charges {price} for {product} because energy "
            f"costs went up in the autumn. Deliveries to the central warehouse happen every {day}. "
            f"The account manager is {manager}; orders placed before the first of the month keep "
            "the old price."
        )
        question = _QUESTIONS[(i + i // len(_SUPPLIERS)) % len(_QUESTIONS)].format(product=product)
        task = SubTask(id=f"s{i}", document_id=f"{i}.md", task=question, context=document)
        prompts.append(task_prompt(task))
    return prompts


def measure_batch_speedup(
    model_path: str | Path | None = None,
    *,
    n: int = 8,
    max_tokens: int = 48,
    long_tokens: int = 64,
    repeats: int = 3,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    quick: bool = False,
) -> dict[str, Any]:
    """Batched `LlamaCppBackend` vs a plain ``create_completion`` loop over the same `n` prompts.

    Runs in a fresh Python process: ggml picks its matmul kernels at its first computation in a
    process, and the exact batched mode needs that to happen under its settings (and the three
    model loads stay out of the caller's memory). `quick`: one repeat, shorter answers.

    Returns:
        JSON-ready numbers: ``speedup`` (plain loop / batched, QA prompts: the headline),
        ``goal_met``, medians and samples in seconds for every contestant, the decode-bound
        ``long_answers`` figures, token counts, and whether outputs matched the sequential path.
    """
    options = {
        "model_path": str(model_path) if model_path is not None else None,
        "n": n,
        "max_tokens": min(max_tokens, 24) if quick else max_tokens,
        "long_tokens": min(long_tokens, 32) if quick else long_tokens,
        "repeats": 1 if quick else repeats,
        "n_ctx": n_ctx,
        "n_threads": n_threads or os.cpu_count() or 1,
        "n_gpu_layers": n_gpu_layers,
    }
    code = f"from {__name__} import _measure_here; _measure_here({json.dumps(options)!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"batch measurement failed: {done.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _measure_here(options_json: str) -> None:
    """Child-process body of `measure_batch_speedup`: prints one JSON line."""
    options = json.loads(options_json)
    sys.stdout.write(json.dumps(_measure(**options)) + "\n")


def _measure(
    *,
    model_path: str | None,
    n: int,
    max_tokens: int,
    long_tokens: int,
    repeats: int,
    n_ctx: int,
    n_threads: int,
    n_gpu_layers: int,
) -> dict[str, Any]:
    from .backend import CompletionRequest
    from .llama_cpp import LlamaCppBackend, default_model_path
    from .prompts import render_completion, stop_sequences

    path = Path(model_path) if model_path is not None else default_model_path()
    options: dict[str, Any] = {"n_ctx": n_ctx, "n_threads": n_threads, "n_gpu_layers": n_gpu_layers}
    exact = LlamaCppBackend(path, n_parallel=n, **options)  # batch-invariant weights, loaded first
    sequential = LlamaCppBackend(path, batch_invariant=True, **options)  # same weights, one by one
    default = LlamaCppBackend(path, **options)  # llama-cpp-python's default weights
    fast = LlamaCppBackend(path, n_parallel=n, batch_invariant=False, **options)
    prompts = qa_prompts(n)
    texts: dict[str, list[str]] = {}

    def plain_loop(name: str, budget: int, *, reuse: bool, stop: bool) -> Callable[[], None]:
        llama = default.llama

        def run() -> None:
            out = []
            with default.lock:
                llama.reset()  # every run starts cold, as the batched ones do
                for prompt in prompts:
                    if not reuse:
                        llama.reset()
                    done: Any = llama.create_completion(
                        prompt=render_completion(prompt),
                        max_tokens=budget,
                        temperature=0.0,
                        stop=stop_sequences(prompt) if stop else [],
                    )
                    out.append(done["choices"][0]["text"].strip())
            texts[name] = out

        return run

    def batched(
        name: str, backend: LlamaCppBackend, budget: int, *, stop: bool
    ) -> Callable[[], None]:
        engine = backend.batch_engine
        if engine is None:
            raise RuntimeError("n_parallel > 1 built no batching engine")
        requests = [CompletionRequest(prompt=p, max_tokens=budget) for p in prompts]

        async def together() -> list[str]:
            if stop:  # through the backend, as the coordinator calls it
                calls = await asyncio.gather(*(backend.complete(r) for r in requests))
                return [c.text for c in calls]
            # No stop sequence: every answer runs to the budget (or the end of text).
            texts = [render_completion(p) for p in prompts]
            outs = await asyncio.gather(*(engine.complete(t, max_tokens=budget) for t in texts))
            return [o.text.strip() for o in outs]

        def run() -> None:
            engine.clear_cache()  # or later runs would find their whole prompts cached
            texts[name] = asyncio.run(together())

        return run

    async def one_by_one() -> list[str]:
        requests = [CompletionRequest(prompt=p, max_tokens=max_tokens) for p in prompts]
        return [(await sequential.complete(r)).text for r in requests]

    qa: dict[str, Callable[[], None]] = {
        "batched": batched("batched", exact, max_tokens, stop=True),
        "batched_default_kernels": batched("batched_default_kernels", fast, max_tokens, stop=True),
        "plain": plain_loop("plain", max_tokens, reuse=True, stop=True),
        "plain_no_reuse": plain_loop("plain_no_reuse", max_tokens, reuse=False, stop=True),
    }
    long: dict[str, Callable[[], None]] = {
        "batched": batched("long_batched", exact, long_tokens, stop=False),
        "plain": plain_loop("long_plain", long_tokens, reuse=True, stop=False),
    }
    texts["sequential"] = asyncio.run(one_by_one())  # also warms the invariant weights up
    engine = exact.batch_engine
    assert engine is not None
    before = engine.stats
    qa["batched"]()  # warm-up, and the token counts of one cold run
    cold = engine.stats
    for run in (*qa.values(), *long.values()):
        run()  # warm every contestant up once, untimed
    qa_s = _race(qa, repeats)
    long_s = _race(long, repeats)
    qa_median = {name: statistics.median(values) for name, values in qa_s.items()}
    long_median = {name: statistics.median(values) for name, values in long_s.items()}
    speedup = qa_median["plain"] / qa_median["batched"]
    return {
        "goal": GOAL,
        "goal_met": speedup >= 1.5,
        "speedup": speedup,
        "speedup_vs_plain_no_reuse": qa_median["plain_no_reuse"] / qa_median["batched"],
        "speedup_default_kernels": qa_median["plain"] / qa_median["batched_default_kernels"],
        "prefix_reuse_speedup": qa_median["plain_no_reuse"] / qa_median["plain"],
        "median_s": qa_median,
        "samples_s": qa_s,
        "outputs_identical_to_sequential": texts["batched"] == texts["sequential"],
        "outputs_match_plain_loop": texts["batched"] == texts["plain"],
        "prompt_tokens": cold.prompt_tokens - before.prompt_tokens,
        "shared_prefix_tokens": cold.shared_prefix_tokens - before.shared_prefix_tokens,
        "completion_tokens": cold.completion_tokens - before.completion_tokens,
        "long_answers": {
            "tokens_each": long_tokens,
            "speedup": long_median["plain"] / long_median["batched"],
            "median_s": long_median,
            "samples_s": long_s,
            "outputs_match_plain_loop": texts["long_batched"] == texts["long_plain"],
        },
        "model": path.name,
        "n": n,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "n_threads": n_threads,
        "n_gpu_layers": n_gpu_layers,
    }


def _race(contestants: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each contestant per round; the starting contestant rotates every round."""
    samples: dict[str, list[float]] = {name: [] for name in contestants}
    order = list(contestants.items())
    for round_ in range(repeats):
        shift = round_ % len(order)
        for name, run in order[shift:] + order[:shift]:
            gc.collect()
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return samples
