"""The sweep: every strategy x N x group, clean and (with faults) faulted, resumable.

Groups are made once per (N, index) and handed to every strategy in turn, so strategies are always
compared on the same questions. results.json is rewritten after every group: an interrupted sweep
loses at most the group in flight, and running it again skips what is already recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from fanout.agents._portal import run_sync
from fanout.agents.backend import Backend, Usage
from fanout.agents.errors import UserError
from fanout.orchestrator.auto import StrategyChooser
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.profile import model_identity

from ._provenance import collect_provenance
from .asks import Answer, Ask, EvalStrategy, failed_answers
from .faults import FaultSpec, FaultyBackend
from .metrics import PriceTable
from .records import AnswerRecord, Condition, EvalConfig, EvalResults, GroupRecord
from .report import EvalReport, build_report, write_report
from .strategies import AutoStrategy, make_strategy
from .suites import Suite, make_suite
from .suites.group import Group

__all__ = [
    "RESULTS_FILE",
    "SweepProgress",
    "arun_sweep",
    "check_dataset_unchanged",
    "evaluate",
    "run_group",
]

RESULTS_FILE = "results.json"
"""The file in the output folder that holds every record."""


class SweepProgress(Protocol):
    """Receives the sweep's progress (the CLI draws it with rich)."""

    def start(self, total: int, done: int) -> None:
        """`total` group runs in the sweep, `done` of them already recorded."""
        ...

    def advance(self, label: str) -> None:
        """One more group run finished; `label` says which (skipped runs are counted in `start`)."""
        ...


async def run_group(
    strategy: EvalStrategy,
    group: Group,
    backend: Backend,
    policy: CallPolicy,
    *,
    n: int,
    index: int,
    faults: FaultSpec | None = None,
    seed: int = 0,
    document_tokens: float | None = None,
) -> GroupRecord:
    """Run one strategy on one group and score it; with `faults`, through a `FaultyBackend`.

    `document_tokens` (the group's mean document length) is recorded for the profile.
    """
    faulty = FaultyBackend(backend, faults, seed=seed) if faults and faults.active else None
    started = time.perf_counter()
    error = None
    usage = Usage()
    try:
        coordinator = strategy.coordinator(faulty or backend, policy)
        runs = await asyncio.gather(*(_ask(strategy, coordinator, a) for a in strategy.asks(group)))
        answers = [answer for run_answers, _ in runs for answer in run_answers]
        usage = sum((spent for _, spent in runs), Usage())
    except UserError:
        raise
    except Exception as exc:  # the strategy itself failed: the whole request is lost
        answers, error = [], f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - started
    by_id = {a.question_id: a for a in answers}
    return GroupRecord(
        strategy=strategy.name,
        n=n,
        group=index,
        group_id=group.id,
        document_ids=tuple(d.id for d in group.documents),
        document_tokens=document_tokens,
        condition="faulted" if faulty else "clean",
        answers=[
            AnswerRecord.score(q, by_id.get(q.id))
            if error is None
            else AnswerRecord(question=q, status="failed", error=error)
            for q in group.questions
        ],
        prompt_tokens=usage.prompt_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        completion_tokens=usage.completion_tokens,
        calls=usage.calls,
        wall_s=wall,
        cost_usd=usage.cost_usd,
        faults=[f.kind for f in faulty.injected] if faulty else [],
        error=error,
    )


def check_dataset_unchanged(results: EvalResults, path: Path) -> None:
    """Refuse results whose dataset file has changed since they were scored (``--report-only``).

    Their answers were scored against the gold answers of the dataset as it was; a report from
    them would be a report on data the file no longer holds. A dataset that cannot be read any
    more cannot be checked: its stored copy (in the records) is what the report uses.

    Raises:
        UserError: the dataset at ``config.source`` loads to other instances than were recorded.
    """
    config = results.config
    if config.dataset_sha256 is None:
        return
    try:
        suite = make_suite(config.suite, dataset=config.source)
    except UserError:
        return  # moved or unreadable: nothing to compare with
    now = getattr(suite, "sha256", None)
    if now is not None and now != config.dataset_sha256:
        raise UserError(
            f"{path} was scored against another version of {config.source} (dataset sha256 "
            f"{config.dataset_sha256[:12]}... there, {now[:12]}... now): run the eval again "
            "into another folder"
        )


