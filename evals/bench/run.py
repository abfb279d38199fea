"""Running the bench: the chosen sections, in order, each at the size its figure is quoted for.

Sections import their measurements lazily (the model sections load llama.cpp), and one section that
cannot run, or fails, is recorded with its reason while the others still report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from .report import SECTIONS, BenchReport, SectionName, load_average, this_machine
from .section import Section

__all__ = ["DEFAULT_SECTIONS", "run_bench"]

DEFAULT_SECTIONS: tuple[SectionName, ...] = tuple(s for s in SECTIONS if s != "scale")
"""What ``fanout bench`` runs without ``--scale``: everything but the minutes-long scale runs."""


def _plan(name: SectionName, quick: bool) -> Callable[[], Section]:
    if name == "overhead":
        from .overhead import measure_overhead

        return lambda: measure_overhead(100, repeats=2 if quick else 5)
    if name == "fanout":
        from .fan_out import measure_fanout

        return lambda: measure_fanout(
            64, max_concurrency=16, delay_s=0.1 if quick else 0.25, repeats=1 if quick else 5
        )
    if name == "local":
        from .local import measure_local_throughput

        return lambda: measure_local_throughput(
            4 if quick else 16, max_tokens=16 if quick else 32, repeats=1 if quick else 5
        )
    if name == "memory":
        from .memory import measure_memory

        return lambda: measure_memory((1, 10, 20) if quick else (1, 100, 200))
    if name == "batch":
        from .batch import measure_batch

        return lambda: measure_batch(quick=quick)
    if name == "input":
        from .inputs import measure_input

        return lambda: measure_input(
            n_files=1_000 if quick else 10_000,
            split_chars=100_000 if quick else 1_000_000,
            repeats=1 if quick else 3,
        )
    from .scale import measure_scale

    return lambda: measure_scale((200, 2_000) if quick else (1_000, 10_000, 100_000))


def run_bench(
    *,
    quick: bool = False,
    sections: Collection[SectionName] = DEFAULT_SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run the chosen sections; one that cannot run (no model, no server extra) says why.

    Args:
        quick: smaller sizes and fewer repeats, for a smoke run.
        sections: which sections to run.
        progress: called with a line before each section (the CLI prints it to stderr).
    """
    started, clock, load = datetime.now(UTC), time.perf_counter(), load_average()
    results: dict[str, Section] = {}
    skipped: dict[str, str] = {}
    for name in SECTIONS:
        if name not in sections:
            skipped[name] = "not selected"
            continue
        if progress is not None:
            progress(f"bench: {name}")
        try:
            results[name] = _plan(name, quick)()
        except Exception as exc:  # one broken section must not cost the others' figures
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return BenchReport(
        started_at=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - clock,
        quick=quick,
        machine=this_machine(load),
        skipped=skipped,
        **results,  # type: ignore[arg-type]
    )
