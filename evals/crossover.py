"""Crossover: the smallest N where isolated beats a baseline beyond the 95% interval, and its price.

"Beyond the interval" means the two Wilson intervals do not overlap: a deliberately strict test, so
a recommendation to switch is never made on noise. The answer may go either way (MTI Bench found
one prompt better for strong models), and the line says so when it does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .metrics import CellMetrics

__all__ = ["Crossover", "find_crossover"]


class Crossover(BaseModel):
    """Where one strategy starts to beat another beyond the 95% interval, and at what price."""

    model_config = ConfigDict(frozen=True)

    suite: str
    """Suite measured."""
    model: str
    """Model measured."""
    challenger: str
    """The strategy that may win (isolated)."""
    baseline: str
    """The strategy it is compared with (monolithic)."""
    n: int | None
    """The smallest N where challenger's interval lies wholly above baseline's; None if none."""
    baseline_wins_at: int | None
    """The smallest N where baseline's interval lies wholly above challenger's, if any."""
    ratio: float | None
    """challenger / baseline cost (or tokens, for free local models) at `n`, or at the largest N
    compared when there is no crossover."""
    ratio_of: Literal["cost", "tokens"]
    """What `ratio` compares."""
    recommendation: str
    """One line saying which to use."""


def _ratio(a: CellMetrics, b: CellMetrics) -> tuple[float | None, Literal["cost", "tokens"]]:
    if a.cost_usd > 0 and b.cost_usd > 0:
        return a.cost_usd / b.cost_usd, "cost"
    return (a.total_tokens / b.total_tokens if b.total_tokens else None), "tokens"


def _acc(c: CellMetrics) -> str:
    return f"{c.accuracy:.0%} [{c.ci_low:.0%}-{c.ci_high:.0%}]"


def find_crossover(
    cells: Sequence[CellMetrics],
    *,
    suite: str,
    model: str,
    challenger: str = "isolated",
    baseline: str = "monolithic",
) -> Crossover | None:
    """Compare `challenger` with `baseline` at every N both were run at (None if none)."""
    ours: Mapping[int, CellMetrics] = {c.n: c for c in cells if c.strategy == challenger}
    theirs: Mapping[int, CellMetrics] = {c.n: c for c in cells if c.strategy == baseline}
    common = sorted(set(ours) & set(theirs))
    if not common:
        return None
    wins = [n for n in common if ours[n].ci_low > theirs[n].ci_high]
    losses = [n for n in common if ours[n].ci_high < theirs[n].ci_low]
    from .strategies import ROUTING

    routing = f"{ROUTING.get(challenger, 'custom')} routing"
    where = f"{suite} · {model} ({routing})"
    at = wins[0] if wins else common[-1]
    ratio, ratio_of = _ratio(ours[at], theirs[at])
    price = f"{ratio:.2f}x the {ratio_of}" if ratio is not None else f"unknown {ratio_of}"
    a, b = ours[at], theirs[at]
    if wins:
        line = (
            f"{where}: {challenger} beats {baseline} from N={at} ({_acc(a)} vs {_acc(b)}) "
            f"at {price}; use {challenger} from N={at}."
        )
    elif losses:
        lost = losses[0]
        line = (
            f"{where}: {baseline} beats {challenger} at N={lost} "
            f"({_acc(theirs[lost])} vs {_acc(ours[lost])}); no N up to {common[-1]} where "
            f"{challenger} wins beyond the interval: prefer {baseline} here."
        )
    else:
        line = (
            f"{where}: no crossover up to N={at}: the 95% intervals overlap at every N "
            f"(N={at}: {challenger} {_acc(a)} vs {baseline} {_acc(b)}, at {price}); "
            f"measure more groups to separate them."
        )
    return Crossover(
        suite=suite,
        model=model,
        challenger=challenger,
        baseline=baseline,
        n=wins[0] if wins else None,
        baseline_wins_at=losses[0] if losses else None,
        ratio=ratio,
        ratio_of=ratio_of,
        recommendation=line,
    )
