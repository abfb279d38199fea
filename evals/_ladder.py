"""Several eval runs side by side: the crossover table (model x suite) and the position picture.

A ladder of models is measured one ``fanout eval`` at a time (one folder per model, suite and gold
position). This pools the runs of one model and suite (the same strategy and N in runs at other
gold positions add their questions up), finds where blind isolated's 95% interval first lies above
monolithic's, and draws Lost in the Middle's picture: accuracy against the gold position.

A run made with ``--chunk-tokens`` measures other strategies: its chunking ones are named with
their chunk size ("isolated (1,024-token chunks)") and get rows of their own, against the one
prompt, which no chunk size changes. A group measured in two runs (the same model, data, gold
position, strategy and N) counts once, so such a run may leave monolithic out or repeat it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .metrics import CellMetrics, wilson_interval
from .records import EvalResults, GroupRecord
from .report import build_report
from .strategies import CHUNKING

__all__ = [
    "LadderRow",
    "PooledCell",
    "crossover_markdown",
    "crossover_table",
    "plot_positions",
    "pool_cells",
]

_GOLD = re.compile(r"gold (start|middle|end|random)$")


@dataclass(frozen=True, kw_only=True)
class PooledCell:
    """One strategy at one N, over every run of a model and suite given."""

    model: str
    """The model file (or API model) measured."""
    suite: str
    """Suite name."""
    position: str
    """The gold position of the runs pooled ("all" when several were pooled)."""
    strategy: str
    """Strategy measured."""
    n: int
    """N (passages for mdqa, pairs for kvretrieval)."""
    questions: int
    """Questions asked."""
    correct: int
    """Questions answered right."""
    total_tokens: int
    """Prompt plus completion tokens, every call."""

    @property
    def accuracy(self) -> float:
        """Share answered right."""
        return self.correct / self.questions if self.questions else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the accuracy."""
        return wilson_interval(self.correct, self.questions)

    @property
    def tokens_per_question(self) -> float:
        """Tokens spent per question."""
        return self.total_tokens / self.questions if self.questions else 0.0


def _position(results: EvalResults) -> str:
    found = _GOLD.search(results.config.source)
    return found.group(1) if found else "random"


def strategy_label(results: EvalResults, strategy: str) -> str:
    """`strategy` as the ladder names it: with its chunk size when the run set one."""
    chunk = results.config.chunk_tokens
    if chunk is None or strategy not in CHUNKING:
        return strategy
    return f"{strategy} ({chunk:,}-token chunks)"


def _cells(results: EvalResults, seen: set[tuple[str, ...]]) -> list[CellMetrics]:
    """The run's cells, each strategy under its label, without the groups `seen` already."""
    config = results.config
    kept: list[GroupRecord] = []
    for record in results.records:
        label = strategy_label(results, record.strategy)
        key = (config.model, config.suite, config.source, str(config.seed), label,
               str(record.n), record.group_id, record.condition)  # fmt: skip
        if key not in seen:
            seen.add(key)
            kept.append(record.model_copy(update={"strategy": label}))
    relabelled = results.model_copy(update={"records": kept})
    return [c for c in build_report(relabelled).cells if c.questions]


def pool_cells(runs: Sequence[EvalResults], *, by_position: bool = False) -> list[PooledCell]:
    """Every (model, suite, strategy, N) summed over `runs`, or kept apart by gold position.

    A group measured in more than one run counts once (the first run given).
    """
    sums: dict[tuple[str, str, str, str, int], list[int]] = {}
    seen: set[tuple[str, ...]] = set()
    for results in runs:
        position = _position(results) if by_position else "all"
        for cell in _cells(results, seen):
            key = (results.config.model, results.config.suite, position, cell.strategy, cell.n)
            total = sums.setdefault(key, [0, 0, 0])
            total[0] += cell.questions
            total[1] += cell.correct
            total[2] += cell.prompt_tokens + cell.completion_tokens
    return [
        PooledCell(
            model=model,
            suite=suite,
            position=position,
            strategy=strategy,
            n=n,
            questions=q,
            correct=c,
            total_tokens=t,
        )
        for (model, suite, position, strategy, n), (q, c, t) in sorted(sums.items())
    ]


class LadderRow(BaseModel):
    """Where blind isolated first beats one prompt for one model and suite, and at what price."""

    model_config = ConfigDict(frozen=True)

    model: str
    """The model measured."""
    suite: str
    """Suite name."""
    challenger: str = "isolated"
    """The strategy compared with one prompt (with its chunk size when a run set one)."""
    measured: list[int]
    """Every N both strategies were measured at."""
    crossover: int | None
    """The smallest N where isolated's interval lies wholly above monolithic's."""
    token_ratio: float | None
    """Isolated's tokens per question over monolithic's at the crossover (or the largest N)."""
    verdict: str
    """The row in words."""


