"""The report of one ``fanout bench`` run: where it ran, and every section's figures and verdict.

It is written as JSON and is the single source of the README's Performance table.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .batch import BatchSection
from .fan_out import FanoutSection
from .inputs import InputSection
from .local import LocalSection
from .memory import MemorySection
from .overhead import OverheadSection
from .scale import ScaleSection
from .section import Section

__all__ = ["SECTIONS", "BenchReport", "Machine", "SectionName", "load_average", "this_machine"]

SectionName = Literal["overhead", "fanout", "local", "memory", "batch", "input", "scale"]
SECTIONS: tuple[SectionName, ...] = (
    "overhead",
    "fanout",
    "local",
    "memory",
    "batch",
    "input",
    "scale",
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
    gpu: str | None = None
    """The GPU llama.cpp offloads to; None on a CPU-only build or machine."""
    load_avg: tuple[float, float] | None = None
    """1-minute load average when the bench started and when it ended: above the CPU count,
    other processes were competing for the cores and the timings are pessimistic."""


def load_average() -> float:
    """The 1-minute load average (0 where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else 0.0


def this_machine(load_at_start: float | None = None) -> Machine:
    """This machine, with the load average from `load_at_start` to now."""
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
        gpu=_gpu(),
        load_avg=(load_at_start, load_average()) if load_at_start is not None else None,
    )


def _gpu() -> str | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    if not llama_cpp.llama_supports_gpu_offload():
        return None
    return "GPU offload available"


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
    """Fan-out against a fixed-delay server: the framework's cost over the plain client loop."""
    local: LocalSection | None = None
    """Local throughput against a plain llama-cpp-python loop."""
    memory: MemorySection | None = None
    """Peak RSS as the number of sub-agents grows."""
    batch: BatchSection | None = None
    """Batched and automatic local sub-agents against the plain loop, by answer length."""
    input: InputSection | None = None
    """Loading many files and splitting long text, before any model call."""
    scale: ScaleSection | None = None
    """Up to 100,000 sub-agents in one run (``--scale``)."""
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
