"""The ``fanout`` command line, the one front door: ``run``, ``eval``, ``bench`` and ``report``.

Exit codes: 0 every sub-agent succeeded; 1 some failed (the answer is still printed and names them);
2 a usage or input error, reported as one line on stderr, never a traceback.
"""

from __future__ import annotations

import shlex
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fanout import __version__
from fanout.agents.errors import UserError
from fanout.agents.factory import make_backend
from fanout.agents.fallback import FallbackBackend
from fanout.agents.portal import run_sync
from fanout.agents.prices import apply_prices, load_prices
from fanout.evals.bench import bench_command
from fanout.evals.cli import eval_command, report_command
from fanout.evals.provenance import COMMAND_LINE
from fanout.orchestrator.checkpoint import open_checkpoint
from fanout.orchestrator.coordinator import Coordinator, RunObserver
from fanout.orchestrator.documents import MAX_FILE_BYTES, load_documents
from fanout.orchestrator.errors import RunFailed
from fanout.orchestrator.logs import configure_logging
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import DocumentAnswer, RunResult, SubResult
from fanout.orchestrator.schemas import load_output_schema
from fanout.orchestrator.task import SubTask

__all__ = ["app", "main"]

app = typer.Typer(
    name="fanout",
    help="Answer multi-document requests with isolated sub-agents, and measure when that wins.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"fanout {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Answer multi-document requests with isolated sub-agents, and measure when that wins."""


class _ProgressObserver(RunObserver):
    """A progress bar on stderr that advances as each sub-agent finishes."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("sub-agents", total=None)

    def on_plan(self, tasks: list[SubTask]) -> None:
        self._progress.update(self._task, total=len(tasks))

    def on_sub_result(self, result: SubResult) -> None:
        self._progress.advance(self._task)


def _answer_cell(a: DocumentAnswer) -> str:
    if a.outcome == "failed":
        return f"missing: {a.error}"
    if a.outcome == "not_found":
        return "(not found)"
    marks = []
    if a.grounded is False:
        marks.append("quote not in document")
    if not a.selected:
        marks.append("outranked")
    return f"{a.answer or ''}" + (f"  ({'; '.join(marks)})" if marks else "")


def _print_result(result: RunResult, console: Console, *, priced: bool) -> None:
    multi_task = len({a.task_index for a in result.answers}) > 1
    table = Table(title="Per-document answers", show_lines=False)
    table.add_column("document")
    if multi_task:
        table.add_column("task")
    table.add_column("outcome")
    table.add_column("answer", overflow="fold")
    for a in sorted(result.answers, key=lambda a: (a.task_index, a.rank or 10**9)):
        row: list[str] = [a.document_id or "(all)"]
        if multi_task:
            row.append(a.task)
        row += [a.outcome.replace("_", " "), _answer_cell(a)]
        table.add_row(*[str(c) for c in row])
    console.print(table)
    console.print("[bold]Answer[/bold]")
    console.print(result.answer or "(none)", markup=False, highlight=False)
    notes = result.notes
    if notes:
        # The coordinator's own report, from its fields: model text never reaches this section.
        console.print("[bold]Coordinator[/bold]")
        for line in notes:
            console.print(line, markup=False, highlight=False)
    u = result.usage
    cost = f" · cost ${u.cost_usd:.4f}" if priced else ""  # unknown prices are not $0
    console.print(
        f"tokens {u.total_tokens:,} (prompt {u.prompt_tokens:,} + completion "
        f"{u.completion_tokens:,}) · calls {u.calls} · sub-agents {len(result.sub_results)} "
        f"({len(result.failed)} failed) · wall {u.wall_s:.2f} s{cost}",
        markup=False,
        highlight=False,
    )


def _endpoint_hint(result: RunResult, model: str) -> str | None:
    """A hint when every answer is "not found" on a chat endpoint: the mark of a base model.

    A base model behind a chat endpoint that has no template for it often answers with the
    few-shot examples' "not found" every time, and the run looks clean.
    """
    answered = [a for a in result.answers if a.status == "ok"]
    if len(answered) < 2 or any(a.outcome != "not_found" for a in answered):
        return None
    return (
        f'hint: every sub-agent answered "not found". If {model} is a base model (no chat '
        "template), the chat endpoint gives it a prompt format it cannot follow: "
        "try --endpoint completions"
    )


@app.command("run")
def run_command(
    docs: Annotated[list[str], typer.Argument(help="Files, folders or globs (.txt, .md).")],
    question: Annotated[str | None, typer.Option("--question", "-q", help="Question.")] = None,
    instruction: Annotated[
        list[str] | None, typer.Option("--instruction", "-i", help="A per-document task.")
    ] = None,
    strategy: Annotated[str, typer.Option(help="isolated or monolithic.")] = "isolated",
    backend: Annotated[str, typer.Option(help="llama or openai.")] = "llama",
    model: Annotated[
        str | None, typer.Option(help="GGUF path (llama) or model name (openai).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible API root, e.g. http://127.0.0.1:8080/v1; several, "
            "comma-separated, spread calls over a fleet."
        ),
    ] = None,
    endpoint: Annotated[
        str, typer.Option(help="openai: chat, or completions for base models.")
    ] = "chat",
    n_gpu_layers: Annotated[int, typer.Option(help="llama: layers on GPU (-1 all).")] = 0,
    n_ctx: Annotated[int, typer.Option(help="llama: context window in tokens.")] = 2048,
    parallel: Annotated[
        int, typer.Option(help="llama: sub-agents decoded together in one batch.")
    ] = 1,
    context_window: Annotated[
        int | None, typer.Option(help="openai: the model's context (enables chunking).")
    ] = None,
    max_concurrency: Annotated[int, typer.Option(help="Model calls in flight at once.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds per call attempt.")] = 300.0,
    retries: Annotated[int, typer.Option(help="Retries of transient errors per call.")] = 2,
    max_tokens: Annotated[int, typer.Option(help="Completion budget per call.")] = 128,
    chunk_tokens: Annotated[
        int | None, typer.Option(help="Largest chunk per sub-agent (default: fits context).")
    ] = None,
    synthesis: Annotated[str, typer.Option(help="llm or collect.")] = "llm",
    failure_policy: Annotated[
        str, typer.Option(help="best_effort, fail_fast or quorum=K.")
    ] = "best_effort",
    fallback: Annotated[
        str | None, typer.Option(help="Backend to use when a call fails: llama (local GGUF).")
    ] = None,
    fallback_model: Annotated[
        str | None, typer.Option(help="GGUF for --fallback llama (default: embedded).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Name this run; rerun with the same id to resume it.")
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="SQLite file that makes the run resumable after a crash.")
    ] = None,
    max_file_bytes: Annotated[
        int, typer.Option(help="Refuse document files larger than this.")
    ] = MAX_FILE_BYTES,
    paired: Annotated[
        bool,
        typer.Option(
            help="Document i gets --instruction i only (as many instructions as documents, in "
            "the order the documents are listed; folders expand in name order)."
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    log_json: Annotated[bool, typer.Option(help="Every event as JSON lines on stderr.")] = False,
    prices: Annotated[
        str | None,
        typer.Option(help="Price table (JSON/TOML): model -> USD per Mtok; cost is shown with it."),
    ] = None,
    output_schema: Annotated[
        str | None,
        typer.Option(
            help="Answers must be JSON of this schema: module:Model (pydantic) or a JSON Schema "
            "file."
        ),
    ] = None,
) -> int:
    """Answer a question (and/or instructions) over documents."""
    configure_logging(json_lines=log_json, level="info" if log_json else "warning")
    _check_choices(question, instruction, endpoint=endpoint, strategy=strategy, synthesis=synthesis)
    if paired and question is not None:
        raise UserError("--paired pairs documents with --instruction values; drop --question")
    request = Request(
        documents=tuple(load_documents(docs, max_bytes=max_file_bytes)),
        question=question,
        instructions=tuple(instruction or ()),
        paired=paired,
    )
    if max_concurrency < 1 or parallel < 1:
        raise UserError("max_concurrency and parallel must be at least 1")
    policy = CallPolicy(
        # a batch can only fill if at least `parallel` calls are in flight
        max_concurrency=max(max_concurrency, parallel),
        timeout_s=timeout,
        max_attempts=retries + 1,
        max_tokens=max_tokens,
    )
    chosen = make_backend(
        backend,
        model=model,
        base_url=base_url,
        endpoint="completions" if endpoint == "completions" else "chat",
        n_gpu_layers=n_gpu_layers,
        n_ctx=n_ctx,
        context_window=context_window,
        n_parallel=parallel,
    )
    schema = load_output_schema(output_schema) if output_schema is not None else None
    if prices is not None:
        apply_prices(chosen, load_prices(prices), source=prices)
    check = getattr(chosen, "check", None)
    if check is not None:
        run_sync(check())
    if fallback is not None:
        chosen = FallbackBackend(chosen, make_backend(fallback, model=fallback_model, n_ctx=n_ctx))
    if checkpoint is not None and run_id is None:
        raise UserError("--checkpoint needs --run-id (the name to resume the run under)")
    saved = open_checkpoint(checkpoint) if checkpoint is not None else None
    coordinator = Coordinator(
        chosen,
        strategy="monolithic" if strategy == "monolithic" else "isolated",
        synthesis=_synthesis(synthesis),
        output_schema=schema,
        policy=policy,
        chunk_tokens=chunk_tokens,
        failure_policy=failure_policy,
        checkpointer=saved.checkpointer if saved else None,
        result_store=saved.result_store if saved else None,
    )
    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=json_output or not err.is_terminal,
    ) as progress:
        try:
            result = coordinator.run(request, run_id=run_id, observer=_ProgressObserver(progress))
        except RunFailed as exc:
            kept = sum(r.status == "ok" for r in exc.partial)
            where = f"; {kept} finished sub-results are saved in {checkpoint}" if saved else ""
            sys.stderr.write(f"fanout: run stopped: {exc}{where}\n")
            return 1
    if json_output:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        _print_result(result, Console(soft_wrap=True), priced=prices is not None)
    hint = (
        _endpoint_hint(result, chosen.name) if backend == "openai" and endpoint == "chat" else None
    )
    if hint is not None:
        sys.stderr.write(hint + "\n")
    return 0 if result.ok else 1


def _check_choices(
    question: str | None,
    instruction: list[str] | None,
    *,
    endpoint: str,
    strategy: str,
    synthesis: str,
) -> None:
    if question is not None and not question.strip():
        raise UserError("the question is empty")
    if question is None and not instruction:
        raise UserError("give --question or at least one --instruction")
    if endpoint not in ("chat", "completions"):
        raise UserError(f"unknown endpoint '{endpoint}' (use chat or completions)")
    if strategy not in ("isolated", "monolithic"):
        raise UserError(f"unknown strategy '{strategy}' (use isolated or monolithic)")
    if synthesis not in ("llm", "collect"):
        raise UserError(f"unknown synthesis '{synthesis}' (use llm or collect)")


def _synthesis(name: str) -> Literal["llm", "collect"]:
    return "collect" if name == "collect" else "llm"


app.command("eval")(eval_command)
app.command("bench")(bench_command)
app.command("report")(report_command)


def _fail(message: str) -> int:
    line = " ".join(message.split())
    sys.stderr.write(f"fanout: error: {line}\n")
    return 2


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps every anticipated failure to one line and an exit code."""
    command = typer.main.get_command(app)
    COMMAND_LINE.set(shlex.join(["fanout", *(sys.argv[1:] if argv is None else argv)]))
    try:
        code = command.main(args=argv, prog_name="fanout", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # typer's own (vendored click) usage errors
        format_message = getattr(exc, "format_message", None)
        message = format_message() if format_message else str(exc)
        code = _fail(f"{message} (see fanout --help)")
    except UserError as exc:
        code = _fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("fanout: interrupted\n")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
