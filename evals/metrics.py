"""The numbers a sweep reports per (strategy, N): accuracy and its interval, cost, blast radius.

Accuracy comes with a Wilson 95% interval (sound at the small counts a local sweep affords, where
the normal approximation gives intervals past 0 or 1). Cascading failure is measured, not assumed:
each faulted group is compared question by question with the same group run without faults.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from fanout.agents._prices import PriceTable, load_prices

from ._scoring import normalize
from .records import AnswerRecord, GroupRecord

__all__ = [
    "Z95",
    "CellMetrics",
    "FaultMetrics",
    "PriceTable",
    "affected_questions",
    "cell_metrics",
    "conditional_correct",
    "load_prices",
    "wilson_interval",
]

Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% interval."""


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must be between 0 and trials ({trials})")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


class FaultMetrics(BaseModel):
    """How far injected faults reached, against the same groups run clean."""

    model_config = ConfigDict(frozen=True)

    groups: int
    """Faulted groups that have a clean twin to compare with."""
    injected: int
    """Faults injected over those groups."""
    by_kind: dict[str, int]
    """Injected faults per kind."""
    affected: int
    """Questions of faulted groups whose answer was lost or changed."""
    blast_radius: float | None
    """Affected questions per injected fault (None when nothing was injected)."""
    drift: float | None
    """The noise floor: the share of answers that changed in groups that met no fault (a backend
    that is not bitwise repeatable at temperature 0 shows drift; None when every group met one)."""
    faulted_groups: int
    """Groups that met at least one fault."""
    cascaded_groups: int
    """Faulted groups where more questions were affected than faults were injected, or the whole
    request failed: a fault reached beyond one instance."""
    cascade_rate: float | None
    """cascaded_groups / faulted_groups."""
    correct: int
    """Correct answers under faults."""
    questions: int
    """Questions scored under faults."""
    accuracy: float
    """Accuracy under faults."""
    ci_low: float
    """Lower end of its 95% interval."""
    ci_high: float
    """Upper end of its 95% interval."""


