"""``fanout bench``: what isolation costs, each figure measured next to its baseline in one run.

1. overhead: the coordinator on a zero-latency scripted backend vs a bare LangGraph Send graph and a
   plain asyncio loop making the same calls (goal <= 1 ms per sub-agent);
2. fan-out: sub-agents against a loopback OpenAI-compatible server answering after a fixed delay, vs
   the ideal ceil(N / concurrency) x delay (goal <= 1.1x);
3. local throughput: the coordinator on the embedded model vs a plain llama-cpp-python loop over the
   identical prompts (goal >= 0.95x);
4. memory: peak RSS of whole runs at N=1 and N=100, each in its own process (goal: one model load,
   growth <= 50 MB);
5. batched llama.cpp sub-agents, when ``fanout.agents.llama_batch`` provides ``measure_batch_speedup``;
6. input: loading 10,000 small files (goal < 5 s) and splitting 1 MB of text for the embedded model
   with its tokenizer, next to the search cutter it replaced (goal >= 10x faster) and one plain
   tokenizer pass.

This module holds the report and the command; the measurements live in `fanout.evals.bench_framework`
(1, 2: the framework against fakes), `fanout.evals.bench_model` (3-5: on the embedded model) and
`fanout.evals.bench_input` (6), imported
only when a bench runs so that ``fanout --help`` stays fast. Timings keep the best of several runs:
other processes can only add time, never remove it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from abc import abstractmethod
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SECTIONS",
    "BatchSection",
    "BenchReport",
    "FanoutSection",
    "InputSection",
    "LocalSection",
    "Machine",
    "MemorySection",
    "OverheadSection",
    "Section",
    "run_bench",
]

SectionName = Literal["overhead", "fanout", "local", "memory", "batch", "input"]
SECTIONS: tuple[SectionName, ...] = ("overhead", "fanout", "local", "memory", "batch", "input")


# -- report ------------------------------------------------------------------------------------


class Section(BaseModel):
    """What every section records: its goal and whether the measurement met it."""

    model_config = ConfigDict(frozen=True)

    goal: str
    """The target, in words."""
    met: bool | None
    """Whether the measurement met it (None: no verdict possible)."""

    @abstractmethod
    def summary(self) -> str:
        """The measurement in one line, for the table."""


class OverheadSection(Section):
    """Framework cost per sub-agent when the model costs nothing."""

    n: int
    """Sub-agents per run."""
    repeats: int
    """Timed runs per contender (after one warm-up run)."""
    coordinator_ms: float
    """fanout's Coordinator: best wall time per sub-agent, ms."""
    langgraph_ms: float
    """A bare LangGraph graph fanning out with Send: best wall time per sub-agent, ms."""
    asyncio_ms: float
    """A plain asyncio gather under a semaphore: best wall time per sub-agent, ms."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds, per contender."""

    def summary(self) -> str:
        """Per-sub-agent cost of the three contenders."""
        return (
            f"N={self.n}: coordinator {self.coordinator_ms:.3f} ms/sub-agent; "
            f"bare LangGraph Send {self.langgraph_ms:.3f}; asyncio loop {self.asyncio_ms:.3f}"
        )


class FanoutSection(Section):
    """How close concurrent sub-agents come to the ideal wall time against a fixed-delay server."""

    n: int
    """Sub-agents per run."""
    max_concurrency: int
    """Calls in flight at once."""
    delay_s: float
    """The server's fixed answer delay."""
    ideal_s: float
    """ceil(n / max_concurrency) x delay_s."""
    wall_s: float
    """Best wall time of a whole coordinator run."""
    ratio: float
    """wall_s / ideal_s."""
    asyncio_wall_s: float
    """Best wall time of a plain asyncio loop making the same calls through the same backend: the
    floor set by the HTTP client and server, without fanout's coordinator."""
    excess_ms_per_call: float
    """(wall_s - ideal_s) / n in ms: the cost per call beyond the model's own delay."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds, per contender."""

    def summary(self) -> str:
        """Wall time against the ideal, and the client-only floor."""
        return (
            f"N={self.n}, concurrency {self.max_concurrency}, delay {self.delay_s:g} s: "
            f"wall {self.wall_s:.3f} s vs ideal {self.ideal_s:.3f} s = {self.ratio:.3f}x "
            f"(+{self.excess_ms_per_call:.1f} ms/call; plain asyncio loop over the same client "
            f"{self.asyncio_wall_s:.3f} s)"
        )


