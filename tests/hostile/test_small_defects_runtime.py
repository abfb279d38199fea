"""Class 9 of issue 17, the runtime items: words bm25s cannot index, bm25s's logger, links that
point elsewhere, and a closed coordinator.

(The other items of class 9, notes for dropped findings and "No document answers" after
failures, are tested with the text classes.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import Coordinator, Document, Request, load_documents
from fanout.orchestrator.context import RunContext
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("texts", "answer"),
    [(["t", "x"], "x"), (["the a", "and of"], "the"), (["??", "!!"], "--")],
    ids=["one-letter", "stopwords-only", "punctuation"],
)
def test_documents_with_no_indexable_word_are_ranked_without_crashing(
    texts: list[str], answer: str
) -> None:
    async def says(ctx: RunContext) -> str:
        return answer

    documents = [Document(id=f"d{i}.md", text=t) for i, t in enumerate(texts)]
    result = Coordinator(ScriptedBackend(), sub_agent=says, synthesis="collect").run(
        Request(documents=documents, question="?")
    )
    assert [a.selected for a in result.answers] == [True, True]  # nothing tells them apart
    assert result.ok


APP = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="APP|%(name)s|%(message)s")
    before = logging.getLogger("bm25s").level
    from fanout import Coordinator, Document, Request, ScriptedBackend
    backend = ScriptedBackend(fn=lambda r: "the jade code is 7")
    docs = [Document(id=f"d{i}.md", text=f"Note {i}: the jade code is 7.") for i in range(3)]
    Coordinator(backend, synthesis="collect").run(Request(documents=docs, question="jade code?"))
    assert logging.getLogger("bm25s").level == before, logging.getLogger("bm25s").level
    print("GUEST-OK")
    """
)


def test_ranking_leaves_the_applications_logging_as_it_was() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", APP], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "GUEST-OK"
    assert not [line for line in proc.stdout.splitlines() if line.startswith("APP|bm25s")]


def test_a_link_named_like_a_document_is_judged_by_its_target(tmp_path: Path) -> None:
    if not Path("/etc/hostname").is_file():
        pytest.skip("no /etc/hostname on this system")
    link = tmp_path / "host.txt"
    link.symlink_to("/etc/hostname")
    with pytest.raises(UserError, match=r"a link to /etc/hostname, which is not a \.txt or \.md"):
        load_documents([str(link)])


def test_a_link_in_a_folder_must_stay_in_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.md").write_text("the vault code is 0000")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("Alpha.")
    (folder / "leak.md").symlink_to(outside / "secret.md")
    for spec in (str(folder), str(folder / "*.md")):
        with pytest.raises(UserError, match=r"leak.md: a link to .*secret.md, outside .*docs"):
            load_documents([spec])
    # Named on the command line, a link to a document is the user's choice: it is read.
    assert [d.text for d in load_documents([str(folder / "leak.md")])] == ["the vault code is 0000"]
    # A link that stays inside its folder is read like any document.
    os.remove(folder / "leak.md")
    (folder / "b.md").symlink_to(folder / "a.md")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.md").symlink_to(folder / "a.md")
    with pytest.raises(UserError, match="given more than once"):
        load_documents([str(folder)])  # the same file twice is still refused


def test_the_cli_refuses_a_link_out_of_a_folder_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("Alpha.")
    (folder / "key.md").symlink_to(tmp_path / "outside.md")
    (tmp_path / "outside.md").write_text("a private key")
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "run", str(folder), "-q", "Q", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "outside" in proc.stderr


def test_run_after_close_is_one_clear_error_without_any_call() -> None:
    backend = ScriptedBackend(fn=lambda r: "x")
    coordinator = Coordinator(backend)
    coordinator.close()
    with pytest.raises(UserError, match="this Coordinator is closed"):
        coordinator.run(Request(documents=[Document(id="a.md", text="A")], question="Q"))
    assert backend.n_calls == 0
