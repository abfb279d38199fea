from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import fanout.agents._factory as factory
from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals._cli import parse_instances

from .conftest import oracle


@pytest.fixture
def app() -> typer.Typer:
    from fanout.cli import app

    return app


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[ScriptedBackend]:
    made: list[ScriptedBackend] = []

    def make_backend(kind: str, **options: object) -> ScriptedBackend:
        made.append(ScriptedBackend(fn=oracle, name=f"scripted-{kind}"))
        return made[-1]

    monkeypatch.setattr(factory, "make_backend", make_backend)
    return made


def invoke(app: typer.Typer, *args: str) -> BaseException | None:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exception


def test_eval_command_runs_a_sweep(app: typer.Typer, scripted: list[ScriptedBackend],
                                   tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "eval", "--suite", "keyvalue", "--strategies", "isolated,monolithic,mti",
        "--instances", "1,2", "--groups", "2", "--faults", "error=0.2", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "keyvalue on scripted-llama" in result.output
    assert "blast" in result.output and "cascade" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["faults"] == "error=0.2"
    assert (out / "report.html").exists()
    rerun = CliRunner().invoke(app, ["eval", "--out", str(out), "--report-only"])
    assert rerun.exit_code == 0 and "rewrote the report" in rerun.output
    assert len(scripted) == 1


def test_chunk_tokens_is_recorded_with_the_results(
    app: typer.Typer, scripted: list[ScriptedBackend], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["--suite", "keyvalue", "--doc-tokens", "300", "--instances", "1", "--groups", "1"]
    result = CliRunner().invoke(app, ["eval", *args, "--chunk-tokens", "80", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["config"]["chunk_tokens"] == 80
    assert "at most 80 tokens" in (out / "report.md").read_text()
    (backend,) = scripted
    sub_agents = [c for c in backend.calls if c.tags.get("document_id") not in (None, "*")]
    assert len(sub_agents) > 1 and all(backend.count_tokens(c.prompt.context) <= 80
                                       for c in sub_agents)  # fmt: skip
    # a resume with another chunk size is another eval
    again = invoke(app, *args, "--chunk-tokens", "120", "--out", str(out))
    assert isinstance(again, UserError) and "chunk_tokens" in str(again)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "kv"], "unknown suite 'kv'"),
        ([], "--suite is required"),
        (["--suite", "keyvalue", "--instances", "1,x"], "--instances takes numbers"),
        (["--suite", "keyvalue", "--strategies", "isolated,solo"], "unknown strategy 'solo'"),
        (["--suite", "keyvalue", "--faults", "error=2"], "between 0 and 1"),
        (["--suite", "keyvalue", "--faults", "boom=0.1"], "unknown fault kind 'boom'"),
        (["--suite", "nq", "--instances", "5,500"], "N=500 is larger than the dataset"),
        (["--suite", "multitask", "--instances", "30"], "at most 20 questions"),
        (["--suite", "keyvalue", "--items", "0:10"], "the keyvalue suite reads no item range"),
        (["--suite", "mdqa", "--items", "5"], "takes START:END"),
        (["--suite", "mdqa", "--items", "0:50", "--instances", "60"], "N=60 passages need 59"),
        (["--suite", "kvretrieval"], "the kvretrieval suite needs a data file"),
        (["--suite", "keyvalue", "--chunk-tokens", "63"], "--chunk-tokens must be at least 64"),
    ],
)
def test_bad_input_is_a_one_line_user_error(app: typer.Typer, scripted: list[ScriptedBackend],
                                            args: list[str], message: str) -> None:  # fmt: skip
    error = invoke(app, *args)
    assert isinstance(error, UserError)
    assert message in str(error) and "\n" not in str(error)
    assert scripted == []  # refused before any model was loaded


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--groups", "0"], "--groups"),
        (["--max-concurrency", "0"], "--max-concurrency"),
        (["--timeout", "nan"], "--timeout"),
        (["--retries", "-1"], "--retries"),
        (["--position", "top"], "--position"),
        (["--backend", "gpt"], "--backend"),
    ],
)
def test_bad_option_values_are_refused_while_parsing(
    capsys: pytest.CaptureFixture[str], scripted: list[ScriptedBackend], args: list[str], flag: str
) -> None:
    from fanout.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--suite", "keyvalue", *args])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fanout: error: Invalid value for '{flag}'")
    assert scripted == []