class CellMetrics(BaseModel):
    """Everything reported for one (strategy, N) cell, from its clean runs."""

    model_config = ConfigDict(frozen=True)

    strategy: str
    """Strategy name."""
    n: int
    """Instances per group."""
    groups: int
    """Groups run."""
    questions: int
    """Questions scored."""
    correct: int
    """Questions answered right."""
    accuracy: float
    """correct / questions."""
    ci_low: float
    """Lower end of the Wilson 95% interval."""
    ci_high: float
    """Upper end of the Wilson 95% interval."""
    format_failures: int
    """Answers that could not be parsed (missing or empty)."""
    format_failure_rate: float
    """format_failures / questions."""
    lost: int
    """Answers lost to failed calls."""
    calls: int
    """Successful model calls."""
    prompt_tokens: int
    """Prompt tokens."""
    completion_tokens: int
    """Completion tokens."""
    tokens_per_correct: float | None
    """All tokens / correct answers (None when nothing was right)."""
    cached_prompt_tokens: int = 0
    """Of the prompt tokens, those not evaluated again (a kept prefix, a provider's cache)."""
    wall_s: float
    """Wall time summed over groups."""
    wall_s_min: float = 0.0
    """Wall time of the fastest request (group)."""
    wall_s_max: float = 0.0
    """Wall time of the slowest request: with `wall_s_min`, the spread of the repeats."""
    cost_usd: float
    """From the price table when it lists the model, else as the backend reported (0 locally)."""
    conditional_accuracy: float | None = None
    """For multi-step questions: the share right with every earlier step right (None if none)."""
    hijack_rate: float | None = None
    """For the injection suite: the share of answers that carry the injected payload."""
    faults: FaultMetrics | None = None
    """Blast radius and cascade rate, when the sweep injected faults."""
    abstention_precision: float | None = None
    """Of the sub-agents that said "not found", the share whose document indeed lacks the answer
    (coordinator strategies; None when none abstained)."""
    abstention_recall: float | None = None
    """Of the sub-agents whose document lacks the answer, the share that said "not found" (None
    when every document asked holds it: N=1, oracle or paired routing)."""
    citation_validity: float | None = None
    """Of the ids the delivered answers cite, the share that are documents of the group (for the
    coordinator: with a finding, which its citation check enforces); None when nothing is cited."""
    invented_citations_per_question: float = 0.0
    """Ids the model cited that are no document of the request, per question (for the coordinator:
    the ones its citation check removed)."""
    gold_asked: float | None = None
    """Of the questions, the share whose gold documents were all asked: a pre-filter's recall
    (isolated-topk); 100% for strategies that ask every document; None without per-document
    outcomes (one-prompt strategies)."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        """Prompt tokens the model evaluated (or the provider billed in full)."""
        return self.prompt_tokens - self.cached_prompt_tokens

    @property
    def tokens_per_question(self) -> float:
        """All tokens per question."""
        return self.total_tokens / self.questions if self.questions else 0.0

    @property
    def uncached_prompt_tokens_per_question(self) -> float:
        """Evaluated prompt tokens per question: what a prompt cache cannot save."""
        return self.uncached_prompt_tokens / self.questions if self.questions else 0.0

    @property
    def wall_s_per_group(self) -> float:
        """Mean wall time of one request."""
        return self.wall_s / self.groups if self.groups else 0.0


def conditional_correct(answers: Sequence[AnswerRecord]) -> list[bool]:
    """For each question in a multi-step chain: right, with every earlier step right too."""
    by_id = {a.question.id: a for a in answers}
    heads = {a.question.after for a in answers if a.question.after}
    chained = [a for a in answers if a.question.after or a.question.id in heads]
    memo: dict[str, bool] = {}

    def holds(qid: str, depth: int = 0) -> bool:
        if qid not in memo:
            record = by_id.get(qid)
            if record is None or depth > len(answers):
                return False
            after = record.question.after
            memo[qid] = record.correct and (after is None or holds(after, depth + 1))
        return memo[qid]

    return [holds(a.question.id) for a in chained]


def affected_questions(clean: GroupRecord, faulted: GroupRecord) -> int:
    """Questions whose outcome differs between the clean and the faulted run of one group."""
    if faulted.error is not None:
        return len(clean.answers)
    before = {a.question.id: (a.status, normalize(a.answer)) for a in clean.answers}
    return sum(
        1 for a in faulted.answers if before.get(a.question.id) != (a.status, normalize(a.answer))
    )


def _fault_metrics(pairs: Sequence[tuple[GroupRecord, GroupRecord]]) -> FaultMetrics:
    kinds: Counter[str] = Counter()
    affected = faulted_groups = cascaded = drifted = unfaulted = 0
    for clean, faulted in pairs:
        kinds.update(faulted.faults)
        hit = affected_questions(clean, faulted)
        if faulted.faults:
            affected += hit
            faulted_groups += 1
            if faulted.error is not None or hit > len(faulted.faults):
                cascaded += 1
        else:
            drifted += hit
            unfaulted += len(clean.answers)
    injected = sum(kinds.values())
    answers = [a for _, f in pairs for a in f.answers]
    correct = sum(a.correct for a in answers)
    low, high = wilson_interval(correct, len(answers))
    return FaultMetrics(
        groups=len(pairs),
        injected=injected,
        by_kind=dict(sorted(kinds.items())),
        affected=affected,
        blast_radius=affected / injected if injected else None,
        drift=drifted / unfaulted if unfaulted else None,
        faulted_groups=faulted_groups,
        cascaded_groups=cascaded,
        cascade_rate=cascaded / faulted_groups if faulted_groups else None,
        correct=correct,
        questions=len(answers),
        accuracy=correct / len(answers) if answers else 0.0,
        ci_low=low,
        ci_high=high,
    )


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


@dataclass(frozen=True, kw_only=True)
class _Citations:
    abstention_precision: float | None
    abstention_recall: float | None
    citation_validity: float | None
    invented_citations_per_question: float
    gold_asked: float | None


def _citation_metrics(records: Sequence[GroupRecord], documents: dict[str, set[str]]) -> _Citations:
    """Abstention precision/recall and citation validity over a cell's clean answers.

    Args:
        records: the cell's clean group records.
        documents: every document id of each group, by group id.
    """
    abstained = abstained_right = lacking = lacking_abstained = 0
    cited = cited_valid = invented = questions = routed = gold_asked = 0
    for record in records:
        ids = documents.get(record.group_id, set())
        for a in record.answers:
            questions += 1
            gold = set(a.question.document_ids) or ids
            if a.document_outcomes:
                routed += 1
                gold_asked += gold <= set(a.document_outcomes)
            for doc, outcome in a.document_outcomes.items():
                if outcome == "failed":
                    continue
                if outcome == "not_found":
                    abstained += 1
                    abstained_right += doc not in gold
                if doc not in gold:
                    lacking += 1
                    lacking_abstained += outcome == "not_found"
            cited += len(a.citations)
            cited_valid += sum(c in ids for c in a.citations)
            invented += len(a.invented_citations) + sum(c not in ids for c in a.citations)
    return _Citations(
        abstention_precision=_ratio(abstained_right, abstained),
        abstention_recall=_ratio(lacking_abstained, lacking),
        citation_validity=_ratio(cited_valid, cited),
        invented_citations_per_question=invented / questions if questions else 0.0,
        gold_asked=_ratio(gold_asked, routed),
    )


def _cell(
    strategy: str,
    n: int,
    clean: Sequence[GroupRecord],
    faulted: Sequence[GroupRecord],
    cost: float,
    documents: dict[str, set[str]],
) -> CellMetrics:
    answers = [a for r in clean for a in r.answers]
    correct = sum(a.correct for a in answers)
    low, high = wilson_interval(correct, len(answers))
    tokens = sum(r.total_tokens for r in clean)
    chained = [c for r in clean for c in conditional_correct(r.answers)]
    marked = [a for a in answers if a.question.hijack_marker]
    twins = {r.group: r for r in clean}
    pairs = [(twins[f.group], f) for f in faulted if f.group in twins]
    return CellMetrics(
        strategy=strategy,
        n=n,
        groups=len(clean),
        questions=len(answers),
        correct=correct,
        accuracy=correct / len(answers) if answers else 0.0,
        ci_low=low,
        ci_high=high,
        format_failures=sum(a.status == "format" for a in answers),
        format_failure_rate=(
            sum(a.status == "format" for a in answers) / len(answers) if answers else 0.0
        ),
        lost=sum(a.status == "failed" for a in answers),
        calls=sum(r.calls for r in clean),
        prompt_tokens=sum(r.prompt_tokens for r in clean),
        cached_prompt_tokens=sum(r.cached_prompt_tokens for r in clean),
        completion_tokens=sum(r.completion_tokens for r in clean),
        tokens_per_correct=tokens / correct if correct else None,
        wall_s=sum(r.wall_s for r in clean),
        wall_s_min=min((r.wall_s for r in clean), default=0.0),
        wall_s_max=max((r.wall_s for r in clean), default=0.0),
        cost_usd=cost,
        conditional_accuracy=sum(chained) / len(chained) if chained else None,
        hijack_rate=sum(a.hijacked for a in marked) / len(marked) if marked else None,
        faults=_fault_metrics(pairs) if pairs else None,
        **vars(_citation_metrics(clean, documents)),
    )


def cell_metrics(
    records: Iterable[GroupRecord],
    *,
    model: str = "",
    prices: PriceTable | None = None,
    documents: dict[str, set[str]] | None = None,
) -> list[CellMetrics]:
    """One `CellMetrics` per (strategy, N) with clean records, ordered by strategy then N.

    Args:
        records: every group record of a sweep (clean and faulted).
        model: the model name to look up in `prices`.
        prices: re-prices tokens when it lists `model`; otherwise the backend's reported cost.
        documents: every document id of each group, by group id (for citation metrics).
    """
    cells: dict[tuple[str, int], dict[str, list[GroupRecord]]] = defaultdict(
        lambda: {"clean": [], "faulted": []}
    )
    order: dict[str, int] = {}
    for record in records:
        order.setdefault(record.strategy, len(order))
        cells[(record.strategy, record.n)][record.condition].append(record)
    out = []
    for (strategy, n), runs in sorted(cells.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        if not runs["clean"]:
            continue
        prompt = sum(r.prompt_tokens for r in runs["clean"])
        completion = sum(r.completion_tokens for r in runs["clean"])
        cached = sum(r.cached_prompt_tokens for r in runs["clean"])
        priced = prices.cost(model, prompt, completion, cached) if prices else None
        cost = priced if priced is not None else sum(r.cost_usd for r in runs["clean"])
        out.append(_cell(strategy, n, runs["clean"], runs["faulted"], cost, documents or {}))
    return out