def _open_results(out: Path | None, config: EvalConfig) -> EvalResults:
    path = out / RESULTS_FILE if out is not None else None
    if path is None or not path.exists():
        return EvalResults(config=config)
    results = EvalResults.load(path)
    differs = results.config.mismatch(config)
    if differs is not None:
        raise UserError(
            f"{path} holds a different eval (it differs in {differs}); "
            "write to another folder, or delete it to start over",
            parameter="out",
        )
    merged = config.model_copy(
        update={
            "strategies": list(dict.fromkeys([*results.config.strategies, *config.strategies])),
            "instances": sorted({*results.config.instances, *config.instances}),
            "groups": max(results.config.groups, config.groups),
        }
    )
    return results.model_copy(update={"config": merged})


async def _ask(
    strategy: EvalStrategy, coordinator: Coordinator[Any], ask: Ask
) -> tuple[list[Answer], Usage]:
    """One request of a strategy: its answers, and what its successful calls cost."""
    try:
        result = await coordinator.arun(ask.request, deps=ask.deps)
    except UserError:
        raise
    except Exception as exc:  # the whole run failed: every answer of it is lost
        return failed_answers(ask.questions, f"{type(exc).__name__}: {exc}"), Usage()
    return strategy.read(ask, result), sum(result.usage.stages.values(), Usage())


async def arun_sweep(
    suite: Suite,
    strategies: Sequence[EvalStrategy],
    backend: Backend,
    *,
    instances: Sequence[int],
    groups: int,
    seed: int = 0,
    faults: FaultSpec | None = None,
    policy: CallPolicy | None = None,
    batch_size: int = 4,
    top_k: int = 5,
    chunk_tokens: int | None = None,
    out: Path | None = None,
    progress: SweepProgress | None = None,
) -> EvalResults:
    """Run the sweep, skipping group runs already in ``out/results.json``; returns every record.

    `batch_size`, `top_k` and `chunk_tokens` are recorded in the config: pass the values the
    strategies were made with.
    """
    policy = policy or CallPolicy(max_attempts=1, max_tokens=64)
    if groups < 1:
        raise UserError(f"must be at least 1, not {groups}", parameter="groups")
    if not instances or any(n < 1 for n in instances):
        raise UserError("must list positive numbers, e.g. 1,2,5,10", parameter="instances")
    names = [s.name for s in strategies]
    if not names or len(set(names)) != len(names):
        raise UserError("give at least one strategy, each once")
    for n in instances:
        suite.check(n, groups)
    autos = [s for s in strategies if isinstance(s, AutoStrategy)]
    for auto in autos:
        auto.chooser.check_backend(backend)  # a profile of another model: refused before any call
    config = EvalConfig(
        suite=suite.name,
        source=suite.source,
        dataset_sha256=getattr(suite, "sha256", None),
        model=backend.name,
        model_sha256=model_identity(backend).sha256,
        strategies=names,
        instances=list(instances),
        groups=groups,
        seed=seed,
        faults=str(faults) if faults else "none",
        batch_size=batch_size,
        top_k=top_k,
        chunk_tokens=chunk_tokens,
        max_tokens=policy.max_tokens,
        max_attempts=policy.max_attempts,
        timeout_s=policy.timeout_s,
        max_concurrency=policy.max_concurrency,
        auto="; ".join(a.describe() for a in autos),
    )
    results = _open_results(out, config)
    results.runs.append(collect_provenance(backend))
    done = results.done()
    conditions: list[Condition] = ["clean", "faulted"] if faults and faults.active else ["clean"]
    # A group's faulted runs come after all its clean ones: resending a prompt right after itself
    # lets llama.cpp reuse its whole cache, which alone can change a greedy answer.
    keys = [
        (n, g, s, c)
        for n in instances
        for g in range(groups)
        for c in conditions
        for s in strategies
    ]
    if progress:
        progress.start(len(keys), sum((s.name, n, g, c) in done for n, g, s, c in keys))
    made: dict[tuple[int, int], tuple[Group, float]] = {}
    for n, g, strategy, condition in keys:
        label = f"{strategy.name} N={n} group {g + 1}/{groups}" + (
            " (faulted)" if condition == "faulted" else ""
        )
        if (strategy.name, n, g, condition) in done:
            continue
        if (n, g) not in made:
            group = suite.group(n, g, seed=seed)
            lengths = [backend.count_tokens(d.text) for d in group.documents]
            made[(n, g)] = group, sum(lengths) / len(lengths)
        group, document_tokens = made[(n, g)]
        record = await run_group(
            strategy,
            group,
            backend,
            policy,
            n=n,
            index=g,
            faults=faults if condition == "faulted" else None,
            seed=seed,
            document_tokens=document_tokens,
        )
        results.records.append(record)
        if out is not None:
            results.save(out / RESULTS_FILE)
        if progress:
            progress.advance(label)
    return results


