"""The bench's report structure on tiny sizes. Speed targets live in the bench, never here."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanout.agents.errors import UserError
from fanout.evals import bench, bench_framework, bench_input, bench_model
from fanout.evals.bench import (
    SECTIONS,
    BatchSection,
    BenchReport,
    FanoutSection,
    LocalSection,
    MemorySection,
    OverheadSection,
    run_bench,
)


def test_bench_request_has_one_document_per_sub_agent() -> None:
    request = bench_framework.bench_request(5)
    assert [d.id for d in request.documents] == [f"supplier-{i:03d}.md" for i in range(5)]
    assert request.question


def test_overhead_section_reports_all_three_contenders() -> None:
    section = bench_framework.measure_overhead(5, repeats=2, max_concurrency=2)
    assert isinstance(section, OverheadSection)
    assert section.n == 5
    assert set(section.samples_s) == {"coordinator", "langgraph", "asyncio"}
    assert all(len(samples) == 2 for samples in section.samples_s.values())
    assert section.coordinator_ms == pytest.approx(min(section.samples_s["coordinator"]) / 5 * 1000)
    assert section.met == (section.coordinator_ms <= 1.0)
    assert "coordinator" in section.summary()


def test_fanout_section_against_the_loopback_server() -> None:
    section = bench_framework.measure_fanout(
        6, max_concurrency=4, delay_s=0.01, repeats=1, endpoint="completions"
    )
    assert isinstance(section, FanoutSection)
    assert section.ideal_s == pytest.approx(2 * 0.01)
    assert section.ratio == pytest.approx(section.wall_s / section.ideal_s)
    assert section.excess_ms_per_call == pytest.approx(
        (section.wall_s - section.ideal_s) / 6 * 1000
    )
    assert {k: len(v) for k, v in section.samples_s.items()} == {"coordinator": 1, "asyncio": 1}
    assert section.met == (section.ratio <= 1.1)


def test_batch_section_is_unavailable_without_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fanout.agents.llama_batch", None)
    section = bench_model.measure_batch()
    assert not section.available
    assert section.met is None
    assert section.result is None
    assert section.summary().startswith("not available")


def test_batch_section_is_unavailable_without_the_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        sys.modules, "fanout.agents.llama_batch", types.ModuleType("fanout.agents.llama_batch")
    )
    section = bench_model.measure_batch()
    assert not section.available
    assert "measure_batch_speedup" in section.note


def test_batch_section_reports_what_the_function_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("fanout.agents.llama_batch")
    seen: dict[str, bool] = {}

    def measure_batch_speedup(*, quick: bool = False) -> dict[str, object]:
        seen["quick"] = quick
        return {"speedup": 1.7, "goal_met": True, "n": 8, "path": Path("/m.gguf")}

    module.measure_batch_speedup = measure_batch_speedup  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fanout.agents.llama_batch", module)
    section = bench_model.measure_batch(quick=True)
    assert seen == {"quick": True}
    assert section.available
    assert section.met is True
    assert section.result == {"speedup": 1.7, "goal_met": True, "n": 8, "path": "/m.gguf"}
    assert "1.70x" in section.summary()


def canned_sections() -> dict[str, object]:
    return {
        "overhead": OverheadSection(
            goal="g",
            met=True,
            n=100,
            repeats=1,
            coordinator_ms=0.5,
            langgraph_ms=0.2,
            asyncio_ms=0.01,
            samples_s={"coordinator": [0.05], "langgraph": [0.02], "asyncio": [0.001]},
        ),
        "local": LocalSection(
            goal="g",
            met=False,
            model="m.gguf",
            n=4,
            max_tokens=8,
            coordinator_s=2.0,
            plain_s=1.8,
            ratio=0.9,
            outputs_match=True,
            samples_s={"coordinator": [2.0], "plain": [1.8]},
        ),
    }


def test_run_bench_records_results_failures_and_unselected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sections = canned_sections()
    monkeypatch.setattr(bench_framework, "measure_overhead", lambda *a, **k: sections["overhead"])
    monkeypatch.setattr(bench_model, "measure_local_throughput", lambda *a, **k: sections["local"])

    def broken(**_: object) -> BatchSection:
        raise RuntimeError("no model here")

    monkeypatch.setattr(bench_model, "measure_batch", broken)
    lines: list[str] = []
    report = run_bench(sections=("overhead", "local", "batch"), quick=True, progress=lines.append)

    assert lines == ["bench: overhead", "bench: local", "bench: batch"]
    assert report.overhead == sections["overhead"]
    assert report.local == sections["local"]
    assert report.fanout is None and report.memory is None and report.batch is None
    assert report.skipped == {
        "fanout": "not selected",
        "memory": "not selected",
        "batch": "RuntimeError: no model here",
        "input": "not selected",
    }
    assert report.quick
    assert report.machine.cpu_count >= 1
    assert report.machine.load_avg is not None
    assert not report.all_met  # local missed its goal

    rows = report.rows()
    assert [r[0] for r in rows] == list(SECTIONS)
    assert rows[0][3] == "met"
    assert rows[2][3] == "MISSED"
    assert rows[4][1] == "not available: RuntimeError: no model here"
    assert BenchReport.model_validate_json(report.model_dump_json()) == report


def test_bench_command_writes_json_and_a_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = BenchReport(
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=1.0,
        quick=True,
        machine=bench._machine(),
        memory=MemorySection(
            goal="one model load; growth <= 50 MB",
            met=True,
            n_small=1,
            n_large=20,
            max_tokens=16,
            peak_rss_small_mb=400.0,
            peak_rss_large_mb=410.0,
            growth_mb=10.0,
            model_loads_small=1,
            model_loads_large=1,
            peak_rss_plain_large_mb=405.0,
        ),
    )
    calls: list[bool] = []

    def fake_run_bench(*, quick: bool, **_: object) -> BenchReport:
        calls.append(quick)
        return report

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    from fanout.cli import app

    out = tmp_path / "new" / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert calls == [True]
    assert json.loads(out.read_text())["memory"]["growth_mb"] == 10.0
    assert "memory" in result.output
    assert "+10.0 MiB" in result.output


def test_bench_command_refuses_an_unwritable_out_before_measuring(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def must_not_run(**_: object) -> BenchReport:
        raise AssertionError("measured before checking --out")

    monkeypatch.setattr(bench, "run_bench", must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the report"):
        bench.bench_command(out=blocker / "bench.json", quick=True)


def test_fanout_cli_registers_bench() -> None:
    from fanout.cli import app

    assert "bench" in {c.name for c in app.registered_commands}


@pytest.mark.integration
def test_model_sections_on_the_embedded_model(
    llama_backend: object, capsys: pytest.CaptureFixture[str]
) -> None:
    local = bench_model.measure_local_throughput(
        2,
        max_tokens=4,
        repeats=1,
        backend=llama_backend,  # type: ignore[arg-type]
    )
    assert local.outputs_match
    assert local.ratio == pytest.approx(local.plain_s / local.coordinator_s)

    memory = bench_model.measure_memory(1, 2, max_tokens=2, plain_baseline=False)
    assert memory.model_loads_small == memory.model_loads_large == 1
    assert memory.peak_rss_small_mb > 100  # the model is in there
    assert memory.growth_mb == pytest.approx(memory.peak_rss_large_mb - memory.peak_rss_small_mb)
    assert memory.peak_rss_plain_large_mb is None

    # The plain probe, in this process (it reuses the session's model when the settings match).
    bench_model.memory_probe(2, 2, "plain")
    probe = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert probe["ok"] and probe["model_loads"] <= 1


def test_input_section_loads_the_files_it_wrote() -> None:
    best_s, samples = bench_input.measure_loading(50, repeats=2)
    assert len(samples) == 2 and best_s == min(samples)


def test_the_baseline_search_cutter_cuts_like_the_new_one() -> None:
    from fanout.agents.backend import estimate_tokens
    from fanout.orchestrator.split import chunk_text

    text = "Some words, then a sentence. " * 2000
    old = bench_input.search_cutter(text, max_tokens=200, overlap_tokens=32, count=estimate_tokens)
    new = chunk_text(text, max_tokens=200, overlap_tokens=32, count_tokens=estimate_tokens)
    assert abs(old - len(new)) <= 0.1 * len(new)  # the same job, so a fair baseline


@pytest.mark.integration
def test_input_section_on_the_embedded_model(llama_backend: object) -> None:
    section = bench_input.measure_input(
        n_files=20,
        split_chars=20_000,
        repeats=1,
        backend=llama_backend,  # type: ignore[arg-type]
    )
    assert section.met is None  # no verdict below the goal's sizes
    assert section.chunks >= 2 and section.chunk_tokens > 1000
    assert set(section.samples_s) == {"load", "split", "search", "tokenize"}
    assert section.speedup == pytest.approx(section.search_s_per_mb / section.split_s_per_mb)
    assert "20 files loaded" in section.summary()
