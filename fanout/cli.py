"""The ``fanout`` command line, the one front door: ``run``, ``eval``, ``bench`` and ``report``.

Exit codes: 0 every sub-agent succeeded; 1 some failed (the answer is still printed and names them);
2 a usage or input error, reported as one line on stderr, never a traceback; 128 + the signal's
number when SIGINT (130), SIGTERM (143) or SIGHUP (129) stopped it (`fanout.signals`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import shlex
import sqlite3
import sys
from dataclasses import replace
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fanout import __version__
from fanout.agents._factory import BackendKind
from fanout.agents._prices import apply_prices, load_prices
from fanout.agents._safe_text import CELL_LIMIT, console, for_terminal, rich_text
from fanout.agents._secrets import scrub
from fanout.agents.errors import UserError, validation_message
from fanout.agents.fallback import FallbackBackend
from fanout.agents.logs import configure_logging, log_event
from fanout.evals._cli import eval_command, ladder_command, report_command
from fanout.evals._provenance import COMMAND_LINE
from fanout.evals.bench import bench_command
from fanout.models_cli import models_app
from fanout.orchestrator import _cli_options as opts
from fanout.orchestrator._schemas import load_output_schema
from fanout.orchestrator.auto import StrategyChoice
from fanout.orchestrator.checkpoint import open_checkpoint
from fanout.orchestrator.context import RunContext, RunHooks
from fanout.orchestrator.coordinator import Coordinator, StrategyName, SynthesisMode
from fanout.orchestrator.documents import MAX_FILE_BYTES, load_documents
from fanout.orchestrator.errors import CheckpointError, RunFailed
from fanout.orchestrator.policy import FailurePolicy
from fanout.orchestrator.request import Request
from fanout.orchestrator.result import DocumentAnswer, RunResult, SubResult
from fanout.orchestrator.split import DocumentSplitter, TopKSplitter
from fanout.orchestrator.state import RunPlan
from fanout.orchestrator.store import storage_damaged, storage_hint
from fanout.orchestrator.synthesize import LLMSynthesizer
from fanout.signals import Interrupted, exit_code, stop_on_signals

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

_ON_INTERRUPT: contextvars.ContextVar[str] = contextvars.ContextVar("on_interrupt", default="")
"""What the "interrupted" line adds: how to resume what the command was doing."""

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


class _ProgressHooks(RunHooks):
    """A progress bar on stderr that advances as each sub-agent finishes."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("sub-agents", total=None)

    async def on_run_start(self, ctx: RunContext[Any], plan: RunPlan) -> None:
        self._progress.update(self._task, total=len(plan.tasks))

    async def on_sub_agent_end(self, ctx: RunContext[Any], result: SubResult) -> None:
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


def _print_plan(plan: StrategyChoice, out: Console) -> None:
    """What auto chose and why: the estimate it expects, then the profile rows it read."""
    source = "profile" if plan.source == "profile" else "no profile"
    out.print(Text.assemble(("Strategy", "bold"), f" (auto, {source}): ran {plan.strategy}"))
    out.print(rich_text(plan.reason))  # names from the profile file
    if plan.expected is not None:
        e = plan.expected
        out.print(
            f"expected {e.accuracy:.0%} [{e.ci_low:.0%}-{e.ci_high:.0%}] accuracy, "
            f"~{e.tokens:,.0f} tokens" + (" (extrapolated)" if plan.extrapolated else "")
        )
    if plan.rows:
        out.print(rich_text("profile rows: " + "; ".join(row.cell() for row in plan.rows)))


def _cell(text: str) -> Text:
    """A table cell of untrusted text: one line, controls visible, long values cut (JSON keeps all)."""
    return rich_text(text, multiline=False, limit=CELL_LIMIT)


