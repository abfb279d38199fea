"""The typed `EvalReport` and its files: results.json, report.md, report.html and PNG plots.

Markdown and HTML are rendered from the same table rows, so the two never disagree; plots are
optional extras and their absence (say, a headless box without fonts) never loses the numbers.
Every value comes from a results file (model and strategy names, dataset paths, the command line),
so each goes through `fanout.agents._safe_text` (escaped, secrets redacted) on its way in.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fanout.agents._safe_text import for_html, for_markdown, for_markdown_code
from fanout.orchestrator.profile import PROFILE_FILE

from ._auto_check import AutoCheck, check_auto
from ._plots import plot_all
from ._profile import build_profile
from .crossover import Crossover, find_crossover
from .metrics import CellMetrics, PriceTable, cell_metrics
from .records import EvalConfig, EvalResults
from .strategies import ROUTING

__all__ = [
    "EvalReport",
    "auto_verdict",
    "build_report",
    "render_html",
    "render_markdown",
    "write_report",
]

# Blind isolated (the product) against blind one-prompt baselines; paired against paired.
_COMPARISONS = (
    ("isolated", "monolithic"),
    ("isolated", "mti"),
    ("pairs", "mti"),
    ("pairs", "batch"),
)


class EvalReport(BaseModel):
    """What an eval found: per-cell metrics, crossover lines, and every record behind them."""

    model_config = ConfigDict(frozen=True)

    config: EvalConfig
    """What was measured."""
    cells: list[CellMetrics]
    """One per (strategy, N)."""
    crossovers: list[Crossover]
    """isolated against each baseline that was run (monolithic, mti)."""
    auto_checks: list[AutoCheck] = Field(default_factory=list)
    """auto against the best fixed strategy at each N, when auto was run."""
    results: EvalResults
    """Every record, for re-scoring."""
    files: dict[str, str] = Field(default_factory=dict)
    """What was written where: results, markdown, html, and each plot."""

    def cell(self, strategy: str, n: int) -> CellMetrics | None:
        """The metrics of one (strategy, N), if it was run."""
        return next((c for c in self.cells if c.strategy == strategy and c.n == n), None)


def build_report(results: EvalResults, *, prices: PriceTable | None = None) -> EvalReport:
    """Compute every metric and crossover from the records."""
    config = results.config
    documents = {r.group_id: set(r.document_ids) for r in results.records}
    cells = cell_metrics(results.records, model=config.model, prices=prices, documents=documents)
    crossovers = [
        x
        for challenger, baseline in _COMPARISONS
        if (
            x := find_crossover(
                cells,
                suite=config.suite,
                model=config.model,
                challenger=challenger,
                baseline=baseline,
            )
        )
        is not None
    ]
    return EvalReport(
        config=config,
        cells=cells,
        crossovers=crossovers,
        auto_checks=check_auto(cells, results.records),
        results=results,
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _main_table(cells: Sequence[CellMetrics]) -> tuple[list[str], list[list[str]]]:
    conditional = any(c.conditional_accuracy is not None for c in cells)
    hijack = any(c.hijack_rate is not None for c in cells)
    citing = any(c.citation_validity is not None for c in cells)
    abstaining = any(c.abstention_recall is not None for c in cells)
    filtering = any(c.gold_asked is not None and c.gold_asked < 1 for c in cells)
    header = ["strategy", "routing", "N", "questions", "accuracy [95% CI]", "format fail"]
    header += ["calls", "prompt tok/q", "uncached prompt tok/q", "completion tok", "tokens/correct"]
    header.append("wall s/request")
    header.append("cost $")
    if abstaining:
        header += ["abstain prec.", "abstain recall"]
    if citing:
        header += ["citation validity", "invented cites/q"]
    if filtering:
        header.append("gold asked")
    if conditional:
        header.append("conditional acc.")
    if hijack:
        header.append("hijacked")
    rows = []
    for c in cells:
        routing = ROUTING.get(c.strategy, "custom")
        row = [
            c.strategy,
            "oracle (upper bound)" if routing == "oracle" else routing,
            str(c.n),
            str(c.questions),
            f"{c.accuracy:.0%} [{c.ci_low:.0%}-{c.ci_high:.0%}]",
            _pct(c.format_failure_rate),
            str(c.calls),
            _num(c.prompt_tokens / c.questions if c.questions else 0.0, 0),
            _num(c.uncached_prompt_tokens_per_question, 0),
            f"{c.completion_tokens:,}",
            _num(c.tokens_per_correct, 0),
            _num(c.wall_s_per_group, 2),
            f"{c.cost_usd:.4f}",
        ]
        if abstaining:
            row += [_pct(c.abstention_precision), _pct(c.abstention_recall)]
        if citing:
            row += [_pct(c.citation_validity), _num(c.invented_citations_per_question, 2)]
        if filtering:
            row.append(_pct(c.gold_asked))
        if conditional:
            row.append(_pct(c.conditional_accuracy))
        if hijack:
            row.append(_pct(c.hijack_rate))
        rows.append(row)
    return header, rows


def _fault_table(cells: Sequence[CellMetrics]) -> tuple[list[str], list[list[str]]] | None:
    faulted = [c for c in cells if c.faults is not None]
    if not faulted:
        return None
    header = ["strategy", "N", "faults injected", "answers lost/changed", "blast radius"]
    header += ["cascade rate", "drift (no fault)", "accuracy under faults"]
    rows = []
    for c in faulted:
        f = c.faults
        assert f is not None
        kinds = ", ".join(f"{k} {v}" for k, v in f.by_kind.items())
        rows.append(
            [
                c.strategy,
                str(c.n),
                f"{f.injected} ({kinds})" if kinds else "0",
                str(f.affected),
                _num(f.blast_radius, 2),
                f"{_pct(f.cascade_rate)} of {f.faulted_groups}" if f.faulted_groups else "-",
                _pct(f.drift),
                f"{f.accuracy:.0%} [{f.ci_low:.0%}-{f.ci_high:.0%}]",
            ]
        )
    return header, rows


def auto_verdict(check: AutoCheck) -> str:
    """ok, ok (more accurate beyond its interval), or MISSED."""
    if not check.passed:
        return "MISSED"
    return "ok" if check.no_more_tokens else "ok (more accurate beyond its interval)"


def _auto_table(checks: Sequence[AutoCheck]) -> tuple[list[str], list[list[str]]] | None:
    if not checks:
        return None
    header = ["N", "auto ran", "auto accuracy [95% CI]", "best fixed", "its accuracy [95% CI]"]
    header += ["tokens auto / best", "within its interval", "no more tokens", "verdict"]
    rows = []
    for c in checks:
        rows.append(
            [
                str(c.n),
                ", ".join(f"{name} {count}" for name, count in c.chosen.items()),
                f"{c.accuracy:.0%} [{c.ci_low:.0%}-{c.ci_high:.0%}]",
                c.best,
                f"{c.best_accuracy:.0%} [{c.best_ci_low:.0%}-{c.best_ci_high:.0%}]",
                f"{c.tokens:,} / {c.best_tokens:,}",
                "yes" if c.within_interval else "NO",
                "yes" if c.no_more_tokens else "NO",
                auto_verdict(c),
            ]
        )
    return header, rows


def _settings(config: EvalConfig) -> list[tuple[str, str]]:
    auto = [("auto chose from", config.auto)] if config.auto else []
    chunks = (
        [("isolated chunks", f"at most {config.chunk_tokens} tokens")]
        if config.chunk_tokens is not None
        else []
    )
    return [
        ("suite", f"{config.suite}: {config.source}"),
        ("model", config.model),
        ("strategies", ", ".join(config.strategies)),
        ("N", ", ".join(map(str, config.instances))),
        ("groups per N", str(config.groups)),
        ("seed", str(config.seed)),
        ("faults", config.faults),
        *chunks,
        (
            "call policy",
            f"{config.max_attempts} attempt(s), timeout {config.timeout_s}s, "
            f"{config.max_concurrency} concurrent, {config.max_tokens} answer tokens",
        ),
        *auto,
    ]


def _provenance(results: EvalResults) -> list[tuple[str, str]]:
    """Where the numbers came from (the latest run; earlier runs of a resumed sweep by date)."""
    if not results.runs:
        return []
    run = results.runs[-1]
    rows = [
        ("date", run.date),
        ("command", run.command),
        ("fanout", run.fanout_version),
        ("llama-cpp-python", run.llama_cpp_version or "not installed"),
        ("python", f"{run.python} on {run.platform}"),
        ("hardware", run.hardware),
    ]
    if run.model_file is not None:
        rows.append(("model file", f"{run.model_file} (sha256 {run.model_sha256})"))
    if run.endpoint is not None:
        rows.append(("endpoint", run.endpoint))
    if len(results.runs) > 1:
        earlier = "; ".join(f"{r.date}: {r.command}" for r in results.runs[:-1])
        rows.append(("earlier runs of this sweep", earlier))
    return rows


_NOTES = (
    "Routing says what a strategy knows about which document a question needs. blind: nothing, "
    "as `fanout run` (every question reaches every document); paired: each question comes with "
    "its own document (MTI Bench's instances, `Request.pairs`); oracle: the dataset's routing, "
    "which no user has, so an oracle row is an upper bound, never the product's figure. "
    "Abstention precision is the share of not-found answers whose document indeed lacks the "
    "answer; recall the share of documents lacking it whose sub-agent said so. Citation validity "
    "is the share of cited ids that are documents of the request (with a finding, for the "
    "coordinator); invented cites are ids of no document, per question. "
    "Accuracy is over every question of every group, with a Wilson 95% interval. "
    "Format failures are answers that could not be parsed (a numbered answer missing, or empty) "
    "and count as wrong. Blast radius is answers lost or changed per injected fault, against the "
    "same groups run without faults; cascade rate is the share of faulted requests where a fault "
    "reached more answers than there were faults, or the request failed as a whole. Drift is the "
    "share of answers that changed in faulted runs that met no fault: the backend's own noise floor."
)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; every cell goes through `for_markdown` (names come from results files)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(for_markdown(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(report: EvalReport, plots: Sequence[str] = ()) -> str:
    """The report as Markdown (plots referenced by file name)."""
    config = report.config
    parts = [f"# fanout eval: {for_markdown(f'{config.suite} on {config.model}')}", ""]
    parts += [f"- **{k}**: {for_markdown(v)}" for k, v in _settings(config)]
    provenance = _provenance(report.results)
    if provenance:
        parts += ["", "## Provenance", ""]
        parts += [
            f"- **{k}**: {for_markdown_code(v) if k == 'command' else for_markdown(v)}"
            for k, v in provenance
        ]
    if report.crossovers:
        parts += ["", "## Recommendation", ""]
        parts += [f"- {for_markdown(x.recommendation)}" for x in report.crossovers]
    parts += ["", "## Results", "", _md_table(*_main_table(report.cells))]
    auto = _auto_table(report.auto_checks)
    if auto is not None:
        parts += ["", "## auto against the best fixed strategy", "", _md_table(*auto)]
    faults = _fault_table(report.cells)
    if faults is not None:
        parts += ["", "## Cascading failure", "", _md_table(*faults)]
    if plots:
        parts += ["", "## Plots", ""]
        parts += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]  # our own file names
    parts += ["", _NOTES, ""]
    return "\n".join(parts)


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{for_html(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{for_html(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
    "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:48%;margin:.5%}"
)


def render_html(report: EvalReport, plots: Sequence[str] = ()) -> str:
    """The report as one self-contained HTML page: plots are embedded, so it survives being mailed."""
    config = report.config
    title = for_html(f"fanout eval: {config.suite} on {config.model}")
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{_CSS}</style></head><body><h1>{title}</h1><ul>",
    ]
    parts += [f"<li><b>{for_html(k)}</b>: {for_html(v)}</li>" for k, v in _settings(config)]
    parts.append("</ul>")
    provenance = _provenance(report.results)
    if provenance:
        parts.append("<h2>Provenance</h2><ul>")
        parts += [f"<li><b>{for_html(k)}</b>: {for_html(v)}</li>" for k, v in provenance]
        parts.append("</ul>")
    if report.crossovers:
        parts.append("<h2>Recommendation</h2><ul>")
        parts += [f"<li>{for_html(x.recommendation)}</li>" for x in report.crossovers]
        parts.append("</ul>")
    parts += ["<h2>Results</h2>", _html_table(*_main_table(report.cells))]
    auto = _auto_table(report.auto_checks)
    if auto is not None:
        parts += ["<h2>auto against the best fixed strategy</h2>", _html_table(*auto)]
    faults = _fault_table(report.cells)
    if faults is not None:
        parts += ["<h2>Cascading failure</h2>", _html_table(*faults)]
    if plots:
        parts.append("<h2>Plots</h2><div>")
        parts += [f"<img src='{_data_uri(Path(p))}' alt='{for_html(Path(p).stem)}'>" for p in plots]
        parts.append("</div>")
    parts += [f"<p>{for_html(_NOTES)}</p>", "</body></html>"]
    return "".join(parts)


def write_report(report: EvalReport, folder: Path, *, plots: bool = True) -> EvalReport:
    """Write results.json, profile.json, report.md, report.html and the plots into `folder`.

    profile.json (what ``fanout run --strategy auto --profile`` reads) is written when a fixed
    strategy has clean results. Returns the report with `files` filled in.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {"results": str(folder / "results.json")}
    report.results.save(folder / "results.json")
    profile = build_profile(report.results)
    if profile.rows:
        profile.save(folder / PROFILE_FILE)
        files["profile"] = str(folder / PROFILE_FILE)
    drawn: list[str] = []
    if plots and report.cells:
        subtitle = f"{report.config.suite}, {report.config.model}"
        drawn = [str(p) for p in plot_all(report.cells, folder, subtitle=subtitle)]
    (folder / "report.md").write_text(render_markdown(report, drawn), encoding="utf-8")
    (folder / "report.html").write_text(render_html(report, drawn), encoding="utf-8")
    files["markdown"] = str(folder / "report.md")
    files["html"] = str(folder / "report.html")
    files.update({Path(p).stem: p for p in drawn})
    return report.model_copy(update={"files": files})
