"""From an eval's records to the `Profile` that ``strategy="auto"`` chooses from (profile.json).

One row per (strategy, N, document-length band), from clean runs only: faults measure containment,
not what a strategy does on a healthy backend. Rows of ``auto`` itself are left out (a profile
must not learn from the choices it made), and oracle rows are kept but marked, never chosen.
"""

from __future__ import annotations

from collections import defaultdict

from fanout.orchestrator.profile import ModelIdentity, Profile, ProfileRow, length_band

from .metrics import wilson_interval
from .records import EvalResults, GroupRecord
from .strategies import ROUTING

__all__ = ["ADAPTIVE", "build_profile"]

ADAPTIVE = frozenset({"auto"})
"""Strategies whose choices come from a profile: never measured into one."""


def _row(
    strategy: str, n: int, band: str, records: list[GroupRecord], top_k: int
) -> ProfileRow | None:
    answers = [a for r in records for a in r.answers]
    if not answers:
        return None
    correct = sum(a.correct for a in answers)
    low, high = wilson_interval(correct, len(answers))
    lengths = [r.document_tokens for r in records if r.document_tokens is not None]
    return ProfileRow(
        strategy=strategy,
        routing=ROUTING.get(strategy, "custom"),
        n=n,
        band=band,
        document_tokens=sum(lengths) / len(lengths) if lengths else None,
        groups=len(records),
        questions=len(answers),
        correct=correct,
        accuracy=correct / len(answers),
        ci_low=low,
        ci_high=high,
        tokens_per_question=sum(r.total_tokens for r in records) / len(answers),
        wall_s_per_question=sum(r.wall_s for r in records) / len(answers),
        top_k=top_k if strategy == "isolated-topk" else None,
    )


def build_profile(results: EvalResults) -> Profile:
    """The profile of a sweep: every fixed strategy's clean cells, split by document length."""
    config = results.config
    cells: dict[tuple[str, int, str], list[GroupRecord]] = defaultdict(list)
    for record in results.records:
        if record.condition != "clean" or record.strategy in ADAPTIVE:
            continue
        band = "any" if record.document_tokens is None else length_band(record.document_tokens)
        cells[(record.strategy, record.n, band)].append(record)
    rows = [
        row
        for (strategy, n, band), records in sorted(cells.items())
        if (row := _row(strategy, n, band, records, config.top_k)) is not None
    ]
    return Profile(
        model=ModelIdentity(name=config.model, sha256=config.model_sha256),
        suite=config.suite,
        source=f"{config.source}; seed {config.seed}; up to {config.groups} groups per N",
        rows=rows,
    )
