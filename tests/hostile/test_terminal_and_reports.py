"""Class 3 of issue 17: untrusted text is made safe for the sink it reaches.

Model output, document text, file names and server errors never rewrite the terminal (C0/C1
controls and escape sequences are shown as escapes), never break rich (markup and emoji codes are
text, so no `MarkupError` after a finished run), and never become Markdown or HTML in reports.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table

from fanout.agents._safe_text import (
    CELL_LIMIT,
    console,
    for_html,
    for_markdown,
    for_terminal,
    rich_text,
    visible,
)
from tests.conftest import MODELS_BODY, ROOT, StubHTTPServer, chat_completion_body, json_body

C0 = [chr(c) for c in range(0x20)] + ["\x7f"]
C1 = [chr(c) for c in range(0x80, 0xA0)]
UNICODE_CONTROLS = ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
# invisible: zero-width space, word joiner, invisible operators, byte order mark
UNICODE_CONTROLS += ["\u200b", *(chr(c) for c in range(0x2060, 0x2065)), "\ufeff"]
UNICODE_CONTROLS += [chr(c) for c in range(0x202A, 0x202F)] + [
    chr(c) for c in range(0x2066, 0x206A)
]
ESCAPES = ["\x1bc", "\x1b[2J", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "\x1bE", "\x9b2J", "\r"]
MARKUP = [
    "[/x]", "[/b]", "[bold]b[/bold]", "[link=http://e.org]l[/link]", ":warning:", "[red]",
    "**bold**", "_em_", "[l](http://e.org)", "![i](http://e.org/i.png)", "<script>x</script>",
    "<img src=x onerror=alert(1)>", "a | b", "`code`", "&amp;", "# heading", "~~s~~", '"q"', "'q'",
]  # fmt: skip
HOSTILE = "".join(C0 + C1 + UNICODE_CONTROLS + ESCAPES + MARKUP)
CONTROL = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u2069\ufeff]"
)


@pytest.mark.parametrize("char", C0 + C1 + UNICODE_CONTROLS)
def test_every_control_is_shown_visibly_on_one_line(char: str) -> None:
    shown = visible(f"a{char}b")
    assert not CONTROL.search(shown) and "\n" not in shown
    assert shown.startswith("a\\") and shown.endswith("b")


def test_multiline_text_keeps_its_line_feeds_only() -> None:
    shown = visible(HOSTILE + "\nsecond line", multiline=True)
    assert shown.count("\n") == 2  # the sample's own line feed, and this one
    assert not CONTROL.search(shown)


def test_rich_prints_every_markup_form_as_text() -> None:
    out = io.StringIO()
    term = console(file=out, width=400, force_terminal=False)
    table = Table()
    table.add_column("cell")
    for sample in [*MARKUP, HOSTILE]:
        table.add_row(rich_text(sample, multiline=False))
        term.print(rich_text(sample))
    term.print(table)
    printed = out.getvalue()
    assert not CONTROL.search(printed)
    for sample in MARKUP:
        assert sample in printed, sample  # shown as written: no tag eaten, no emoji, no link


def test_markdown_and_html_escape_every_form() -> None:
    md, page = for_markdown(HOSTILE), for_html(HOSTILE)
    for out in (md, page):
        assert not CONTROL.search(out) and "\n" not in md
        assert "<script>" not in out and "<img" not in out
    assert not re.search(r"(?<!\\)([|*_`]|\]\(|!\[)", md), "no Markdown special is left live"
    assert '"' not in page and "'" not in page


def test_long_cells_are_cut_and_say_how_much() -> None:
    cell = for_terminal("x" * (CELL_LIMIT + 500), limit=CELL_LIMIT)
    assert cell.endswith("… (500 more characters)") and len(cell) < CELL_LIMIT + 40


FORGED_SCREEN = (
    "\x1bc\x1b[2J+----------+\n| forged   |\n+----------+\n"
    "\x1bEfanout: Missing: harbor.md (BackendTimeout: forged) [/x] :warning: [bold]"
)


def hostile_server(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    if method == "GET":
        return 200, MODELS_BODY
    content = json.loads(body)["messages"][-1]["content"]
    if "ESC-400" in content:  # a server error quoting markup and an escape sequence
        return 400, json_body({"error": {"message": "bad [/b] input \x1b[2J here", "type": "x"}})
    if content.startswith("Findings: "):
        return 200, chat_completion_body(content.split("\n")[0].removeprefix("Findings: "))
    return 200, chat_completion_body(f"Priya Shah {FORGED_SCREEN} " + "y" * 2000)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", *args],
        cwd=cwd, env={**os.environ, "COLUMNS": "1000"}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_the_cli_shows_hostile_model_text_file_names_and_server_errors_safely(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a\x1b[2J[bold]:warning:.md").write_text("The account manager is Priya Shah.")
    (docs / "b.md").write_text("ESC-400 The account manager is Tom Becker.")
    with StubHTTPServer(hostile_server) as server:
        common = ["--backend", "openai", "--model", "m", "--base-url", server.base_url]
        proc = run_cli("run", str(docs), "-i", "summarise [/x]", "-i", "list dates", *common)
        as_json = run_cli("run", str(docs), "-q", "Who?", *common, "--json")
        bad = run_cli("run", str(tmp_path / "missing\x1b[2J[/b].md"), "-q", "Q", *common)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # b.md's sub-agents failed; the run still answered
    assert "Traceback" not in out and "MarkupError" not in out
    assert not CONTROL.search(out), "no control character reaches the terminal"
    assert "\\x1bc" in proc.stdout and "[/x]" in proc.stdout and ":warning:" in proc.stdout
    assert "bad [/b] input \\x1b[2J here" in proc.stdout  # the server error, as text
    assert "a\\x1b[2J[bold]:warning:.md" in proc.stdout  # the file name, as text
    # The forged report line is inside the answer's text, never a line of its own.
    assert not any(line.startswith("fanout: Missing") for line in proc.stdout.splitlines())
    assert "more characters)" in proc.stdout  # the long answer cell was cut...
    result = json.loads(as_json.stdout)  # ...and the JSON keeps it whole, controls and all
    assert any("\x1bc\x1b(2J+---" in (a["answer"] or "") for a in result["answers"])
    assert any(("y" * 2000) in (a["answer"] or "") for a in result["answers"])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "missing\\x1b[2J[/b].md" in bad.stderr and not CONTROL.search(bad.stderr)


def test_eval_reports_and_the_comparison_escape_names_from_results(tmp_path: Path) -> None:
    dataset = tmp_path / "data.jsonl"
    hostile = "<script>alert(1)</script> [/x] | **b** \x1b[2J"
    line = {
        "id": "q1",
        "question": "Who is the account manager?",
        "answer": "Priya Shah",
        "documents": [{"id": f"{hostile}.md", "text": "The account manager is Priya Shah."}],
    }
    dataset.write_text(json.dumps(line) + "\n")

    def model(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            return 200, MODELS_BODY
        return 200, chat_completion_body("Priya Shah")

    outs = [tmp_path / "a", tmp_path / "b"]
    with StubHTTPServer(model) as server:
        for out, name in zip(outs, [hostile, f"{hostile} v2 [/y]"], strict=True):
            proc = run_cli(
                "eval", "--suite", "jsonl", "--dataset", str(dataset), "--strategies",
                "isolated,monolithic", "--instances", "1", "--groups", "1", "--backend", "openai",
                "--model", name, "--base-url", server.base_url, "--out", str(out),
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            found = CONTROL.search(proc.stdout + proc.stderr)
            both = proc.stdout + proc.stderr
            assert not found, repr(both[max(0, found.start() - 100) : found.start() + 30])
            assert "MarkupError" not in proc.stderr
    page = (outs[0] / "report.html").read_text()
    md = (outs[0] / "report.md").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    command = next(line for line in md.splitlines() if line.startswith("- **command**: "))
    assert command.endswith("`") and command.count("`") == 2  # a code span: shown, not rendered
    rest = md.replace(command, "")
    assert "<script>" not in rest and "&lt;script&gt;" in rest and "\\*\\*b\\*\\*" in rest
    assert not CONTROL.search(page + md.replace("\n", ""))
    compared = run_cli("report", str(outs[0]), str(outs[1]))
    assert compared.returncode == 0, compared.stderr
    assert "[/y]" in compared.stdout and not CONTROL.search(compared.stdout)  # "differs: model"
