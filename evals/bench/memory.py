"""Section "memory": peak resident memory of whole runs on the embedded model, one process each.

A model loaded by one run cannot hide in another's figure when each size runs in a fresh process.
Three coordinator sizes show the growth from one sub-agent to N and whether it stays flat beyond
(a sub-agent must not leave memory behind); a plain llama-cpp-python loop over N prompts shows
what the runtime alone grows.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy

from .baseline import plain_llama_loop
from .section import Section, run_probe
from .workload import bench_prompts, bench_request

__all__ = ["MemorySection", "measure_memory", "memory_probe"]

_MB = 1e6 / 2**20
"""One megabyte (the goals' unit) in MiB (the figures' unit)."""

ProbeMode = Literal["coordinator", "plain"]


class MemorySection(Section):
    """Peak RSS of coordinator runs at three sizes, and of a plain loop at the middle one."""

    sizes: tuple[int, int, int]
    """Sub-agents per run: one, N, and a larger size to check that growth stops."""
    max_tokens: int
    """Completion budget per call."""
    peak_rss_mb: tuple[float, float, float]
    """Peak RSS of each size's process, MiB."""
    growth_mb: float
    """Peak at N minus peak at one sub-agent."""
    growth_beyond_mb: float
    """Peak at the largest size minus peak at N: flat means sub-agents leave nothing behind."""
    model_loads: tuple[int, int, int]
    """llama_cpp.Llama instances each process created."""
    peak_rss_plain_mb: float | None = None
    """Peak RSS of a plain llama-cpp-python loop over N prompts (None: not run)."""

    def summary(self) -> str:
        """The peaks, both growths, the model loads and the plain loop's peak."""
        one, n, big = self.sizes
        peaks = ", ".join(
            f"N={s}: {p:.0f}" for s, p in zip(self.sizes, self.peak_rss_mb, strict=True)
        )
        plain = self.peak_rss_plain_mb
        baseline = f"; plain loop at N={n}: {plain:.0f} MiB" if plain is not None else ""
        return (
            f"{peaks} MiB: {self.growth_mb:+.1f} MiB from N={one} to {n}, "
            f"{self.growth_beyond_mb:+.1f} from {n} to {big}; model loads "
            f"{'/'.join(map(str, self.model_loads))}{baseline}"
        )


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def memory_probe(n: int, max_tokens: int, mode: ProbeMode = "coordinator") -> None:
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
        ok = True
        if mode == "plain":
            with backend.lock:
                plain_llama_loop(backend.llama, bench_prompts(n), max_tokens=max_tokens)
        else:
            policy = CallPolicy(max_concurrency=16, max_tokens=max_tokens)
            ok = Coordinator(backend, synthesis="collect", policy=policy).run(bench_request(n)).ok
    finally:
        llama_cpp.Llama.__init__ = original_init  # type: ignore[method-assign]
    report = {"peak_rss_mb": _peak_rss_mb(), "model_loads": loads, "ok": ok}
    sys.stdout.write(json.dumps(report) + "\n")


def _probe(n: int, max_tokens: int, mode: ProbeMode) -> dict[str, Any]:
    """One probe process. Probes run one at a time: llama.cpp's threads, oversubscribed, crawl."""
    code = f"from {__name__} import memory_probe; memory_probe({n}, {max_tokens}, {mode!r})"
    data = run_probe(code, f"memory probe {mode} N={n}")
    if not data["ok"]:
        raise RuntimeError(f"memory probe {mode} N={n}: some sub-agents failed")
    return data


def measure_memory(
    sizes: tuple[int, int, int] = (1, 100, 200),
    *,
    max_tokens: int = 16,
    plain_baseline: bool = True,
) -> MemorySection:
    """Peak RSS of whole runs at three sizes, each in a fresh process so none sees another.

    Goal: one model load per process; at most 50 MB (47.7 MiB) more at the middle size than at
    one sub-agent, and at most 10 MB (9.5 MiB) more again at the largest size (flat per sub-agent).
    """
    probes = [_probe(n, max_tokens, "coordinator") for n in sizes]
    plain = _probe(sizes[1], max_tokens, "plain") if plain_baseline else None
    peaks = tuple(p["peak_rss_mb"] for p in probes)
    loads = tuple(p["model_loads"] for p in probes)
    growth, beyond = peaks[1] - peaks[0], peaks[2] - peaks[1]
    return MemorySection(
        goal="one model load; growth <= 50 MB to N, <= 10 MB more beyond",
        met=all(n == 1 for n in loads) and growth <= 50 * _MB and beyond <= 10 * _MB,
        sizes=sizes,
        max_tokens=max_tokens,
        peak_rss_mb=(peaks[0], peaks[1], peaks[2]),
        growth_mb=growth,
        growth_beyond_mb=beyond,
        model_loads=(loads[0], loads[1], loads[2]),
        peak_rss_plain_mb=plain["peak_rss_mb"] if plain is not None else None,
    )
