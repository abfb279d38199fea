"""``fanout eval``: sweep strategies x N on a suite, write results.json, report.md/html and plots.

`fanout.cli` registers the command on the ``fanout`` app. Every bad
input (suite, dataset line, N, fault spec, output folder) is checked before the model loads and
raised as a one-line `UserError`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from fanout.agents._safe_text import CELL_LIMIT, console, for_terminal, rich_text
from fanout.agents._secrets import scrub
from fanout.agents.errors import UserError
from fanout.orchestrator import _cli_options as opts

from ._compare import Comparison, compare_results, load_results
from .faults import FaultSpec
from .metrics import CellMetrics, PriceTable, load_prices
from .records import EvalResults
from .report import EvalReport, auto_verdict, build_report, write_report
from .runner import RESULTS_FILE, check_dataset_unchanged, evaluate
from .strategies import STRATEGIES, make_strategy
from .suites import SUITES, Position, make_suite

__all__ = ["eval_command", "ladder_command", "parse_instances", "report_command"]


def parse_instances(text: str) -> list[int]:
    """``"1,2,5,10"`` -> [1, 2, 5, 10]; anything else is a `UserError`."""
    values: list[int] = []
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise UserError(f"--instances takes numbers like 1,2,5,10, not '{text}'") from None
        if value < 1:
            raise UserError(f"--instances must be positive, not {value}")
        values.append(value)
    return list(dict.fromkeys(values))


def _names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError("--strategies is empty")
    for name in names:
        if name not in STRATEGIES:
            raise UserError(f"unknown strategy '{name}' (use: {', '.join(STRATEGIES)})")
    return list(dict.fromkeys(names))


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None


class _RichProgress:
    """The sweep's progress as a rich bar on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("eval", total=None)

    def start(self, total: int, done: int) -> None:
        self._progress.update(self._task, total=total, completed=done)

    def advance(self, label: str) -> None:
        self._progress.update(self._task, advance=1, description=for_terminal(label, limit=80))