class LocalSection(Section):
    """The coordinator's throughput on the in-process model vs a plain llama-cpp-python loop."""

    model: str
    """The GGUF file."""
    n: int
    """Sub-agents (prompts) per run."""
    max_tokens: int
    """Completion budget per call."""
    coordinator_s: float
    """Best wall time of a coordinator run."""
    plain_s: float
    """Best wall time of the plain loop over the same prompts."""
    ratio: float
    """plain_s / coordinator_s: the coordinator's throughput relative to the plain loop."""
    outputs_match: bool
    """Both produced the same text for every prompt (temperature 0): the work was identical."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds, per contender."""

    def summary(self) -> str:
        """Both wall times and their ratio."""
        same = "identical outputs" if self.outputs_match else "OUTPUTS DIFFER"
        return (
            f"N={self.n}, max_tokens {self.max_tokens}: coordinator {self.coordinator_s:.2f} s "
            f"vs plain loop {self.plain_s:.2f} s = {self.ratio:.3f}x ({same})"
        )


class MemorySection(Section):
    """Peak resident memory of whole runs on the embedded model, each in a fresh process."""

    n_small: int
    """Sub-agents in the small run."""
    n_large: int
    """Sub-agents in the large run."""
    max_tokens: int
    """Completion budget per call."""
    peak_rss_small_mb: float
    """Peak RSS of the small run's process, MiB."""
    peak_rss_large_mb: float
    """Peak RSS of the large run's process, MiB."""
    growth_mb: float
    """peak_rss_large_mb - peak_rss_small_mb."""
    model_loads_small: int
    """llama_cpp.Llama instances created by the small run."""
    model_loads_large: int
    """llama_cpp.Llama instances created by the large run."""
    peak_rss_plain_large_mb: float | None = None
    """Peak RSS of a plain llama-cpp-python loop over the large run's prompts (None: not run):
    how much of the growth the model runtime shows without fanout."""

    def summary(self) -> str:
        """Both peaks, the growth, the model loads, and the plain loop's peak."""
        plain = self.peak_rss_plain_large_mb
        baseline = f"; plain loop at N={self.n_large}: {plain:.0f} MiB" if plain is not None else ""
        return (
            f"N={self.n_small}: {self.peak_rss_small_mb:.0f} MiB, N={self.n_large}: "
            f"{self.peak_rss_large_mb:.0f} MiB ({self.growth_mb:+.1f} MiB); model loads "
            f"{self.model_loads_small} and {self.model_loads_large}{baseline}"
        )


class BatchSection(Section):
    """The batched llama.cpp mode's figure, as its own measurement function reports it."""

    available: bool
    """False when this build has no batched mode to measure."""
    note: str = ""
    """Why it is unavailable, or what was measured."""
    result: dict[str, Any] | None = None
    """What ``fanout.agents.llama_batch.measure_batch_speedup`` returned, as JSON."""

    def summary(self) -> str:
        """The batched mode's own headline, or why there is none."""
        if not self.available:
            return f"not available: {self.note}"
        return self.note or json.dumps(self.result)


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


class Machine(BaseModel):
    """Where the numbers were taken."""

    model_config = ConfigDict(frozen=True)

    platform: str
    """OS and architecture."""
    cpu: str
    """CPU model name, when the OS tells."""
    cpu_count: int
    """Logical CPUs visible to this process."""
    python: str
    """Interpreter version."""
    llama_cpp_python: str
    """llama-cpp-python version."""
    load_avg: tuple[float, float] | None = None
    """1-minute load average when the bench started and when it ended: above the CPU count,
    other processes were competing for the cores and the timings are pessimistic."""


