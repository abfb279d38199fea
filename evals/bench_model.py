"""Bench sections 3 to 5, on the embedded model: local throughput, peak memory, batched decoding.

Throughput compares the coordinator with a plain llama-cpp-python loop over the identical prompts
(and checks both wrote the same text); memory runs whole requests in fresh processes, so a model
loaded by one size cannot hide in the other's figure; the batched mode reports its own figure.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from fanout.agents.prompts import render_completion, stop_sequences
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.prompts import task_prompt
from fanout.orchestrator.split import split_request

from .bench import BatchSection, LocalSection, MemorySection
from .bench_framework import bench_request, best

if TYPE_CHECKING:
    from fanout.agents.llama_cpp import LlamaCppBackend

__all__ = ["measure_batch", "measure_local_throughput", "measure_memory", "memory_probe"]


def measure_local_throughput(
    n: int = 16,
    *,
    max_tokens: int = 32,
    repeats: int = 2,
    backend: LlamaCppBackend | None = None,
) -> LocalSection:
    """The coordinator on the embedded model vs a plain llama-cpp-python loop, same prompts."""
    from fanout.agents.llama_cpp import LlamaCppBackend

    backend = backend or LlamaCppBackend.default()
    policy = CallPolicy(max_concurrency=16, max_tokens=max_tokens)
    coordinator = Coordinator(backend, synthesis="collect", policy=policy)
    request = bench_request(n)
    prompts = [task_prompt(task) for task in split_request(request)]
    outputs: dict[str, list[str]] = {}

    def plain_loop() -> None:
        texts = []
        with backend.lock:
            for prompt in prompts:
                out = backend.llama.create_completion(
                    prompt=render_completion(prompt),
                    max_tokens=max_tokens,
                    temperature=0.0,
                    stop=stop_sequences(prompt),
                )
                texts.append(out["choices"][0]["text"].strip())
        outputs["plain"] = texts

    def coordinated() -> None:
        result = coordinator.run(request)
        if not result.ok:
            raise RuntimeError(f"coordinator run failed: {result.failed[0].error}")
        outputs["coordinator"] = [r.output or "" for r in result.sub_results]

    def time_it(run: Callable[[], None]) -> float:
        gc.collect()
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    backend.llama.create_completion(prompt="Warm up.", max_tokens=1)  # first-call allocations
    samples: dict[str, list[float]] = {"coordinator": [], "plain": []}
    for round_ in range(repeats):
        order = [("coordinator", coordinated), ("plain", plain_loop)]
        for name, run in order if round_ % 2 == 0 else order[::-1]:  # alternate who goes first
            samples[name].append(time_it(run))
    ratio = best(samples["plain"]) / best(samples["coordinator"])
    return LocalSection(
        goal=">= 0.95x the plain llama-cpp-python loop's throughput",
        met=ratio >= 0.95,
        model=backend.name,
        n=n,
        max_tokens=max_tokens,
        coordinator_s=best(samples["coordinator"]),
        plain_s=best(samples["plain"]),
        ratio=ratio,
        outputs_match=outputs["coordinator"] == outputs["plain"],
        samples_s=samples,
    )


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def memory_probe(n: int, max_tokens: int, mode: str = "coordinator") -> None:
    """Child-process entry point: one run on the embedded model, then its peak RSS as JSON.

    mode "coordinator" answers `bench_request(n)` with the coordinator; "plain" runs the same
    prompts through llama-cpp-python in a loop, the baseline for what the runtime itself grows.
    """
    import llama_cpp

    from fanout.agents.llama_cpp import LlamaCppBackend

    loads = 0
    original_init = llama_cpp.Llama.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal loads
        loads += 1
        original_init(self, *args, **kwargs)

    llama_cpp.Llama.__init__ = counting_init  # type: ignore[method-assign]
    try:
        backend = LlamaCppBackend.default()
        request = bench_request(n)
        ok = True
        if mode == "plain":
            for task in split_request(request):
                prompt = task_prompt(task)
                backend.llama.create_completion(
                    prompt=render_completion(prompt),
                    max_tokens=max_tokens,
                    temperature=0.0,
                    stop=stop_sequences(prompt),
                )
        else:
            policy = CallPolicy(max_concurrency=16, max_tokens=max_tokens)
            ok = Coordinator(backend, synthesis="collect", policy=policy).run(request).ok
    finally:
        llama_cpp.Llama.__init__ = original_init  # type: ignore[method-assign]
    report = {"peak_rss_mb": _peak_rss_mb(), "model_loads": loads, "ok": ok}
    sys.stdout.write(json.dumps(report) + "\n")


def _probe(n: int, max_tokens: int, mode: str) -> dict[str, Any]:
    """One probe process. Probes run one at a time: llama.cpp's threads, oversubscribed, crawl."""
    code = f"from {__name__} import memory_probe; memory_probe({n}, {max_tokens}, {mode!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {mode} N={n} failed: {done.stderr.strip()[-500:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not data["ok"]:
        raise RuntimeError(f"memory probe {mode} N={n}: some sub-agents failed")
    return data


