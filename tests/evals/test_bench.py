"""The bench's structure on tiny sizes. Speed targets live in the bench, never here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanout.agents.errors import UserError
from fanout.evals.bench import SECTIONS, BenchReport, inputs, overhead, run, run_bench, timing
from fanout.evals.bench import command as bench_cli
from fanout.evals.bench.fan_out import FanoutSection, measure_fanout
from fanout.evals.bench.local import LocalSection
from fanout.evals.bench.memory import MemorySection
from fanout.evals.bench.overhead import OverheadSection, measure_overhead
from fanout.evals.bench.report import this_machine
from fanout.evals.bench.scale import ScaleSection, measure_scale
from fanout.evals.bench.workload import QUESTION, bench_prompts, bench_request, copy_prompts


def test_the_workload_is_one_document_per_sub_agent() -> None:
    request = bench_request(5)
    assert [d.id for d in request.documents] == [f"supplier-{i:03d}.md" for i in range(5)]
    assert request.question == QUESTION
    prompts = bench_prompts(5)
    assert [p.context for p in prompts] == [d.text for d in request.documents]
    assert len({p.instruction for p in prompts}) == 1  # the shared prefix batching reuses
    copies = copy_prompts(3)
    assert [c.context for c in copies] == [f"{d.text} {d.text}" for d in bench_request(3).documents]


def test_race_takes_turns_rotates_the_first_and_drops_warm_up_rounds() -> None:
    order: list[str] = []
    contenders = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    samples = timing.race(contenders, rounds=3, warmup=1)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratios_median_and_spread() -> None:
    per_round = timing.ratios([2.0, 3.0, 9.0], [1.0, 2.0, 3.0])
    assert per_round == [2.0, 1.5, 3.0]
    assert timing.median(per_round) == 2.0
    assert timing.spread(per_round) == (1.5, 3.0)
    assert timing.best([0.3, 0.1, 0.2]) == 0.1


def test_overhead_section_reports_all_three_contenders() -> None:
    section = measure_overhead(5, repeats=2, max_concurrency=2)
    assert isinstance(section, OverheadSection)
    assert set(section.samples_s) == {"coordinator", "langgraph", "asyncio"}
    assert all(len(samples) == 2 for samples in section.samples_s.values())
    assert section.coordinator_ms == pytest.approx(min(section.samples_s["coordinator"]) / 5 * 1000)
    assert section.met == (section.coordinator_ms <= 1.0)
    assert "coordinator" in section.summary()


def test_fanout_section_reports_the_framework_over_the_plain_client_loop() -> None:
    section = measure_fanout(6, max_concurrency=4, delay_s=0.01, repeats=2)
    assert isinstance(section, FanoutSection)
    assert section.ideal_s == pytest.approx(2 * 0.01)
    assert {k: len(v) for k, v in section.samples_s.items()} == {
        "coordinator": 2,
        "client": 2,
        "httpx": 2,
    }
    per_round = timing.ratios(section.samples_s["coordinator"], section.samples_s["client"])
    assert section.ratio_to_client == pytest.approx(timing.median(per_round))
    assert section.ratio_to_client_spread == (min(per_round), max(per_round))
    assert section.ratio_to_ideal == pytest.approx(section.wall_s / section.ideal_s)
    assert section.met == (section.ratio_to_client <= 1.05)
    assert "plain client loop" in section.summary()


def test_scale_section_runs_each_size_in_its_own_process_and_streams_to_the_store() -> None:
    section = measure_scale((40, 80), latency_s=0.001, max_concurrency=8)
    assert isinstance(section, ScaleSection)
    assert [r.n for r in section.runs] == [40, 80]
    assert all(r.stored == r.n for r in section.runs)
    # Half the results reported means at least that many already committed: stored as they end,
    # not at the run's end (how many more finished meanwhile depends on the machine's load).
    assert all(r.n // 2 <= r.stored_at_half <= r.n for r in section.runs)
    assert section.growth == pytest.approx(
        section.runs[1].per_sub_agent_ms / section.runs[0].per_sub_agent_ms
    )
    assert "N=80" in section.summary()


def canned_overhead() -> OverheadSection:
    return OverheadSection(
        goal="g",
        met=True,
        n=100,
        repeats=1,
        coordinator_ms=0.5,
        langgraph_ms=0.2,
        asyncio_ms=0.01,
        samples_s={"coordinator": [0.05], "langgraph": [0.02], "asyncio": [0.001]},
    )


def canned_local() -> LocalSection:
    return LocalSection(
        goal="g",
        met=False,
        model="m.gguf",
        n=4,
        max_tokens=8,
        repeats=1,
        ratio=0.9,
        ratio_spread=(0.9, 0.9),
        coordinator_s=2.0,
        plain_s=1.8,
        outputs_match=True,
        samples_s={"coordinator": [2.0], "plain": [1.8]},
    )


def test_run_bench_records_results_failures_and_unselected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fanout.evals.bench import batch, local

    monkeypatch.setattr(overhead, "measure_overhead", lambda *a, **k: canned_overhead())
    monkeypatch.setattr(local, "measure_local_throughput", lambda *a, **k: canned_local())

    def broken(**_: object) -> None:
        raise RuntimeError("no model here")

    monkeypatch.setattr(batch, "measure_batch", broken)
    lines: list[str] = []
    report = run_bench(sections=("overhead", "local", "batch"), quick=True, progress=lines.append)

    assert lines == ["bench: overhead", "bench: local", "bench: batch"]
    assert report.overhead == canned_overhead()
    assert report.local == canned_local()
    assert report.fanout is None and report.memory is None and report.batch is None
    assert report.skipped == {
        "fanout": "not selected",
        "memory": "not selected",
        "batch": "RuntimeError: no model here",
        "input": "not selected",
        "scale": "not selected",
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


def memory_report() -> BenchReport:
    return BenchReport(
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=1.0,
        quick=True,
        machine=this_machine(),
        memory=MemorySection(
            goal="g",
            met=True,
            sizes=(1, 20, 40),
            max_tokens=16,
            peak_rss_mb=(400.0, 410.0, 411.0),
            growth_mb=10.0,
            growth_beyond_mb=1.0,
            model_loads=(1, 1, 1),
            peak_rss_plain_mb=405.0,
        ),
    )


def test_bench_command_writes_json_and_a_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[bool, tuple[str, ...]]] = []

    def fake_run_bench(*, quick: bool, sections: tuple[str, ...], **_: object) -> BenchReport:
        calls.append((quick, sections))
        return memory_report()

    monkeypatch.setattr(run, "run_bench", fake_run_bench)
    from fanout.cli import app

    out = tmp_path / "new" / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert calls == [(True, ("overhead", "fanout", "local", "memory", "batch", "input"))]
    assert json.loads(out.read_text())["memory"]["growth_mb"] == 10.0
    assert "memory" in result.output
    assert "+10.0 MiB" in result.output

    result = CliRunner().invoke(app, ["bench", "--out", str(out), "--sections", "local", "--scale"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == (False, ("local", "scale"))


def test_bench_command_refuses_bad_options_before_measuring(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def must_not_run(**_: object) -> BenchReport:
        raise AssertionError("measured before checking the options")

    monkeypatch.setattr(run, "run_bench", must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the report"):
        bench_cli.bench_command(out=blocker / "bench.json", quick=True)
    with pytest.raises(UserError, match="unknown bench section 'speed'"):
        bench_cli.bench_command(out=tmp_path / "b.json", sections="local,speed")


def test_fanout_cli_registers_bench() -> None:
    from fanout.cli import app

    assert "bench" in {c.name for c in app.registered_commands}


@pytest.mark.integration
def test_model_sections_on_the_embedded_model(
    llama_backend: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from fanout.evals.bench.local import measure_local_throughput
    from fanout.evals.bench.memory import measure_memory, memory_probe

    local = measure_local_throughput(2, max_tokens=4, repeats=1, backend=llama_backend)  # type: ignore[arg-type]
    assert local.outputs_match
    assert local.ratio == pytest.approx(local.plain_s / local.coordinator_s)

    memory = measure_memory((1, 2, 3), max_tokens=2, plain_baseline=False)
    assert memory.model_loads == (1, 1, 1)
    assert memory.peak_rss_mb[0] > 100  # the model is in there
    assert memory.growth_mb == pytest.approx(memory.peak_rss_mb[1] - memory.peak_rss_mb[0])
    assert memory.peak_rss_plain_mb is None

    # The plain probe, in this process (it reuses the session's model when the settings match).
    memory_probe(2, 2, "plain")
    probe = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert probe["ok"] and probe["model_loads"] <= 1


@pytest.mark.integration
def test_batch_section_on_the_embedded_model() -> None:
    from fanout.evals.bench.batch import measure_batch

    section = measure_batch(n=2, budgets=(8,), repeats=1)
    assert [(w.name, w.max_tokens) for w in section.workloads] == [("qa", 48), ("copy", 8)]
    assert not any(w.auto_batched for w in section.workloads)  # short answers: sequential
    # sequential on the same model: the automatic mode answers exactly as the plain loop does
    assert all(w.outputs_match for w in section.workloads)
    assert section.gpu == "none"
    assert "auto" in section.summary()


def test_input_section_loads_the_files_it_wrote() -> None:
    best_s, samples = inputs.measure_loading(50, repeats=2)
    assert len(samples) == 2 and best_s == min(samples)


def test_the_baseline_search_cutter_cuts_like_the_new_one() -> None:
    from fanout.agents.backend import estimate_tokens
    from fanout.orchestrator.split import chunk_text

    text = "Some words, then a sentence. " * 2000
    old = inputs.search_cutter(text, max_tokens=200, overlap_tokens=32, count=estimate_tokens)
    new = chunk_text(text, max_tokens=200, overlap_tokens=32, count_tokens=estimate_tokens)
    assert abs(old - len(new)) <= 0.1 * len(new)  # the same job, so a fair baseline


@pytest.mark.integration
def test_input_section_on_the_embedded_model(llama_backend: object) -> None:
    section = inputs.measure_input(
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
