"""The report's PNG plots, drawn on matplotlib's Agg canvas: no display, no pyplot global state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fanout.agents._safe_text import for_plot

from .metrics import CellMetrics

__all__ = ["plot_all"]

Value = Callable[[CellMetrics], float | None]
# Strategies often tie (blast radius 1.0, accuracy 100%): distinct markers and dashes keep every
# line visible when another is drawn on top of it.
_MARKERS = ("o", "s", "^", "D", "v", "P")
_DASHES = ("-", "--", "-.", ":")


def _by_strategy(cells: Sequence[CellMetrics]) -> dict[str, list[CellMetrics]]:
    out: dict[str, list[CellMetrics]] = {}
    for cell in cells:
        out.setdefault(cell.strategy, []).append(cell)
    return {k: sorted(v, key=lambda c: c.n) for k, v in out.items()}


def _line_plot(
    cells: Sequence[CellMetrics],
    path: Path,
    *,
    title: str,
    ylabel: str,
    value: Value,
    band: tuple[Value, Value] | None = None,
    percent: bool = False,
    from_zero: bool = False,
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, PercentFormatter

    figure = Figure(figsize=(6.4, 4.0), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ns = sorted({c.n for c in cells})
    for i, (strategy, series) in enumerate(_by_strategy(cells).items()):
        points = [(c.n, value(c)) for c in series]
        xs = [n for n, v in points if v is not None]
        ys = [v for _, v in points if v is not None]
        if not xs:
            continue
        (line,) = axes.plot(
            xs,
            ys,
            marker=_MARKERS[i % len(_MARKERS)],
            linestyle=_DASHES[i % len(_DASHES)],
            markersize=7 - i % 3,
            label=for_plot(strategy),
        )
        if band is not None:
            low, high = band
            axes.fill_between(
                [c.n for c in series],
                [low(c) or 0.0 for c in series],
                [high(c) or 0.0 for c in series],
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
    if ns and ns[-1] / ns[0] >= 10:
        axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(ns))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([str(n) for n in ns])
    axes.set_xlabel("N (instances per request)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)  # built from `for_plot` text (see `plot_all`)
    if percent:
        axes.set_ylim(-0.02, 1.02)
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif from_zero:  # a difference of a few tokens must not look like a factor of ten
        axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_all(cells: Sequence[CellMetrics], folder: Path, *, subtitle: str) -> list[Path]:
    """Accuracy (with 95% bands), tokens and wall time vs N; blast radius when faults were run."""
    subtitle = for_plot(subtitle)  # model and suite names come from results files
    paths = [
        _line_plot(
            cells,
            folder / "accuracy_vs_n.png",
            title=f"Accuracy vs N ({subtitle})",
            ylabel="accuracy (95% Wilson band)",
            value=lambda c: c.accuracy,
            band=(lambda c: c.ci_low, lambda c: c.ci_high),
            percent=True,
        ),
        _line_plot(
            cells,
            folder / "tokens_vs_n.png",
            title=f"Tokens per question vs N ({subtitle})",
            ylabel="prompt + completion tokens per question",
            value=lambda c: c.total_tokens / c.questions if c.questions else None,
            from_zero=True,
        ),
        _line_plot(
            cells,
            folder / "wall_vs_n.png",
            title=f"Wall time per request vs N ({subtitle})",
            ylabel="seconds per request (mean; band: fastest to slowest)",
            value=lambda c: c.wall_s_per_group,
            band=(lambda c: c.wall_s_min, lambda c: c.wall_s_max),
            from_zero=True,
        ),
    ]
    if any(c.faults is not None for c in cells):
        paths.append(
            _line_plot(
                cells,
                folder / "blast_radius.png",
                title=f"Blast radius vs N ({subtitle})",
                ylabel="questions lost or changed per fault",
                value=lambda c: c.faults.blast_radius if c.faults else None,
            )
        )
    return paths