def test_a_library_error_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from fanout.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--suite", "jsonl"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err == "fanout: error: --dataset: the jsonl suite needs a data file\n"
    )


def test_malformed_dataset_line_is_named(app: typer.Typer, scripted: list[ScriptedBackend],
                                        tmp_path: Path) -> None:  # fmt: skip
    data = tmp_path / "mine.jsonl"
    data.write_text('{"question": "q", "answer": "a", "context": "c"}\n{"question": 3\n')
    error = invoke(app, "--suite", "jsonl", "--dataset", str(data))
    assert isinstance(error, UserError) and f"{data}:2: not valid JSON" in str(error)


def test_unwritable_out_is_a_user_error(app: typer.Typer, scripted: list[ScriptedBackend],
                                       tmp_path: Path) -> None:  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    error = invoke(app, "--suite", "keyvalue", "--out", str(blocker / "out"))
    assert isinstance(error, UserError) and "cannot write to --out" in str(error)
    assert scripted == []


def test_report_only_needs_results(app: typer.Typer, tmp_path: Path) -> None:
    error = invoke(app, "--suite", "keyvalue", "--out", str(tmp_path), "--report-only")
    assert isinstance(error, UserError) and "cannot read" in str(error)


def test_fanout_main_prints_the_error_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from fanout.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--suite", "kv"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("fanout: error: --suite: unknown suite 'kv'")


def test_parse_instances() -> None:
    assert parse_instances("1, 2,5,2") == [1, 2, 5]
    with pytest.raises(UserError, match="must be positive"):
        parse_instances("0")


def test_eval_reports_say_where_they_came_from_and_carry_their_plots(
    scripted: list[ScriptedBackend], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fanout.cli import main

    out = tmp_path / "run"
    argv = ["eval", "--suite", "keyvalue", "--strategies", "isolated,monolithic",
            "--instances", "1,2", "--groups", "2", "--out", str(out)]  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    err = capsys.readouterr().err
    # stderr is not a terminal here: progress comes as plain lines, one per group run
    lines = [line for line in err.splitlines() if line.startswith("fanout eval: [")]
    assert len(lines) == 2 * 2 * 2 and lines[-1].startswith("fanout eval: [8/8] ")
    markdown = (out / "report.md").read_text()
    assert "- **command**: `fanout eval --suite keyvalue" in markdown
    assert f"--out {out}`" in markdown and "- **date**: 20" in markdown
    assert "- **fanout**: " in markdown and "- **hardware**: " in markdown
    html = (out / "report.html").read_text()
    assert html.count("<img src='data:image/png;base64,") == 3  # accuracy, tokens, wall time
    assert "src='accuracy" not in html
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 1 and results["runs"][0]["model"] == "scripted-llama"


def test_the_documented_jsonl_example_loads(capsys: pytest.CaptureFixture[str]) -> None:
    from fanout.cli import main
    from fanout.evals.suites import load_jsonl
    from tests.conftest import EXAMPLES

    suite = load_jsonl(EXAMPLES / "eval-dataset.jsonl")
    assert len(suite.instances) == 6
    shapes = {g.id: g for g in suite.instances}
    assert [d.id for d in shapes["oak-city"].documents] == ["oak-1.md", "oak-2.md"]
    first, second = shapes["cedar-steps"].questions
    assert second.after == first.id  # chained parts
    assert shapes["birch-code"].questions[0].match == "exact"
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = capsys.readouterr().out
    assert "examples/eval-dataset.jsonl" in help_text and '"chained": true' in help_text