def measure_memory(
    n_small: int = 1, n_large: int = 100, *, max_tokens: int = 16, plain_baseline: bool = True
) -> MemorySection:
    """Peak RSS of whole runs at two sizes, each in a fresh process so neither sees the other.

    With `plain_baseline`, a third process runs the large run's prompts through a plain loop.
    """
    small = _probe(n_small, max_tokens, "coordinator")
    large = _probe(n_large, max_tokens, "coordinator")
    plain = _probe(n_large, max_tokens, "plain") if plain_baseline else None
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    return MemorySection(
        goal="one model load; growth <= 50 MB",
        met=small["model_loads"] == 1 and large["model_loads"] == 1 and growth <= 50,
        n_small=n_small,
        n_large=n_large,
        max_tokens=max_tokens,
        peak_rss_small_mb=small["peak_rss_mb"],
        peak_rss_large_mb=large["peak_rss_mb"],
        growth_mb=growth,
        model_loads_small=small["model_loads"],
        model_loads_large=large["model_loads"],
        peak_rss_plain_large_mb=plain["peak_rss_mb"] if plain is not None else None,
    )


_BATCH_GOAL = ">= 1.5x the sequential loop (embedded model, CPU, N=8)"


def _as_json(value: object) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return json.loads(json.dumps(asdict(value), default=str))  # type: ignore[no-any-return]
    if isinstance(value, dict):
        return json.loads(json.dumps(value, default=str))  # type: ignore[no-any-return]
    return {"value": json.loads(json.dumps(value, default=str))}


def measure_batch(*, quick: bool = False) -> BatchSection:
    """Call ``fanout.agents.llama_batch.measure_batch_speedup`` if this build has it; never invent one."""
    try:
        module = importlib.import_module("fanout.agents.llama_batch")
    except ModuleNotFoundError as exc:
        if exc.name != "fanout.agents.llama_batch":
            raise
        return BatchSection(
            goal=_BATCH_GOAL,
            met=None,
            available=False,
            note="fanout.agents.llama_batch is not built",
        )
    measure = getattr(module, "measure_batch_speedup", None)
    if measure is None:
        return BatchSection(
            goal=_BATCH_GOAL,
            met=None,
            available=False,
            note="fanout.agents.llama_batch has no measure_batch_speedup",
        )
    kwargs = {"quick": quick} if "quick" in inspect.signature(measure).parameters else {}
    result = _as_json(measure(**kwargs))
    met = result.get("goal_met", result.get("met"))
    speedup = result.get("speedup")
    note = f"speedup {speedup:.2f}x" if isinstance(speedup, int | float) else ""
    return BatchSection(
        goal=str(result.get("goal", _BATCH_GOAL)),
        met=met if isinstance(met, bool) else None,
        available=True,
        note=note,
        result=result,
    )
