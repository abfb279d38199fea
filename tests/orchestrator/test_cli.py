"""The CLI's bad-input cases: each exits 2 with exactly one line on stderr, never a traceback."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.cli import main
from tests.conftest import (
    EXAMPLES,
    MODELS_BODY,
    ROOT,
    SilentServer,
    StubHTTPServer,
    chat_completion_body,
    free_port,
)

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
    (["run", "{t}/ok.md", "-q", "Q", "--backend", "gpt"], "'gpt' is not one of 'llama', 'openai'"),
    (["run", "{t}/ok.md", "-q", "Q", "--model", "{t}/none.gguf"], "model file not found"),
    (["run", "{t}/ok.md", "-q", "Q", "--model", "{t}/corrupt.gguf"], "not a valid GGUF"),
    (["run", "{t}/ok.md", "-q", "Q", "--strategy", "magic"], "Invalid value for '--strategy'"),
    (["run", "{t}/ok.md", "-q", "Q", "--synthesis", "vote"], "'vote' is not one of 'llm'"),
    (["run", "{t}/ok.md", "-q", "Q", "--max-concurrency", "0"], "'--max-concurrency'"),
    (["run", "{t}/ok.md", "-q", "Q", "--parallel", "0"], "'--parallel'"),
    (["run", "{t}/ok.md", "-q", "Q", "--timeout", "nan"], "finite number of seconds, not nan"),
    (["run", "{t}/ok.md", "-q", "Q", "--timeout", "inf"], "finite number of seconds, not inf"),
    (["run", "{t}/ok.md", "-q", "Q", "--timeout", "0"], "positive, finite number of seconds"),
    (["run", "{t}/ok.md", "-q", "Q", "--timeout", "soon"], "'soon' is not a number of seconds"),
    (["run", "{t}/ok.md", "-q", "Q", "--max-tokens", "0"], "'--max-tokens'"),
    (["run", "{t}/ok.md", "-q", "Q", "--retries", "-1"], "'--retries'"),
    (["run", "{t}/ok.md", "-q", "Q", "--n-ctx", "0"], "'--n-ctx'"),
    (["run", "{t}/ok.md", "-q", "Q", "--threads", "0"], "'--threads'"),
    (["run", "{t}/ok.md", "-q", "Q", "--endpoint", "edit"], "'--endpoint'"),
    (["run", "{t}/ok.md", "-q", "Q", "--failure-policy", "quorum=0"], "unknown failure policy"),
    (["run", "{t}/ok.md", "-q", "Q", "--checkpoint", "{t}/c.db"], "--checkpoint needs --run-id"),
    (["run", "{t}/ok.md", "-q", "Q", "--backend", "openai"], "--model: no model name given"),
    (
        ["run", "{t}/ok.md", "-q", "Q", "--strategy", "auto", "--profile", "{t}/no.json"],
        "cannot read profile",
    ),
    (
        ["run", "{t}/ok.md", "-q", "Q", "--strategy", "auto", "--profile", "{t}/ok.md"],
        "is not a fanout profile",
    ),
    (["run", "{t}/ok.md", "-q", "Q", "--profile", "{t}/ok.md"], "go with the strategy auto"),
    (
        ["run", "{t}/ok.md", "-q", "Q", "--strategy", "auto", "--objective", "cost"],
        "--min-accuracy: the cost objective needs a minimum accuracy",
    ),
    (
        ["run", "{t}/ok.md", "-q", "Q", "--strategy", "auto", "--objective", "fast"],
        "'fast' is not one of 'accuracy', 'cost'",
    ),
    (
        [
            "run",
            "{t}/ok.md",
            "-q",
            "Q",
            "--strategy",
            "auto",
            "--objective",
            "cost",
            "--min-accuracy",
            "2",
        ],
        "'--min-accuracy'",
    ),
    (["run", "{t}/ok.md", "-q", "Q", "--parallel", "lots"], "not 'lots'"),
    (["run", "{t}/ok.md", "-q", "Q", "--backend", "openai", "--model", "m"], "no API key"),
    (["run", "{t}/ok.md", "-q", "Q", "--timeout", "-1"], "positive, finite number of seconds"),
    (["run", "{t}/ok.md", "-q", "Q", "--max-tokens", "-5"], "'--max-tokens'"),
    (["run", "{t}/ok.md", "-q", "Q", "--chunk-tokens", "63"], "--chunk-tokens must be at least 64"),
    (["run", "{t}/ok.md", "-q", "Q", "--max-file-bytes", "0"], "'--max-file-bytes'"),
    (["run"], "Missing argument"),
    (["run", "{t}/ok.md", "-q", "Q", "--bogus"], "No such option: --bogus"),
    ([], "Missing command"),
]


@pytest.mark.parametrize(
    ("argv", "fragment"), CASES, ids=[" ".join(c[0][4:]) or c[1] for c in CASES]
)
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


@pytest.mark.timeout(30)  # before the fix the start-up check waited 600 s on a silent server
def test_start_up_check_honours_the_timeout(
    capsys: pytest.CaptureFixture[str], files: Path
) -> None:
    with SilentServer(lifetime_s=30) as server:
        code, _, err = run_cli(
            capsys, "run", f"{files}/ok.md", "-q", "Q", "--backend", "openai", "--model", "m",
            "--base-url", server.base_url, "--timeout", "1", "--retries", "0",
        )  # fmt: skip
        assert server.accepted >= 1  # it connected, and nothing ever came back
    assert code == 2
    assert_one_line_error(err, f"cannot reach {server.base_url}: no answer within 1s")


def test_a_server_answering_models_with_invalid_json_is_one_line(
    capsys: pytest.CaptureFixture[str], files: Path
) -> None:
    def web_page(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, b"<html><body>Welcome to nginx!</body></html>"

    with StubHTTPServer(web_page) as server:
        code, out, err = run_cli(
            capsys, "run", f"{files}/ok.md", "-q", "Q", "--backend", "openai", "--model", "m",
            "--base-url", server.base_url,
        )  # fmt: skip
    assert code == 2 and out == ""
    assert_one_line_error(
        err, f"{server.base_url}/models did not answer like an OpenAI-compatible API"
    )


# -- the plan, before any model call (issue 9, item 10) ------------------------------------------


def test_dry_run_prints_the_plan_and_calls_no_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = tmp_path / "big.md"
    big.write_text("A sentence of filler about nothing in particular. " * 24_000)  # 1.1 MiB
    (tmp_path / "small.md").write_text("Alpha.")
    posts: list[str] = []

    def server(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "POST":
            posts.append(path)
        return 200, MODELS_BODY

    with StubHTTPServer(server) as stub:
        code, out, err = run_cli(
            capsys, "run", str(big), str(tmp_path / "small.md"), "-q", "Q", "--backend", "openai",
            "--model", "m", "--base-url", stub.base_url, "--context-window", "2048", "--dry-run",
        )  # fmt: skip
    assert code == 0, err
    # no model call; counting tokens with the server's tokenizer to cut chunks is allowed
    assert out == "" and [p for p in posts if "tokenize" not in p] == []
    # this stub has no tokenizer route: the one warning says chunk sizes are estimates
    warned = [line for line in err.splitlines() if "tokens.estimated" in line]
    assert len(warned) == 1
    lines = [line for line in err.splitlines() if line not in warned]
    assert lines[0] == "fanout: splitting 2 document(s), 1.1 MiB of text"
    plan = re.fullmatch(
        r"fanout: plan: ([\d,]+) sub-agent\(s\) over 2 document\(s\), 1 of them cut into chunks; "
        r"model calls: \1 for the sub-agents, up to 1 to merge chunk answers, then synthesis "
        r"calls as needed "
        r"\(retries add calls\); sub-agent calls up to ~([\d,]+) tokens",
        lines[1],
    )
    assert plan is not None, lines[1]
    assert int(plan.group(1).replace(",", "")) > 100
    # a dry run says what the sub-agents may spend: the whole text, counted, and their answers
    assert int(plan.group(2).replace(",", "")) > 1.1 * 2**20 / 8
    assert len(lines) == 2


def test_splitting_shows_a_progress_bar_on_a_terminal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stderr is a terminal
    big = tmp_path / "big.md"
    big.write_text("A sentence of filler about nothing in particular. " * 24_000)

    def server(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, MODELS_BODY

    with StubHTTPServer(server) as stub:
        code, _, err = run_cli(
            capsys, "run", str(big), "-q", "Q", "--backend", "openai", "--model", "m",
            "--base-url", stub.base_url, "--context-window", "2048", "--dry-run",
        )  # fmt: skip
    assert code == 0, err
    assert "splitting (characters)" in err  # the bar, not the line printed off a terminal
    assert "fanout: splitting" not in err
    assert "fanout: plan: " in err


def test_the_plan_is_on_stderr_before_the_first_model_call(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Alpha is the first letter.")
    running: dict[str, subprocess.Popen[bytes]] = {}
    before_first_call: list[bytes] = []

    def server(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            return 200, MODELS_BODY
        if not before_first_call:  # what the CLI had written to stderr when the first call came
            fd = running["cli"].stderr.fileno()  # type: ignore[union-attr]
            os.set_blocking(fd, False)
            try:
                before_first_call.append(os.read(fd, 1 << 16))
            except BlockingIOError:
                before_first_call.append(b"")
            os.set_blocking(fd, True)
        return 200, chat_completion_body("Alpha")

    with StubHTTPServer(server) as stub:
        command = [
            sys.executable, "-m", "fanout", "run", str(tmp_path / "a.md"), "-q", "Q",
            "--backend", "openai", "--model", "m", "--base-url", stub.base_url,
            "--synthesis", "collect",
        ]  # fmt: skip
        with subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as cli:
            running["cli"] = cli
            # Not communicate(): it would drain stderr itself, racing the server's look at it.
            code = cli.wait(timeout=120)
            out, rest = cli.stdout.read(), cli.stderr.read()  # type: ignore[union-attr]
    assert code == 0, rest.decode()
    assert before_first_call, "no model call was made"
    early = before_first_call[0].decode()
    assert early.startswith("fanout: plan: 1 sub-agent(s) over 1 document(s); model calls: 1 for")
    assert b"Alpha" in out


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--question" in out


@pytest.fixture
def scripted_cli(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """`fanout run` with the scripted fake behind --backend llama."""
    from fanout.agents import _factory as factory
    from fanout.agents.backend import CompletionRequest
    from fanout.agents.testing import ScriptedBackend

    made: list[object] = []

    def make_backend(kind: str, **options: object) -> ScriptedBackend:
        def answer(request: CompletionRequest) -> str:
            doc = request.tags["document_id"]
            return "not found" if doc == "*" else f"label of {doc}"

        made.append(ScriptedBackend(fn=answer))
        return made[-1]  # type: ignore[return-value]

    monkeypatch.setattr(factory, "make_backend", make_backend)
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
    from fanout.agents import _factory as factory
    from fanout.agents.testing import ScriptedBackend

    # A new backend per run: each run closes its own (a closed one would fail every call).
    monkeypatch.setattr(
        factory, "make_backend", lambda kind, **o: ScriptedBackend(fn=lambda r: "not found")
    )
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
    # A link is judged by its target (tests/hostile/test_small_defects_runtime.py); a device
    # reached any other way is refused as one (test_a_fifo_is_refused_without_blocking).
    assert_one_line_error(err, f"{link}: a link to /dev/zero, which is not a .txt or .md file")


def test_reads_stop_at_the_size_limit_whatever_stat_says() -> None:
    from fanout.agents.errors import UserError
    from fanout.orchestrator.documents import _read_bounded

    status = Path("/proc/self/status")  # a regular file whose stat() size is 0
    assert status.stat().st_size == 0 and len(status.read_bytes()) > 200
    # The command line no longer reaches it (only a link named .md could, and a link is judged
    # by its target): the reader's own bound is checked directly.
    with pytest.raises(UserError, match="over the 200-byte limit"):
        _read_bounded(status, 200)


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


def _profile(tmp_path: Path, model: str) -> Path:
    from fanout.evals.metrics import wilson_interval

    rows = []
    for strategy, n, correct, tokens in [
        ("isolated", 1, 10, 300), ("isolated", 4, 10, 1200),
        ("monolithic", 1, 10, 250), ("monolithic", 4, 3, 700),
    ]:  # fmt: skip
        low, high = wilson_interval(correct, 10)
        rows.append({
            "strategy": strategy, "routing": "blind", "n": n, "band": "<64", "groups": 10,
            "questions": 10, "correct": correct, "accuracy": correct / 10, "ci_low": low,
            "ci_high": high, "tokens_per_question": tokens, "wall_s_per_question": 0.5,
        })  # fmt: skip
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"model": {"name": model}, "suite": "keyvalue", "rows": rows}))
    return path


def test_auto_prints_its_plan_and_refuses_another_models_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fanout.agents import _factory as factory
    from fanout.agents.backend import CompletionRequest
    from fanout.agents.testing import ScriptedBackend

    def answer(request: CompletionRequest) -> str:
        if request.prompt.context_label == "Findings":  # synthesis: the first finding
            return request.prompt.context.splitlines()[0].removeprefix("- ")
        return "Ada [a.txt]" if request.tags["document_id"] == "*" else "Ada"

    monkeypatch.setattr(factory, "make_backend", lambda kind, **o: ScriptedBackend(fn=answer))
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (docs / name).write_text(f"ticket {name}")
    profile = _profile(tmp_path, "scripted")
    code, out, err = run_cli(
        capsys, "run", str(docs), "-q", "Who?", "--strategy", "auto", "--profile", str(profile)
    )
    assert code == 0, err
    assert "fanout: auto chose isolated: isolated 100% [72%-100%] at ~900 tokens" in err
    assert "fanout: plan: 3 sub-agent(s) over 3 document(s)" in err  # before any model call
    assert "Strategy (auto, profile): ran isolated" in out
    assert "keyvalue profile, N=3, <64 tok/doc: interpolated between N=1 and N=4" in out
    assert "expected 100% [72%-100%] accuracy, ~900 tokens" in out
    assert "profile rows: isolated N=1 (<64 tok/doc): 100% [72%-100%], 300 tok/q" in out
    code, out, _ = run_cli(capsys, "run", str(docs / "a.txt"), "-q", "Who?", "--strategy", "auto",
                           "--profile", str(profile), "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["choice"]["strategy"] == "monolithic"
    code, out, _ = run_cli(capsys, "run", str(docs), "-q", "Who?", "--strategy", "auto")
    assert code == 0 and "Strategy (auto, no profile): ran isolated" in out
    assert "no profile: built-in rule" in out
    other = _profile(tmp_path, "gemma-3-270m.gguf")
    code, out, err = run_cli(
        capsys, "run", str(docs), "-q", "Who?", "--strategy", "auto", "--profile", str(other)
    )
    assert code == 2 and out == ""
    assert_one_line_error(
        err, "was measured on gemma-3-270m.gguf, not on this run's model scripted"
    )


def test_top_k_asks_only_the_best_matching_chunks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for i, colour in enumerate(["amber", "jade", "teal", "ivory"]):
        (tmp_path / f"note-{i}.md").write_text(f"The {colour} chest code is {1000 + i}.")
    code, _, err = run_cli(
        capsys, "run", str(tmp_path), "-q", "What is the ivory chest code?", "--top-k", "1",
        "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    assert "1 sub-agent(s) over 1 document(s) (3 left out by the pre-filter)" in err
    code, _, err = run_cli(capsys, "run", str(tmp_path), "-q", "Q", "--top-k", "0", "--dry-run")
    assert code == 2 and "--top-k" in err