def evaluate(
    backend: Backend,
    *,
    suite: str | Suite = "keyvalue",
    strategies: Sequence[str | EvalStrategy] = ("isolated", "monolithic"),
    instances: Sequence[int] = (1, 2, 5, 10),
    groups: int = 3,
    seed: int = 0,
    faults: str | FaultSpec | None = None,
    dataset: str | Path | None = None,
    doc_tokens: int = 120,
    position: str = "random",
    items: str | None = None,
    batch_size: int = 4,
    top_k: int = 5,
    chunk_tokens: int | None = None,
    policy: CallPolicy | None = None,
    prices: PriceTable | None = None,
    out: str | Path | None = None,
    progress: SweepProgress | None = None,
    auto: StrategyChooser | None = None,
) -> EvalReport:
    """Measure strategies against each other on one suite; the library form of ``fanout eval``.

    Args:
        backend: the model (wrap nothing: faults are injected here when `faults` is given).
        suite: a suite name (see `fanout.evals.suites.SUITES`) or your own `Suite`.
        strategies: names (see `fanout.evals.strategies.STRATEGIES`) or your own `EvalStrategy` objects.
        instances: the values of N (instances packed into one request).
        groups: requests per N.
        seed: seeds the synthetic data, the dataset shuffle and the faults.
        faults: e.g. "error=0.1,timeout=0.05": each group also runs faulted, for blast radius.
        dataset: data file for the nq, jsonl and mti suites.
        doc_tokens: document length of the synthetic suites.
        position: where the fact, gold passage or gold pair sits (start, middle, end, random).
        items: the items of a Lost in the Middle file to read, "START:END" (nq, mdqa,
            kvretrieval); None reads the development range.
        batch_size: questions per call of the batch strategy.
        top_k: sub-tasks the isolated-topk pre-filter keeps per question.
        chunk_tokens: the largest document chunk of the isolated strategies (None: what fits
            the model's context).
        policy: call policy; default one attempt per call (faults show), 64-token answers.
        prices: re-prices tokens for API models.
        out: folder for results.json, report.md, report.html and plots; resumes what is there.
        progress: receives progress (the CLI's rich bar).
        auto: the profile and objective the "auto" strategy chooses with (default: no profile,
            the built-in rule). Measure the profile on other groups (another seed) than the ones
            auto is checked on.
    """
    the_suite = (
        make_suite(suite, dataset=dataset, doc_tokens=doc_tokens, position=position, items=items)
        if isinstance(suite, str)
        else suite
    )
    chosen = [
        make_strategy(
            s, batch_size=batch_size, top_k=top_k, chooser=auto, chunk_tokens=chunk_tokens
        )
        if isinstance(s, str)
        else s
        for s in strategies
    ]
    spec = FaultSpec.parse(faults) if isinstance(faults, str) else faults
    folder = Path(out) if out is not None else None
    results = run_sync(
        arun_sweep(
            the_suite,
            chosen,
            backend,
            instances=instances,
            groups=groups,
            seed=seed,
            faults=spec,
            policy=policy,
            batch_size=batch_size,
            top_k=top_k,
            chunk_tokens=chunk_tokens,
            out=folder,
            progress=progress,
        )
    )
    report = build_report(results, prices=prices)
    if folder is not None:
        report = write_report(report, folder)
    return report