def _pct(cell: PooledCell) -> str:
    low, high = cell.interval
    return f"{cell.accuracy:.0%} [{low:.0%}-{high:.0%}] of {cell.questions}"


def crossover_table(
    runs: Sequence[EvalResults], *, challenger: str = "isolated", baseline: str = "monolithic"
) -> list[LadderRow]:
    """One row per (model, suite, challenger): the crossover N with its token ratio, or what one prompt did.

    Runs with a chunk size add rows for `challenger` at that size.
    """
    cells = pool_cells(runs)
    rows: list[LadderRow] = []
    contenders = sorted(
        {(c.model, c.suite, c.strategy) for c in cells
         if c.strategy == challenger or c.strategy.startswith(f"{challenger} (")},
        key=lambda k: (k[0], k[1], k[2] != challenger, k[2]),
    )  # fmt: skip
    for model, suite, contender in contenders:
        mine = {
            c.n: c for c in cells if (c.model, c.suite, c.strategy) == (model, suite, contender)
        }
        theirs = {
            c.n: c for c in cells if (c.model, c.suite, c.strategy) == (model, suite, baseline)
        }
        common = sorted(set(mine) & set(theirs))
        if not common:
            continue
        wins = [n for n in common if mine[n].interval[0] > theirs[n].interval[1]]
        at = wins[0] if wins else common[-1]
        ratio = (
            mine[at].tokens_per_question / theirs[at].tokens_per_question
            if theirs[at].tokens_per_question
            else None
        )
        a, b = mine[at], theirs[at]
        if wins:
            verdict = f"N={at}: {contender} {_pct(a)} vs {baseline} {_pct(b)}"
        elif all(theirs[n].correct == mine[n].correct for n in common):
            verdict = f"a tie at every N measured (N={at}: {_pct(a)} each)"
        elif all(theirs[n].accuracy >= mine[n].accuracy for n in common):
            beyond = [n for n in common if theirs[n].interval[0] > mine[n].interval[1]]
            where = f"; beyond the interval at N={','.join(map(str, beyond))}" if beyond else ""
            verdict = f"one prompt wins at every N measured{where} (N={at}: {_pct(b)} vs {_pct(a)})"
        else:
            verdict = f"no crossover up to N={at}: intervals overlap ({_pct(a)} vs {_pct(b)})"
        rows.append(
            LadderRow(
                model=model,
                suite=suite,
                challenger=contender,
                measured=common,
                crossover=wins[0] if wins else None,
                token_ratio=ratio,
                verdict=verdict,
            )
        )
    return rows


def crossover_markdown(rows: Sequence[LadderRow]) -> str:
    """The table as Markdown, one row per model and suite."""
    lines = [
        "| model | suite | isolated | N measured | crossover: isolated above one prompt "
        "| tokens isolated / one prompt |",
        "|---|---|---|---|---|--:|",
    ]
    for row in rows:
        ratio = "-" if row.token_ratio is None else f"{row.token_ratio:.2f}x"
        measured = ",".join(map(str, row.measured))
        lines.append(
            f"| {row.model} | {row.suite} | {row.challenger} | {measured} | {row.verdict} "
            f"| {ratio} |"
        )
    return "\n".join(lines) + "\n"


_ORDER = {"start": 0, "middle": 1, "end": 2}


def plot_positions(runs: Sequence[EvalResults], folder: Path) -> list[Path]:
    """One PNG per (model, suite, N): accuracy against the gold position, one line per strategy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    cells = [c for c in pool_cells(runs, by_position=True) if c.position in _ORDER]
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for model, suite, n in sorted({(c.model, c.suite, c.n) for c in cells}):
        mine = [c for c in cells if (c.model, c.suite, c.n) == (model, suite, n)]
        if len({c.position for c in mine}) < 2:
            continue
        figure = Figure(figsize=(5, 3.4))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for k, strategy in enumerate(sorted({c.strategy for c in mine})):
            line = sorted(
                (c for c in mine if c.strategy == strategy), key=lambda c: _ORDER[c.position]
            )
            xs = [_ORDER[c.position] for c in line]
            axes.plot(xs, [c.accuracy for c in line], marker="os^D"[k % 4], label=strategy)
            axes.fill_between(
                xs, [c.interval[0] for c in line], [c.interval[1] for c in line], alpha=0.12
            )
        axes.set_xticks(list(_ORDER.values()), list(_ORDER))
        axes.set_ylim(0, 1)
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_xlabel("gold position")
        axes.set_ylabel("accuracy (95% band)")
        axes.set_title(f"{suite}, N={n}: {model}", fontsize=9)
        axes.legend(fontsize=8)
        figure.tight_layout()
        stem = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{model}-{suite}-n{n}")
        path = folder / f"positions-{stem}.png"
        figure.savefig(path, dpi=100)
        paths.append(path)
    return paths