class BenchReport(BaseModel):
    """Everything one ``fanout bench`` run measured; sections that could not run say why."""

    model_config = ConfigDict(frozen=True)

    started_at: str
    """UTC ISO time the run started."""
    duration_s: float
    """Wall time of the whole bench."""
    quick: bool
    """Smaller sizes and fewer repeats (a smoke run, not the figures to quote)."""
    machine: Machine
    """Where it ran."""
    overhead: OverheadSection | None = None
    """Framework overhead per sub-agent."""
    fanout: FanoutSection | None = None
    """Fan-out efficiency against a fixed-delay server."""
    local: LocalSection | None = None
    """Local throughput against a plain llama-cpp-python loop."""
    memory: MemorySection | None = None
    """Peak RSS at small and large N."""
    batch: BatchSection | None = None
    """The batched llama.cpp mode."""
    input: InputSection | None = None
    """Loading many files and splitting long text."""
    skipped: dict[str, str] = Field(default_factory=dict)
    """Sections that did not run or failed, with the reason."""

    @property
    def all_met(self) -> bool:
        """Every section that ran and gave a verdict met its goal."""
        return all(s.met is not False for s in self._sections().values() if s is not None)

    def _sections(self) -> dict[str, Section | None]:
        return {name: getattr(self, name) for name in SECTIONS}

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(section, measured, goal, verdict) per section, for a table."""
        rows = []
        for name, section in self._sections().items():
            if section is None:
                reason = self.skipped.get(name, "not run")
                rows.append((name, f"not available: {reason}", "", "-"))
                continue
            verdict = {True: "met", False: "MISSED", None: "-"}[section.met]
            rows.append((name, section.summary(), section.goal, verdict))
        return rows


# -- the whole bench -----------------------------------------------------------------------------


def _machine(load_at_start: float | None = None) -> Machine:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        llama_version = version("llama_cpp_python")
    except PackageNotFoundError:
        llama_version = "not installed"
    return Machine(
        platform=platform.platform(),
        cpu=cpu or "unknown",
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
        python=platform.python_version(),
        llama_cpp_python=llama_version,
        load_avg=(load_at_start, _load()) if load_at_start is not None else None,
    )


def _load() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else 0.0


def run_bench(
    *,
    quick: bool = False,
    sections: Collection[SectionName] = SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run the chosen sections; one that cannot run (no model, no server extra) says why.

    Args:
        quick: smaller sizes and fewer repeats, for a smoke run.
        sections: which sections to run.
        progress: called with a line before each section (the CLI prints it to stderr).
    """
    from . import bench_framework as framework
    from . import bench_input as inputs
    from . import bench_model as model

    started, clock, load = datetime.now(UTC), time.perf_counter(), _load()
    plans: dict[SectionName, Callable[[], Section]] = {
        "overhead": lambda: framework.measure_overhead(100, repeats=2 if quick else 5),
        "fanout": lambda: framework.measure_fanout(
            64, max_concurrency=16, delay_s=0.1 if quick else 0.25, repeats=1 if quick else 3
        ),
        "local": lambda: model.measure_local_throughput(
            4 if quick else 16, max_tokens=16 if quick else 32, repeats=1 if quick else 3
        ),
        "memory": lambda: model.measure_memory(1, 20 if quick else 100),
        "batch": lambda: model.measure_batch(quick=quick),
        "input": lambda: inputs.measure_input(
            n_files=1_000 if quick else 10_000,
            split_chars=100_000 if quick else 1_000_000,
            repeats=1 if quick else 3,
        ),
    }
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in SECTIONS:
        if name not in sections:
            skipped[name] = "not selected"
            continue
        if progress is not None:
            progress(f"bench: {name}")
        try:
            results[name] = plans[name]()
        except Exception as exc:  # one broken section must not cost the others' figures
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return BenchReport(
        started_at=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - clock,
        quick=quick,
        machine=_machine(load),
        skipped=skipped,
        **results,
    )


# -- command -------------------------------------------------------------------------------------


def bench_command(
    out: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path("bench.json"),
    quick: Annotated[bool, typer.Option(help="Smaller sizes, fewer repeats: a smoke run.")] = False,
) -> int:
    """Measure overhead, fan-out efficiency, local throughput and memory; write JSON and a table."""
    from rich.console import Console
    from rich.table import Table

    from fanout.agents.errors import UserError
    from fanout.agents.logs import configure_logging

    configure_logging(level="warning")
    try:  # fail before minutes of measuring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror}") from None
    err = Console(stderr=True)
    report = run_bench(quick=quick, progress=lambda line: err.print(line, style="dim"))
    out.write_text(report.model_dump_json(indent=2) + "\n")
    m = report.machine
    load = f"; load {m.load_avg[0]:g} -> {m.load_avg[1]:g}" if m.load_avg else ""
    table = Table(
        title=f"fanout bench ({m.cpu_count} CPU, {m.cpu}{load}; {report.duration_s:.0f} s)"
    )
    for column in ("section", "measured", "goal", "verdict"):
        table.add_column(column, overflow="fold")
    for row in report.rows():
        table.add_row(*row)
    Console().print(table)
    err.print(f"wrote {out}")
    return 0
