"""Did ``auto`` choose well? Its cells against the best fixed strategy at each N, on the same groups.

The bar: auto's accuracy lies within the 95% interval of the best fixed strategy measured at that
N (the most accurate, ties to the cheaper; oracle rows are an upper bound and not compared), and
it spends no more tokens than that strategy (within `TOKEN_NOISE`), unless it is more accurate
beyond that interval (the sweep then lacks the fixed strategy auto ran).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from ._profile import ADAPTIVE
from .metrics import CellMetrics
from .records import GroupRecord
from .strategies import ROUTING

__all__ = ["TOKEN_NOISE", "AutoCheck", "check_auto"]

TOKEN_NOISE = 0.01
"""Token counts within this fraction count as equal. The same strategy run twice on the same groups
is not token-identical on llama.cpp: with concurrent calls, cache reuse changes some greedy
completions, so their lengths differ (prompt tokens and calls stay the same)."""


class AutoCheck(BaseModel):
    """auto at one N against the best fixed strategy there."""

    model_config = ConfigDict(frozen=True)

    n: int
    """Instances per group."""
    strategy: str
    """The adaptive strategy checked (auto)."""
    chosen: dict[str, int]
    """How many of its questions ran as each strategy."""
    accuracy: float
    """auto's accuracy."""
    ci_low: float
    """Lower end of auto's 95% interval."""
    ci_high: float
    """Upper end of auto's 95% interval."""
    tokens: int
    """auto's tokens."""
    best: str
    """The best fixed strategy at this N."""
    best_accuracy: float
    """Its accuracy."""
    best_ci_low: float
    """Lower end of its 95% interval."""
    best_ci_high: float
    """Upper end of its 95% interval."""
    best_tokens: int
    """Its tokens."""
    within_interval: bool
    """auto's accuracy lies within the best fixed strategy's interval (or above it)."""
    no_more_tokens: bool
    """auto spent no more tokens than the best fixed strategy (within `TOKEN_NOISE`)."""
    beyond_interval: bool
    """auto's accuracy lies above the best fixed strategy's whole interval."""

    @property
    def passed(self) -> bool:
        """As accurate as the best fixed strategy, for no more tokens (or more accurate outright)."""
        return self.within_interval and (self.no_more_tokens or self.beyond_interval)

    @property
    def token_ratio(self) -> float | None:
        """Tokens of auto over tokens of the best fixed strategy."""
        return self.tokens / self.best_tokens if self.best_tokens else None


def check_auto(cells: Sequence[CellMetrics], records: Sequence[GroupRecord]) -> list[AutoCheck]:
    """One check per (adaptive strategy, N) that has fixed strategies beside it."""
    checks = []
    for cell in cells:
        if cell.strategy not in ADAPTIVE:
            continue
        fixed = [
            c
            for c in cells
            if c.n == cell.n and c.strategy not in ADAPTIVE and ROUTING.get(c.strategy) != "oracle"
        ]
        if not fixed:
            continue
        best = max(fixed, key=lambda c: (c.accuracy, -c.total_tokens))
        chosen: Counter[str] = Counter(
            a.chosen or "none (failed)"
            for r in records
            if r.strategy == cell.strategy and r.n == cell.n and r.condition == "clean"
            for a in r.answers
        )
        checks.append(
            AutoCheck(
                n=cell.n,
                strategy=cell.strategy,
                chosen=dict(sorted(chosen.items())),
                accuracy=cell.accuracy,
                ci_low=cell.ci_low,
                ci_high=cell.ci_high,
                tokens=cell.total_tokens,
                best=best.strategy,
                best_accuracy=best.accuracy,
                best_ci_low=best.ci_low,
                best_ci_high=best.ci_high,
                best_tokens=best.total_tokens,
                within_interval=cell.accuracy >= best.ci_low,
                no_more_tokens=cell.total_tokens <= best.total_tokens * (1 + TOKEN_NOISE),
                beyond_interval=cell.accuracy > best.ci_high,
            )
        )
    return checks
