"""``fanout bench``: run the sections, write the JSON report, print a table of verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fanout.agents.errors import UserError

from . import run
from .report import SECTIONS, SectionName

__all__ = ["bench_command"]


def _sections(spec: str | None, scale: bool) -> tuple[SectionName, ...]:
    if spec is None:
        chosen = set(run.DEFAULT_SECTIONS)
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = [s for s in names if s not in SECTIONS]
        if unknown or not names:
            raise UserError(
                f"unknown bench section '{','.join(unknown) or spec}' (use {', '.join(SECTIONS)})"
            )
        chosen = {s for s in SECTIONS if s in names}
    if scale:
        chosen.add("scale")
    return tuple(s for s in SECTIONS if s in chosen)


def bench_command(
    out: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path("bench.json"),
    quick: Annotated[bool, typer.Option(help="Smaller sizes, fewer repeats: a smoke run.")] = False,
    scale: Annotated[
        bool, typer.Option(help="Add the scale section: 1,000 to 100,000 sub-agents (minutes).")
    ] = False,
    sections: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated sections to run (of {', '.join(SECTIONS)}).", metavar="LIST"
        ),
    ] = None,
) -> int:
    """Measure overhead, fan-out, local throughput, memory and batching; write JSON and a table."""
    from rich.table import Table

    from fanout.agents._safe_text import console, rich_text
    from fanout.agents.logs import configure_logging

    chosen = _sections(sections, scale)
    configure_logging(level="warning")
    try:  # fail before minutes of measuring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror}") from None
    err = console(stderr=True)  # reads no markup: a path like "[/x]" is text
    report = run.run_bench(
        quick=quick, sections=chosen, progress=lambda line: err.print(line, style="dim")
    )
    out.write_text(report.model_dump_json(indent=2) + "\n")
    m = report.machine
    load = f"; load {m.load_avg[0]:g} -> {m.load_avg[1]:g}" if m.load_avg else ""
    table = Table(
        title=rich_text(
            f"fanout bench ({m.cpu_count} CPU, {m.cpu}{load}; {report.duration_s:.0f} s)"
        )
    )
    for column in ("section", "measured", "goal", "verdict"):
        table.add_column(column, overflow="fold")
    for row in report.rows():
        table.add_row(*row)
    console().print(table)
    err.print(rich_text(f"wrote {out}"))
    return 0
