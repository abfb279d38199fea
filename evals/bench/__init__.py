"""``fanout bench``: every speed and memory figure, each measured next to its baseline in one run.

One module per section: `overhead` (framework cost per sub-agent on a zero-latency fake),
`fan_out` (against a fixed-delay HTTP server: fanout over the plain client loop, both over the
ideal), `local` (the embedded model vs a plain llama-cpp-python loop), `memory` (peak RSS as N
grows), `batch` (batched and automatic local sub-agents by answer length), `inputs` (loading many
files and splitting long text) and `scale` (up to 100,000 sub-agents, ``--scale``). What they share has one home each: `timing` (contenders take
turns round by round), `workload` (the request every section measures), `baseline` (the plain
loops), `loopback` (the fixed-delay server; the fan-out section needs it at run time and tests
drive `OpenAIBackend` over real HTTP with it). `report` is the JSON report, `run` runs sections,
`command` is the CLI command.
"""

from __future__ import annotations

from .command import bench_command
from .report import SECTIONS, BenchReport, Machine, SectionName
from .run import DEFAULT_SECTIONS, run_bench

__all__ = [
    "DEFAULT_SECTIONS",
    "SECTIONS",
    "BenchReport",
    "Machine",
    "SectionName",
    "bench_command",
    "run_bench",
]
