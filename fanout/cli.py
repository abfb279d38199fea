"""The ``fanout`` command line, the one front door: ``run``, ``eval`` and ``bench``.

Exit codes: 0 every sub-agent succeeded; 1 some failed (the answer is still printed and names them);
2 a usage or input error, reported as one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import sys
from typing import Annotated, Literal

import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fanout import __version__
from fanout.agents.errors import UserError
from fanout.agents.factory import make_backend
from fanout.agents.fallback import FallbackBackend
from fanout.agents.portal import run_sync
from fanout.agents.secrets import scrub
from fanout.evals.bench import bench_command
from fanout.evals.cli import eval_command
from fanout.orchestrator.checkpoint import open_checkpoint
from fanout.orchestrator.coordinator import Coordinator, RunObserver
from fanout.orchestrator.documents import MAX_FILE_BYTES, load_documents
from fanout.orchestrator.errors import RunFailed
from fanout.orchestrator.logs import configure_logging
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import DocumentAnswer, RunResult, SubResult
from fanout.orchestrator.split import DEFAULT_OVERLAP_TOKENS
from fanout.orchestrator.synthesize import LLMSynthesizer
from fanout.orchestrator.task import SubTask

__all__ = ["app", "main"]

logger = structlog.get_logger("fanout")

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


def _print_result(result: RunResult, console: Console) -> None:
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
    console.print(
        f"tokens {u.total_tokens:,} (prompt {u.prompt_tokens:,} + completion "
        f"{u.completion_tokens:,}) · calls {u.calls} · sub-agents {len(result.sub_results)} "
        f"({len(result.failed)} failed) · wall {u.wall_s:.2f} s · cost ${u.cost_usd:.4f}",
        markup=False,
        highlight=False,
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
        str,
        typer.Option(
            help="llama: sub-agents decoded together in one batch: N, or auto (batch only where "
            "measured faster than one by one).",
            metavar="N|auto",
        ),
    ] = "auto",
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
    dry_run: Annotated[
        bool, typer.Option(help="Split and print the plan (sub-agents, model calls), then stop.")
    ] = False,
) -> int:
    """Answer a question (and/or instructions) over documents."""
    configure_logging(json_lines=log_json, level="info" if log_json else "warning")
    _check_options(
        question=question,
        instruction=instruction,
        endpoint=endpoint,
        strategy=strategy,
        synthesis=synthesis,
        chunk_tokens=chunk_tokens,
        checkpoint=checkpoint,
        run_id=run_id,
        paired=paired,
    )
    n_parallel = _check_limits(
        timeout=timeout,
        retries=retries,
        max_tokens=max_tokens,
        max_concurrency=max_concurrency,
        parallel=parallel,
    )
    policy = CallPolicy(
        # a batch can only fill if at least `parallel` calls are in flight
        max_concurrency=max(max_concurrency, 1 if n_parallel == "auto" else n_parallel),
        timeout_s=timeout,
        max_attempts=retries + 1,
        max_tokens=max_tokens,
    )
    request = Request(
        documents=tuple(load_documents(docs, max_bytes=max_file_bytes)),
        question=question,
        instructions=tuple(instruction or ()),
        paired=paired,
    )
    with contextlib.ExitStack() as held:
        saved = None
        if checkpoint is not None and run_id is not None and not dry_run:
            saved = open_checkpoint(checkpoint)
            # one process per run: a second one would compute every sub-agent again
            held.enter_context(saved.lease(run_id))
        chosen = make_backend(
            backend,
            model=model,
            base_url=base_url,
            endpoint="completions" if endpoint == "completions" else "chat",
            n_gpu_layers=n_gpu_layers,
            n_ctx=n_ctx,
            context_window=context_window,
            n_parallel=n_parallel,
            timeout_s=timeout,
        )
        check = getattr(chosen, "check", None)
        if check is not None:
            run_sync(check())
        if fallback is not None:
            local = make_backend(fallback, model=fallback_model, n_ctx=n_ctx)
            chosen = FallbackBackend(chosen, local)
        coordinator = Coordinator(
            chosen,
            strategy="monolithic" if strategy == "monolithic" else "isolated",
            synthesis=_synthesis(synthesis),
            policy=policy,
            chunk_tokens=chunk_tokens,
            failure_policy=failure_policy,
            checkpointer=saved.checkpointer if saved else None,
            result_store=saved.result_store if saved else None,
        )
        err = Console(stderr=True)
        saved_tasks = coordinator.saved_plan(request, run_id) if saved and run_id else None
        tasks = saved_tasks or _plan(coordinator, request, err, quiet=json_output)
        _announce(tasks, coordinator, log_json=log_json)
        if dry_run:
            return 0
        try:
            result = _run(coordinator, request, run_id, err, quiet=json_output)
        except RunFailed as exc:
            kept = sum(r.status == "ok" for r in exc.partial)
            where = f"; {kept} finished sub-results are saved in {checkpoint}" if saved else ""
            sys.stderr.write(scrub(f"fanout: run stopped: {exc}{where}") + "\n")
            return 1
        except sqlite3.DatabaseError as exc:  # damage found only mid-run; finished work is stored
            raise UserError(f"checkpoint {checkpoint}: {exc}") from None
    if json_output:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        _print_result(result, Console(soft_wrap=True))
    return 0 if result.ok else 1


def _check_options(
    *,
    question: str | None,
    instruction: list[str] | None,
    endpoint: str,
    strategy: str,
    synthesis: str,
    chunk_tokens: int | None,
    checkpoint: str | None,
    run_id: str | None,
    paired: bool,
) -> None:
    """Every option that can be judged alone, before any file is read or model loaded."""
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
    if paired and question is not None:
        raise UserError("--paired pairs documents with --instruction values; drop --question")
    overlap = DEFAULT_OVERLAP_TOKENS
    if chunk_tokens is not None and chunk_tokens < 2 * overlap:
        raise UserError(
            f"--chunk-tokens must be at least {2 * overlap}, not {chunk_tokens} "
            f"(consecutive chunks share {overlap} tokens)"
        )
    if checkpoint is not None and run_id is None:
        raise UserError("--checkpoint needs --run-id (the name to resume the run under)")


def _check_limits(
    *, timeout: float, retries: int, max_tokens: int, max_concurrency: int, parallel: str
) -> int | Literal["auto"]:
    """The numeric options, named as the command line names them; returns ``--parallel``'s value."""
    if not (math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if retries < 0:
        raise UserError(f"--retries must be 0 or more, not {retries}")
    if max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, not {max_tokens}")
    if max_concurrency < 1:
        raise UserError("max_concurrency must be at least 1")
    if parallel.strip() == "auto":
        return "auto"
    if not parallel.strip().isdigit() or int(parallel) < 1:
        raise UserError(f"--parallel must be a number of at least 1 or auto, not '{parallel}'")
    return int(parallel)


def _progress(err: Console, *, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )


_LOUD_SPLIT_CHARS = 1 << 20
"""Off a terminal, splitting this much text or more is announced first: it can take seconds."""


def _plan(
    coordinator: Coordinator, request: Request, err: Console, *, quiet: bool
) -> list[SubTask]:
    """Split the request, with a progress bar (by characters) on a terminal."""
    total = sum(len(d.text) for d in request.documents)
    if not err.is_terminal and total >= _LOUD_SPLIT_CHARS:
        sys.stderr.write(
            f"fanout: splitting {len(request.documents):,} document(s), "
            f"{total / (1 << 20):.1f} MiB of text\n"
        )
    with _progress(err, quiet=quiet) as progress:
        bar = progress.add_task("splitting (characters)", total=total)
        return coordinator.plan(
            request, progress=lambda done, _: progress.update(bar, completed=done)
        )


def _announce(tasks: list[SubTask], coordinator: Coordinator, *, log_json: bool) -> None:
    """Say on stderr, before any model call, how many sub-agents and model calls the run plans."""
    documents = len({t.document_id for t in tasks if t.document_id is not None})
    chunked = len({(t.document_id, t.task_index) for t in tasks if t.n_chunks > 1})
    llm = isinstance(coordinator.nodes.synthesizer, LLMSynthesizer)
    monolithic = coordinator.strategy == "monolithic"
    merges = chunked if llm and not monolithic else 0
    synthesis = llm and not monolithic
    if log_json:
        logger.info(
            "run.plan",
            sub_agents=len(tasks),
            documents=documents,
            chunked=chunked,
            sub_agent_calls=len(tasks),
            merge_calls_at_most=merges,
            synthesis=synthesis,
        )
        return
    if monolithic:
        line = "1 sub-agent holding every document; model calls: 1"
    else:
        cut = f", {chunked:,} of them cut into chunks" if chunked else ""
        line = (
            f"{len(tasks):,} sub-agent(s) over {documents:,} document(s){cut}; model calls: "
            f"{len(tasks):,} for the sub-agents"
            + (f", up to {merges:,} to merge chunk answers" if merges else "")
            + (", then synthesis calls as needed" if synthesis else "")
        )
    sys.stderr.write(f"fanout: plan: {line} (retries add calls)\n")


def _run(
    coordinator: Coordinator, request: Request, run_id: str | None, err: Console, *, quiet: bool
) -> RunResult:
    with _progress(err, quiet=quiet) as progress:
        return coordinator.run(request, run_id=run_id, observer=_ProgressObserver(progress))


def _synthesis(name: str) -> Literal["llm", "collect"]:
    return "collect" if name == "collect" else "llm"


app.command("eval")(eval_command)
app.command("bench")(bench_command)


def _fail(message: str) -> int:
    line = scrub(" ".join(message.split()))
    sys.stderr.write(f"fanout: error: {line}\n")
    return 2


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps every anticipated failure to one line and an exit code."""
    command = typer.main.get_command(app)
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