def _print_result(result: RunResult, out: Console, *, priced: bool) -> None:
    """The table, the answer and the notes; every untrusted string goes through `rich_text`."""
    if result.choice is not None:
        _print_plan(result.choice, out)
    multi_task = len({a.task_index for a in result.answers}) > 1
    table = Table(title="Per-document answers", show_lines=False)
    table.add_column("document")
    if multi_task:
        table.add_column("task")
    table.add_column("outcome")
    table.add_column("answer", overflow="fold")
    for a in sorted(result.answers, key=lambda a: (a.task_index, a.rank or 10**9)):
        row = [_cell(a.document_id or "(all)")]
        if multi_task:
            row.append(_cell(a.task))
        row += [Text(a.outcome.replace("_", " ")), _cell(_answer_cell(a))]
        table.add_row(*row)
    out.print(table)
    out.print(Text("Answer", style="bold"))
    out.print(rich_text(result.answer or "(none)"))
    notes = result.notes
    if notes:
        # The coordinator's own report, from its fields: model text never reaches this section.
        out.print(Text("Coordinator", style="bold"))
        for line in notes:
            out.print(rich_text(line, multiline=False))
    u = result.usage
    cost = f" · cost ${u.cost_usd:.4f}" if priced else ""  # unknown prices are not $0
    out.print(
        f"tokens {u.total_tokens:,} (prompt {u.prompt_tokens:,} + completion "
        f"{u.completion_tokens:,}) · calls {u.calls} · sub-agents {len(result.sub_results)} "
        f"({len(result.failed)} failed) · wall {u.wall_s:.2f} s{cost}"
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
    strategy: Annotated[
        StrategyName,
        typer.Option(
            help="One sub-agent per document and task, one prompt, or auto: whichever --profile "
            "measured to be better for the request's N and document length."
        ),
    ] = "isolated",
    profile: opts.ProfileFile = None,
    objective: opts.ObjectiveOption = opts.OBJECTIVE,
    min_accuracy: opts.MinAccuracy = None,
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
    chunk_tokens: opts.ChunkTokens = None,
    top_k: opts.TopK = None,
    budget_tokens: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Spend at most N tokens: a call that could pass it is not made (exit 1, resumable).",
        ),
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option(
            min=0.000001,
            metavar="DOLLARS",
            help="Spend at most this much at the model's --prices (exit 1, resumable).",
        ),
    ] = None,
    synthesis: Annotated[
        SynthesisMode, typer.Option(help="One more call merging the answers, or just list them.")
    ] = "llm",
    failure_policy: Annotated[
        str,
        typer.Option(
            metavar="best_effort|fail_fast|quorum=K",
            help="Answer with what succeeded, stop at the first failure, or need K successes.",
        ),
    ] = "best_effort",
    fallback: Annotated[
        BackendKind | None, typer.Option(help="Backend that retries a call the first one failed.")
    ] = None,
    fallback_model: Annotated[
        str | None, typer.Option(help="Model of the fallback backend (default: embedded).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Name this run; rerun with the same id to resume it.")
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="SQLite file that makes the run resumable after a crash.")
    ] = None,
    max_file_bytes: Annotated[
        int, typer.Option(min=1, help="Refuse document files larger than this.")
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
    prices: opts.PricesFile = None,
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
    _ON_INTERRUPT.set(_resume_hint(run_id, checkpoint))
    _check_options(
        question=question,
        instruction=instruction,
        chunk_tokens=chunk_tokens,
        checkpoint=checkpoint,
        run_id=run_id,
        paired=paired,
    )
    chooser = opts.auto_chooser(strategy == "auto", profile, objective, min_accuracy)
    failures = FailurePolicy.parse(failure_policy)
    policy = replace(
        opts.CallOptions(
            max_concurrency=max_concurrency, timeout=timeout, retries=retries, max_tokens=max_tokens
        ).policy(parallel=parallel),
        budget_tokens=budget_tokens,
        budget_usd=budget_usd,
    )
    model_options = opts.ModelOptions(
        backend=backend, model=model, base_url=base_url, endpoint=endpoint,
        n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, threads=threads, parallel=parallel,
        context_window=context_window,
    )  # fmt: skip
    request = Request(
        documents=load_documents(docs, max_bytes=max_file_bytes),
        question=question,
        instructions=instruction or (),
        paired=paired,
    )
    schema = load_output_schema(output_schema) if output_schema is not None else None
    with contextlib.ExitStack() as held:  # closed in reverse: backends, lease, checkpoint
        saved = None
        if checkpoint is not None and run_id is not None and not dry_run:
            saved = held.enter_context(open_checkpoint(checkpoint))
            # one process per run: a second one would compute every sub-agent again
            held.enter_context(saved.lease(run_id))
        chosen = held.enter_context(model_options.open_backend(timeout_s=timeout))
        if prices is not None:
            apply_prices(chosen, load_prices(prices), source=prices)
        if fallback is not None:
            spare = opts.ModelOptions(
                backend=fallback, model=fallback_model, n_ctx=n_ctx, threads=threads
            )
            local = held.enter_context(spare.open_backend(timeout_s=timeout))
            chosen = FallbackBackend(chosen, local)
        coordinator = Coordinator(
            chosen,
            strategy=strategy,
            profile=chooser.profile if chooser else None,
            objective=objective,
            min_accuracy=min_accuracy,
            synthesis=synthesis,
            output_schema=schema,
            policy=policy,
            splitter=(
                TopKSplitter(k=top_k, of=DocumentSplitter(chunk_tokens=chunk_tokens))
                if top_k is not None
                else None
            ),
            chunk_tokens=chunk_tokens,
            failure_policy=failures,
            checkpointer=saved.checkpointer if saved else None,
            result_store=saved.result_store if saved else None,
        )
        err = console(stderr=True)
        plan = _plan(coordinator, request, run_id if saved else None, err, quiet=json_output)
        estimate = (
            coordinator.kit.estimate(plan)
            if budget_tokens is not None or budget_usd is not None or dry_run
            else None
        )
        _announce(plan, coordinator, log_json=log_json, estimate=estimate)
        if dry_run:
            return 0
        try:
            result = _run(coordinator, plan, run_id, err, quiet=json_output)
        except RunFailed as exc:
            kept = sum(r.status == "ok" for r in exc.partial)
            where = f"; {kept} finished sub-results are saved in {checkpoint}" if saved else ""
            sys.stderr.write(for_terminal(f"fanout: run stopped: {exc}{where}") + "\n")
            return 1
        except (CheckpointError, sqlite3.Error) as exc:  # read-only, disk full, damaged mid-run
            detail = (
                str(exc) if isinstance(exc, CheckpointError) else f"{exc} ({storage_hint(exc)})"
            )
            resume = "" if storage_damaged(exc) else _resume_hint(run_id, checkpoint)
            raise UserError(f"checkpoint {checkpoint}: {detail}{resume}") from None
    if json_output:  # JSON escapes controls itself and keeps every value whole
        sys.stdout.write(scrub(result.model_dump_json(indent=2)) + "\n")
    else:
        _print_result(result, console(soft_wrap=True), priced=prices is not None)
    hint = (
        _endpoint_hint(result, chosen.name) if backend == "openai" and endpoint == "chat" else None
    )
    if hint is not None:
        sys.stderr.write(for_terminal(hint) + "\n")
    return 0 if result.ok else 1


def _resume_hint(run_id: str | None, checkpoint: str | None) -> str:
    """How to pick an interrupted run up again (or why it cannot be)."""
    if run_id is None or checkpoint is None:
        return "; nothing was saved (--run-id ID --checkpoint FILE.db make a run resumable)"
    return (
        f"; rerun with --run-id {shlex.quote(run_id)} --checkpoint {shlex.quote(checkpoint)} "
        "to resume"
    )


def _check_options(
    *,
    question: str | None,
    instruction: list[str] | None,
    chunk_tokens: int | None,
    checkpoint: str | None,
    run_id: str | None,
    paired: bool,
) -> None:
    """The checks of `run`'s own options that need more than one option or a range.

    Single values (ranges, choices, finite numbers) are refused while the command line is parsed
    (`fanout.orchestrator._cli_options`), before this runs.
    """
    if question is not None and not question.strip():
        raise UserError("the question is empty")
    if question is None and not instruction:
        raise UserError("give --question or at least one --instruction")
    if paired and question is not None:
        raise UserError("--paired pairs documents with --instruction values; drop --question")
    opts.check_chunk_tokens(chunk_tokens)
    if checkpoint is not None and run_id is None:
        raise UserError("--checkpoint needs --run-id (the name to resume the run under)")


def _progress(err: Console, *, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
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
    coordinator: Coordinator,
    request: Request,
    run_id: str | None,
    err: Console,
    *,
    quiet: bool,
) -> RunPlan:
    """Split the request, with a progress bar (by characters) on a terminal.

    When `run_id` names a checkpointed run, the plan is the one it started with.
    """
    total = sum(len(d.text) for d in request.documents)
    if not err.is_terminal and total >= _LOUD_SPLIT_CHARS:
        sys.stderr.write(
            f"fanout: splitting {len(request.documents):,} document(s), "
            f"{total / (1 << 20):.1f} MiB of text\n"
        )
    with _progress(err, quiet=quiet) as progress:
        bar = progress.add_task("splitting (characters)", total=total)
        return coordinator.plan(
            request,
            run_id=run_id,
            progress=lambda done, _: progress.update(bar, completed=done),
        )


def _announce(
    plan: RunPlan, coordinator: Coordinator, *, log_json: bool, estimate: int | None = None
) -> None:
    """Say on stderr, before any model call, how many sub-agents and model calls the run plans.

    Under ``--strategy auto``, `plan.choice` is what auto chose for this request, and why.
    """
    tasks, choice = plan.tasks, plan.choice
    documents, chunked = plan.documents, plan.chunked
    llm = isinstance(coordinator.stages.synthesize, LLMSynthesizer)
    mode = plan.mode
    monolithic = mode == "monolithic"
    merges = chunked if llm and not monolithic else 0
    synthesis = llm and not monolithic
    if log_json:
        log_event(
            logger,
            logging.INFO,
            "run.plan",
            sub_agents=len(tasks),
            documents=documents,
            unasked=len(plan.unasked),
            **({"estimated_tokens": estimate} if estimate is not None else {}),
            chunked=chunked,
            sub_agent_calls=len(tasks),
            merge_calls_at_most=merges,
            synthesis=synthesis,
            strategy=mode,
            **({"auto": choice.reason} if choice is not None else {}),
        )
        return
    if choice is not None:
        sys.stderr.write(
            for_terminal(f"fanout: auto chose {choice.strategy}: {choice.reason}") + "\n"
        )
    if monolithic:
        line = "1 sub-agent holding every document; model calls: 1"
    else:
        cut = f", {chunked:,} of them cut into chunks" if chunked else ""
        left = f" ({len(plan.unasked):,} left out by the pre-filter)" if plan.unasked else ""
        line = (
            f"{len(tasks):,} sub-agent(s) over {documents:,} document(s){cut}{left}; model calls: "
            f"{len(tasks):,} for the sub-agents"
            + (f", up to {merges:,} to merge chunk answers" if merges else "")
            + (", then synthesis calls as needed" if synthesis else "")
        )
    if estimate is not None:
        budget = coordinator.policy.budget_tokens
        limit = f", budget {budget:,}" if budget is not None else ""
        line += f" (retries add calls); sub-agent calls up to ~{estimate:,} tokens{limit}"
    else:
        line += " (retries add calls)"
    sys.stderr.write(f"fanout: plan: {line}\n")


def _run(
    coordinator: Coordinator, plan: RunPlan, run_id: str | None, err: Console, *, quiet: bool
) -> RunResult:
    with _progress(err, quiet=quiet) as progress:
        return coordinator.run(plan, run_id=run_id, hooks=_ProgressHooks(progress))


app.command("eval")(eval_command)
app.command("bench")(bench_command)
app.command("report")(report_command)
app.command("ladder")(ladder_command)
app.add_typer(models_app, name="models")


def _fail(message: str) -> int:
    line = for_terminal(" ".join(message.split()))
    sys.stderr.write(f"fanout: error: {line}\n")
    return 2


# Library arguments whose command-line option has another name.
_OPTION_FOR = {"model_path": "model", "n_threads": "threads", "n_parallel": "parallel",
               "timeout_s": "timeout", "kind": "backend"}  # fmt: skip


def _flag(parameter: str, command: Any) -> str | None:
    """The flag that sets library argument `parameter`, in any command (they share names)."""
    name = _OPTION_FOR.get(parameter, parameter)
    for sub in command.commands.values():
        for param in sub.params:
            if param.name == name and param.opts[0].startswith("--"):
                return str(param.opts[0])
    return None


def _user_error(exc: UserError, command: Any) -> str:
    """The library's message with the flag the user typed in place of the argument's name."""
    if exc.parameter is None:
        return str(exc)
    flag = _flag(exc.parameter, command)
    return f"{flag}: {exc.message}" if flag else exc.message


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps every anticipated failure to one line and an exit code."""
    command = typer.main.get_command(app)
    COMMAND_LINE.set(shlex.join(["fanout", *(sys.argv[1:] if argv is None else argv)]))
    try:
        with stop_on_signals():
            code = command.main(args=argv, prog_name="fanout", standalone_mode=False)
    except (Interrupted, KeyboardInterrupt) as exc:  # the run was cancelled before anything closed
        sys.stderr.write(f"fanout: interrupted{_ON_INTERRUPT.get()}\n")
        code = exit_code(exc)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # typer's own (vendored click) usage errors
        format_message = getattr(exc, "format_message", None)
        message = format_message() if format_message else str(exc)
        code = _fail(f"{message} (see fanout --help)")
    except UserError as exc:
        code = _fail(_user_error(exc, command))
    except ValidationError as exc:  # a request or config model built from the options
        code = _fail(validation_message(exc))
    except typer.Abort:
        sys.stderr.write("fanout: interrupted\n")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
