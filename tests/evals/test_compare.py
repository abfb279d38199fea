"""`fanout report A B`: two runs side by side, with the difference and whether it is beyond noise."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend
from fanout.cli import main
from fanout.evals.runner import evaluate

from .conftest import oracle


def forgetful(request: CompletionRequest) -> str:
    """A worse model: right for about half of the questions (decided by a checksum of each)."""
    answer = oracle(request)
    return answer if zlib.crc32(request.prompt.task.encode()) % 2 == 0 else "not found"


def sweep(folder: Path, backend: ScriptedBackend, suite: str = "keyvalue") -> Path:
    evaluate(backend, suite=suite, strategies=["isolated", "monolithic"], instances=[1, 5],
             groups=4, out=folder)  # fmt: skip
    return folder


def run_report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["report", *argv])
    out, err = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, out, err


def test_report_compares_two_runs_cell_by_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = sweep(tmp_path / "good", ScriptedBackend(fn=oracle, name="good-model"))
    b = sweep(tmp_path / "bad", ScriptedBackend(fn=forgetful, name="bad-model"))
    code, out, _ = run_report(capsys, str(a), str(b / "results.json"), "--json")
    assert code == 0
    comparison = json.loads(out)
    assert (comparison["a"], comparison["b"]) == ("good-model", "bad-model")
    assert comparison["differences"] == ["model: 'good-model' vs 'bad-model'"]
    cells = {(c["strategy"], c["n"]): c for c in comparison["cells"]}
    assert set(cells) == {(s, n) for s in ("isolated", "monolithic") for n in (1, 5)}
    big = cells[("isolated", 5)]
    assert big["a"]["accuracy"] == 1.0 and big["b"]["accuracy"] < 0.75
    assert big["difference"] == pytest.approx(big["b"]["accuracy"] - 1.0)
    assert big["separated"] and big["better"] == "a"
    small = cells[("isolated", 1)]  # 4 questions: intervals too wide to separate
    assert not small["separated"] and small["better"] is None

    code, out, _ = run_report(capsys, str(a), str(b))
    assert code == 0
    assert "yes: A better" in out and "pts" in out and "within noise" in out


def test_report_refuses_runs_of_different_suites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = sweep(tmp_path / "kv", ScriptedBackend(fn=oracle))
    b = sweep(tmp_path / "agg", ScriptedBackend(fn=oracle), suite="aggregate")
    code, _, err = run_report(capsys, str(a), str(b))
    assert code == 2 and err.startswith("fanout: error: the runs measured different suites")


def test_report_on_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_report(capsys, str(tmp_path / "nope.json"), str(tmp_path / "nope2.json"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read" in err