class _LineProgress:
    """The sweep's progress as plain lines on stderr, for logs and CI where no bar can be drawn."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._total = 0
        self._done = 0
        self._started = time.monotonic()

    def _line(self, text: str) -> None:
        self._stream.write(f"fanout eval: {for_terminal(text)}\n")
        self._stream.flush()

    def start(self, total: int, done: int) -> None:
        self._total, self._done = total, done
        resumed = f" ({done} already recorded)" if done else ""
        self._line(f"{total} group runs{resumed}")

    def advance(self, label: str) -> None:
        self._done += 1
        elapsed = time.monotonic() - self._started
        self._line(f"[{self._done}/{self._total}] {label} done ({elapsed:.0f} s elapsed)")


def _stdout() -> Console:
    """stdout; when it is a pipe or a file, wide enough that the table is never squeezed.

    It reads no markup: names in results (models, strategies, paths) reach it as `rich_text`.
    """
    out = console()
    return out if out.is_terminal else console(width=160)


def _cell(text: str) -> Text:
    return rich_text(text, multiline=False, limit=CELL_LIMIT)


def _print_summary(report: EvalReport, out: Console) -> None:
    faults = any(c.faults is not None for c in report.cells)
    table = Table(title=_cell(f"{report.config.suite} on {report.config.model}"))
    headers = ["strategy", "N", "accuracy [95% CI]", "fmt fail", "calls", "tokens", "s/request"]
    headers += ["blast", "cascade"] if faults else []
    for header in headers:
        table.add_column(header, justify="left" if header == "strategy" else "right")
    for c in report.cells:
        row: list[Text | str] = [
            _cell(c.strategy),
            str(c.n),
            f"{c.accuracy:.0%} [{c.ci_low * 100:.0f}-{c.ci_high * 100:.0f}]",
            f"{c.format_failure_rate:.0%}",
            str(c.calls),
            f"{c.total_tokens:,}",
            f"{c.wall_s_per_group:.2f}",
        ]
        if faults:
            radius = c.faults.blast_radius if c.faults else None
            cascade = c.faults.cascade_rate if c.faults else None
            row += [
                "-" if radius is None else f"{radius:.2f}",
                "-" if cascade is None else f"{cascade:.0%}",
            ]
        table.add_row(*row)
    out.print(table)
    for crossover in report.crossovers:
        out.print(rich_text(crossover.recommendation))
    for check in report.auto_checks:
        ran = ", ".join(f"{name} {count}" for name, count in check.chosen.items())
        verdict = auto_verdict(check)
        out.print(
            rich_text(
                f"auto N={check.n} ({ran}): {check.accuracy:.0%} vs best fixed {check.best} "
                f"{check.best_accuracy:.0%} [{check.best_ci_low:.0%}-{check.best_ci_high:.0%}], "
                f"tokens {check.tokens:,} vs {check.best_tokens:,}: {verdict}"
            )
        )


def eval_command(
    suite: Annotated[
        str | None,
        typer.Option(metavar=f"[{'|'.join(SUITES)}]", help="What to ask (not with --report-only)."),
    ] = None,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="Data file (nq, mdqa: an NQ-open oracle file, default the shipped slice; "
            "kvretrieval: a kv-retrieval file of Lost in the Middle; jsonl: one instance a line, "
            "format below; mti: MTI Bench's JSON)."
        ),
    ] = None,
    strategies: Annotated[
        str,
        typer.Option(
            metavar=f"[{'|'.join(STRATEGIES)}],...", help="Strategies to compare, comma-separated."
        ),
    ] = "isolated,monolithic",
    instances: Annotated[
        str,
        typer.Option(metavar="N,N,...", help="Values of N (instances per request), e.g. 1,2,5,10."),
    ] = "1,2,5,10",
    groups: Annotated[int, typer.Option(min=1, help="Requests per N.")] = 3,
    faults: Annotated[
        str,
        typer.Option(
            metavar="none|KIND=RATE,...",
            help="Fault rates, e.g. error=0.1,timeout=0.05,garbage=0.05,wrong=0.05.",
        ),
    ] = "none",
    backend: opts.BackendOption = opts.BACKEND,
    model: opts.Model = None,
    base_url: opts.BaseUrl = None,
    endpoint: opts.EndpointOption = opts.ENDPOINT,
    n_gpu_layers: opts.NGpuLayers = opts.N_GPU_LAYERS,
    n_ctx: opts.NCtx = opts.N_CTX,
    threads: opts.Threads = None,
    parallel: opts.Parallel = opts.PARALLEL,
    context_window: opts.ContextWindow = None,
    max_concurrency: opts.MaxConcurrency = opts.MAX_CONCURRENCY,
    timeout: opts.Timeout = opts.TIMEOUT,
    retries: opts.Retries = opts.RETRIES,
    max_tokens: opts.MaxTokens = opts.MAX_TOKENS,
    out: Annotated[Path, typer.Option(help="Output folder; an existing run there resumes.")] = Path(
        "eval-out"
    ),
    seed: Annotated[int, typer.Option(help="Seeds data, shuffles and faults.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per call for 'batch'.")] = 4,
    top_k: opts.TopK = None,
    chunk_tokens: opts.ChunkTokens = None,
    doc_tokens: Annotated[int, typer.Option(min=1, help="Synthetic document length.")] = 120,
    position: Annotated[
        Position,
        typer.Option(
            help="Where the fact sits in its document (synthetic suites), or the gold passage "
            "(mdqa) or gold pair (kvretrieval) among the others."
        ),
    ] = "random",
    items: Annotated[
        str | None,
        typer.Option(
            metavar="START:END",
            help="nq, mdqa, kvretrieval: the items of the file to read, from 0 (default: the "
            "development range, 0:1000 for NQ and 0:300 for KV; the rest is kept for acceptance).",
        ),
    ] = None,
    prices: opts.PricesFile = None,
    report_only: Annotated[
        bool, typer.Option(help="Re-score OUT/results.json and rewrite the report; no model.")
    ] = False,
    profile: opts.ProfileFile = None,
    objective: opts.ObjectiveOption = opts.OBJECTIVE,
    min_accuracy: opts.MinAccuracy = None,
) -> int:
    """Measure accuracy, cost and failure blast radius as more instances share one request.

    Your own data: --suite jsonl --dataset FILE.jsonl (or .jsonl.gz), one instance a line,
    e.g. examples/eval-dataset.jsonl:

    \b
      {"id": "q1", "question": "Who founded Acme?", "answers": ["Ada Lane"],
       "documents": [{"id": "acme.md", "text": "..."}]}

    \b
    - "answer" (one string) may replace "answers"; "document" or "context" (one
      string) may replace "documents"; a document may have a "title".
    - "match": "subspan" (a gold answer occurs in the output; default) or "exact".
    - A multi-part instance lists "questions" (each with "question" and "answers")
      over shared documents; "chained": true makes each part follow the previous
      one (conditional accuracy is reported).
    - N instances (lines) share one request; a bad line is reported as FILE:LINE.
    """  # noqa: D301 (\b is click's marker for a paragraph kept as written)
    from fanout.agents.logs import configure_logging

    configure_logging(level="error")  # injected faults would otherwise log a warning each
    price_table: PriceTable | None = load_prices(prices) if prices is not None else None
    if report_only:
        results = EvalResults.load(out / RESULTS_FILE)
        check_dataset_unchanged(results, out / RESULTS_FILE)
        results = results.rescored()
        report = write_report(build_report(results, prices=price_table), out)
        _print_summary(report, _stdout())
        console(stderr=True).print(rich_text(f"rewrote the report in {out}"))
        return 0
    if suite is None:
        raise UserError(f"--suite is required (one of: {', '.join(SUITES)})")
    opts.check_chunk_tokens(chunk_tokens)
    the_suite = make_suite(
        suite, dataset=dataset, doc_tokens=doc_tokens, position=position, items=items
    )
    sizes = parse_instances(instances)
    for n in sizes:
        the_suite.check(n, groups)
    names = _names(strategies)
    chooser = opts.auto_chooser("auto" in names, profile, objective, min_accuracy)
    chosen = [
        make_strategy(
            name,
            batch_size=batch_size,
            top_k=top_k or 5,
            chooser=chooser,
            chunk_tokens=chunk_tokens,
        )
        for name in names
    ]
    spec = FaultSpec.parse(faults)
    policy = opts.CallOptions(
        max_concurrency=max_concurrency, timeout=timeout, retries=retries, max_tokens=max_tokens
    ).policy(parallel=parallel)
    _writable(out)
    model_options = opts.ModelOptions(
        backend=backend, model=model, base_url=base_url, endpoint=endpoint,
        n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, threads=threads, parallel=parallel,
        context_window=context_window,
    )  # fmt: skip
    err = console(stderr=True)
    with (
        model_options.open_backend(timeout_s=timeout) as the_backend,
        Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar,
    ):
        report = evaluate(
            the_backend,
            suite=the_suite,
            strategies=chosen,
            instances=sizes,
            groups=groups,
            seed=seed,
            faults=spec,
            batch_size=batch_size,
            top_k=top_k or 5,
            chunk_tokens=chunk_tokens,
            policy=policy,
            prices=price_table,
            out=out,
            progress=_RichProgress(bar) if err.is_terminal else _LineProgress(sys.stderr),
        )
    _print_summary(report, _stdout())
    written = ", ".join(sorted(Path(p).name for p in report.files.values()))
    err.print(rich_text(f"wrote {written} to {out}"))
    return 0


def _acc(c: CellMetrics) -> str:
    return f"{c.accuracy:.0%} [{c.ci_low * 100:.0f}-{c.ci_high * 100:.0f}]"


def _print_comparison(comparison: Comparison, out: Console) -> None:
    a, b = comparison.a, comparison.b
    table = Table(title=_cell(f"{comparison.suite}: A = {a}, B = {b}"))
    headers = ["strategy", "N", "A accuracy [95% CI]", "B accuracy [95% CI]", "B - A"]
    headers += ["beyond noise", "A tokens/q", "B tokens/q"]
    for header in headers:
        table.add_column(header, justify="left" if header == "strategy" else "right")
    for c in comparison.cells:
        verdict = {"a": "yes: A better", "b": "yes: B better", None: "no"}[c.better]
        per_q = [f"{x.total_tokens / x.questions:,.0f}" if x.questions else "-" for x in (c.a, c.b)]
        table.add_row(
            _cell(c.strategy), str(c.n), _acc(c.a), _acc(c.b), f"{c.difference * 100:+.0f} pts",
            verdict, *per_q,
        )  # fmt: skip
    out.print(table)
    wins_b = sum(c.better == "b" for c in comparison.cells)
    wins_a = sum(c.better == "a" for c in comparison.cells)
    out.print(
        f"B better beyond the 95% intervals in {wins_b} of {len(comparison.cells)} cells, "
        f"A better in {wins_a}; the rest are within noise."
    )
    for line in comparison.differences:
        out.print(rich_text(f"differs: {line}", multiline=False))
    if comparison.only_in_a or comparison.only_in_b:
        out.print(
            rich_text(
                f"only in A: {', '.join(comparison.only_in_a) or '-'}; "
                f"only in B: {', '.join(comparison.only_in_b) or '-'}",
                multiline=False,
            )
        )


def report_command(
    first: Annotated[Path, typer.Argument(help="Run A: its results.json, or the folder with it.")],
    second: Annotated[Path, typer.Argument(help="Run B: its results.json, or the folder with it.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the comparison as JSON.")
    ] = False,
) -> int:
    """Compare two eval runs (two models, two prompt versions) cell by cell.

    For each strategy and N both measured: the accuracies with their 95% intervals, the difference,
    and whether the intervals separate (a difference beyond noise).
    """
    comparison = compare_results(
        load_results(first), load_results(second), a_path=first, b_path=second
    )
    if json_output:
        sys.stdout.write(scrub(comparison.model_dump_json(indent=2)) + "\n")
    else:
        _print_comparison(comparison, _stdout())
    return 0


def ladder_command(
    runs: Annotated[
        list[Path], typer.Argument(help="Eval runs: results.json files or the folders with them.")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for crossover.md and the position plots.")
    ] = Path("ladder-out"),
) -> int:
    """Several eval runs side by side: the crossover table and accuracy against the gold position.

    Runs of one model and suite are pooled (runs at other gold positions add their questions up);
    the table gives, per model and suite, the smallest N where blind isolated's 95% interval lies
    above monolithic's, with the token ratio there, or what one prompt did. mdqa and kvretrieval
    runs at --position start, middle and end give one plot per model, suite and N.
    """
    from ._ladder import crossover_markdown, crossover_table, plot_positions

    loaded = [load_results(path) for path in runs]
    _writable(out)
    table = crossover_markdown(crossover_table(loaded))
    (out / "crossover.md").write_text(table)
    plots = plot_positions(loaded, out)
    sys.stdout.write(table)
    Console(stderr=True).print(
        f"wrote crossover.md and {len(plots)} position plot(s) to {out}", markup=False
    )
    return 0
