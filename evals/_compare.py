"""Two eval runs side by side (two models, two prompt versions): what changed, and whether it is real.

A difference counts only when the two Wilson 95% intervals do not overlap, the same strict test the
crossover line uses; anything less is reported as within noise, with the measured numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from fanout.agents.errors import UserError

from .metrics import CellMetrics, cell_metrics
from .records import EvalResults

__all__ = ["CellComparison", "Comparison", "compare_results", "load_results"]

_SAME_SUITE_SETTINGS = ("suite", "source")


class CellComparison(BaseModel):
    """One (strategy, N) measured in both runs."""

    model_config = ConfigDict(frozen=True)

    strategy: str
    """Strategy name."""
    n: int
    """Instances per request."""
    a: CellMetrics
    """The first run's metrics."""
    b: CellMetrics
    """The second run's metrics."""
    difference: float
    """b's accuracy minus a's (a fraction: 0.1 is ten points)."""
    separated: bool
    """Whether the 95% intervals do not overlap: the difference is beyond noise."""
    better: Literal["a", "b"] | None
    """Which run is better beyond noise (None: within noise)."""


class Comparison(BaseModel):
    """Two runs of the same suite compared cell by cell."""

    model_config = ConfigDict(frozen=True)

    a: str
    """Label of the first run (its model, or its folder when both used the same model)."""
    b: str
    """Label of the second run."""
    suite: str
    """The suite both ran."""
    differences: list[str]
    """Settings that differ between the runs (besides strategies, N and groups)."""
    cells: list[CellComparison]
    """Cells measured in both runs, in the first run's order."""
    only_in_a: list[str]
    """Cells only the first run measured ("isolated N=10")."""
    only_in_b: list[str]
    """Cells only the second run measured."""


def load_results(path: Path) -> EvalResults:
    """An eval's results.json, given the file or the folder that holds it."""
    return EvalResults.load(path / "results.json" if path.is_dir() else path)


def _label(results: EvalResults, path: Path | None, other: EvalResults, fallback: str) -> str:
    if results.config.model != other.config.model:
        return results.config.model
    if path is not None:
        folder = path if path.is_dir() else path.parent
        return folder.name or str(folder)
    return fallback


def compare_results(
    a: EvalResults,
    b: EvalResults,
    *,
    a_path: Path | None = None,
    b_path: Path | None = None,
) -> Comparison:
    """Compare two runs of one suite.

    Raises:
        UserError: the runs measured different suites (or the same suite on different data).
    """
    for setting in _SAME_SUITE_SETTINGS:
        mine, theirs = getattr(a.config, setting), getattr(b.config, setting)
        if mine != theirs:
            raise UserError(
                f"the runs measured different {setting}s ({mine!r} vs {theirs!r}): "
                "nothing to compare cell by cell"
            )
    extendable = {"strategies", "instances", "groups", *_SAME_SUITE_SETTINGS}
    mine, theirs = a.config.model_dump(exclude=extendable), b.config.model_dump(exclude=extendable)
    differences = [f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]
    cells_a = {(c.strategy, c.n): c for c in cell_metrics(a.records, model=a.config.model)}
    cells_b = {(c.strategy, c.n): c for c in cell_metrics(b.records, model=b.config.model)}
    cells = []
    for key, x in cells_a.items():
        y = cells_b.get(key)
        if y is None:
            continue
        b_wins, a_wins = y.ci_low > x.ci_high, x.ci_low > y.ci_high
        cells.append(
            CellComparison(
                strategy=key[0],
                n=key[1],
                a=x,
                b=y,
                difference=y.accuracy - x.accuracy,
                separated=a_wins or b_wins,
                better="b" if b_wins else "a" if a_wins else None,
            )
        )
    label_a, label_b = _label(a, a_path, b, "A"), _label(b, b_path, a, "B")
    if label_a == label_b:
        label_a, label_b = f"A ({a_path or label_a})", f"B ({b_path or label_b})"
    return Comparison(
        a=label_a,
        b=label_b,
        suite=a.config.suite,
        differences=differences,
        cells=cells,
        only_in_a=[f"{s} N={n}" for s, n in cells_a if (s, n) not in cells_b],
        only_in_b=[f"{s} N={n}" for s, n in cells_b if (s, n) not in cells_a],
    )
