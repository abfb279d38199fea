"""The CLI's bad-input cases: each exits 2 with exactly one line on stderr, never a traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.cli import main
from tests.conftest import EXAMPLES, ROOT, free_port

SUPPLIERS = str(EXAMPLES / "suppliers")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


def assert_one_line_error(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fanout: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "big.txt").write_text("x" * 2000)
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "ok.md").write_text("Some text.")
    (tmp_path / "corrupt.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    return tmp_path


CASES = [
    (["run", "{t}/missing.md", "-q", "Q"], "no such file or folder"),
    (["run", "{t}/empty_dir", "-q", "Q"], "folder holds no files"),
    (["run", "{t}/empty.md", "-q", "Q"], "file is empty"),
    (["run", "{t}/binary.txt", "-q", "Q"], "binary file"),
    (["run", "{t}/latin1.txt", "-q", "Q"], "not UTF-8 text"),
    (["run", "{t}/doc.pdf", "-q", "Q"], "unsupported file type"),
    (["run", "{t}/big.txt", "-q", "Q", "--max-file-bytes", "1000"], "over the 1000-byte limit"),
    (["run", "{t}/*.nothing", "-q", "Q"], "glob matched no files"),
    (["run", "{t}/ok.md", "{t}/ok.md", "-q", "Q"], "given more than once"),
    (["run", "{t}/ok.md", "-q", ""], "the question is empty"),
    (["run", "{t}/ok.md"], "give --question or at least one --instruction"),
    (["run", "{t}/ok.md", "-q", "Q", "--backend", "gpt"], "unknown backend 'gpt'"),
    (["run", "{t}/ok.md", "-q", "Q", "--model", "{t}/none.gguf"], "model file not found"),
    (["run", "{t}/ok.md", "-q", "Q", "--model", "{t}/corrupt.gguf"], "not a valid GGUF"),
    (["run", "{t}/ok.md", "-q", "Q", "--strategy", "magic"], "unknown strategy 'magic'"),
    (["run", "{t}/ok.md", "-q", "Q", "--synthesis", "vote"], "unknown synthesis 'vote'"),
    (["run", "{t}/ok.md", "-q", "Q", "--max-concurrency", "0"], "max_concurrency"),
    (["run", "{t}/ok.md", "-q", "Q", "--backend", "openai"], "no model name"),
    (["run", "{t}/ok.md", "-q", "Q", "--backend", "openai", "--model", "m"], "no API key"),
    (["run"], "Missing argument"),
    (["run", "{t}/ok.md", "-q", "Q", "--bogus"], "No such option: --bogus"),
    ([], "Missing command"),
]


@pytest.mark.parametrize(("argv", "fragment"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], files: Path, argv: list[str], fragment: str
) -> None:
    code, out, err = run_cli(capsys, *[a.format(t=files) for a in argv])
    assert code == 2
    assert out == ""
    assert_one_line_error(err, fragment)


def test_unreachable_base_url(capsys: pytest.CaptureFixture[str], files: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, _, err = run_cli(
        capsys, "run", f"{files}/ok.md", "-q", "Q", "--backend", "openai", "--model", "m",
        "--base-url", url,
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(err, f"cannot reach {url}")


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--question" in out


@pytest.fixture
def scripted_cli(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """`fanout run` with the scripted fake behind --backend llama."""
    import fanout.cli as cli
    from fanout.agents.backend import CompletionRequest
    from fanout.agents.testing import ScriptedBackend

    made: list[object] = []

    def make_backend(kind: str, **options: object) -> ScriptedBackend:
        def answer(request: CompletionRequest) -> str:
            doc = request.tags["document_id"]
            return "not found" if doc == "*" else f"label of {doc}"

        made.append(ScriptedBackend(fn=answer))
        return made[-1]  # type: ignore[return-value]

    monkeypatch.setattr(cli, "make_backend", make_backend)
    return made


def test_paired_sends_document_i_instruction_i(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scripted_cli: list[object]
) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"ticket {name}")
    code, out, err = run_cli(
        capsys, "run", str(tmp_path), "-i", "Classify.", "-i", "Summarise.", "--paired", "--json"
    )
    assert code == 0, err
    import json

    result = json.loads(out)
    assert [(r["document_id"], r["task"]) for r in result["sub_results"]] == [
        ("a.txt", "Classify."),
        ("b.txt", "Summarise."),
    ]
    code, _, err = run_cli(capsys, "run", str(tmp_path), "-i", "Only one.", "--paired")
    assert code == 2
    assert_one_line_error(err, "one instruction per document: 2 documents, 1 instructions")


def test_no_document_answers_exits_0_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fanout.cli as cli
    from fanout.agents.testing import ScriptedBackend

    abstaining = ScriptedBackend(fn=lambda r: "not found")
    monkeypatch.setattr(cli, "make_backend", lambda kind, **o: abstaining)
    (tmp_path / "a.txt").write_text("nothing here")
    code, out, _ = run_cli(capsys, "run", str(tmp_path), "-q", "Who won?")
    assert code == 0
    assert "No document answers: Who won?" in out
    code, out, _ = run_cli(capsys, "run", str(tmp_path), "-q", "Who won?", "--json")
    import json

    assert json.loads(out)["unanswered"] == ["Who won?"]


# -- special and unreadable files (issue 9, items 4 and 5) ------------------------------------


@pytest.mark.timeout(30)  # before the fix a FIFO blocked forever on open
def test_a_fifo_is_refused_without_blocking(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    code, out, err = run_cli(capsys, "run", str(fifo), "-q", "Q")
    assert code == 2 and out == ""
    assert_one_line_error(err, f"{fifo}: a FIFO (named pipe), not a regular file")


def test_a_link_to_dev_zero_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    link = tmp_path / "zero.md"
    link.symlink_to("/dev/zero")  # before the fix: read until memory ran out (stat size is 0)
    code, _, err = run_cli(capsys, "run", str(link), "-q", "Q")
    assert code == 2
    assert_one_line_error(err, f"{link}: a character device, not a regular file")


def test_reads_stop_at_the_size_limit_whatever_stat_says(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    link = tmp_path / "status.md"
    link.symlink_to("/proc/self/status")  # a regular file whose stat() size is 0
    assert link.stat().st_size == 0 and len(link.read_bytes()) > 200
    code, _, err = run_cli(capsys, "run", str(link), "-q", "Q", "--max-file-bytes", "200")
    assert code == 2
    assert_one_line_error(err, "over the 200-byte limit")


def test_an_unreadable_file_is_one_line_naming_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("private text")
    secret.chmod(0o000)
    command = [sys.executable, "-m", "fanout", "run", str(secret), "-q", "Q"]
    if os.geteuid() == 0:  # root reads any file: run the CLI without the capabilities that allow it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, f"{secret}: permission denied")
