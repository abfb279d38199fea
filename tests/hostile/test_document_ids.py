"""Class 4 of issue 17: any name a filesystem allows is a document id, and ids are opaque.

Models see aliases ("[1]"), never ids; the coordinator maps the aliases they cite back, so every id
round-trips through prompts, citations, the answer, tables and JSON.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import Coordinator, Document, Request
from fanout.orchestrator._aliases import inline_id
from tests.conftest import ROOT, StubHTTPServer
from tests.hostile.text_model import QUESTION, answer, chat_reply

# Punctuation that citations once split on, brackets, a line break, ids that look like aliases or
# like alias lists, unicode and spaces.
HOSTILE_IDS = [
    "northwind, 2025.md",
    "[x].md",
    "a;b.md",
    "line\nbreak.md",
    "ünïcødé 文档.md",
    " spaced name .md",
    "1",
    "[2]",
    "2, 1",
    "a]b[c.md",
    "tab\there.md",
]
NAMES = [f"Person {chr(65 + i)}{chr(97 + i)}" for i in range(len(HOSTILE_IDS))]


def documents() -> list[Document]:
    return [
        Document(id=i, text=f"Notes.\nThe account manager is {n}.")
        for i, n in zip(HOSTILE_IDS, NAMES, strict=True)
    ]


@pytest.mark.parametrize("strategy", ["isolated", "monolithic"])
@pytest.mark.parametrize("synthesis", ["llm", "collect"])
def test_every_id_round_trips_through_prompts_citations_and_json(
    strategy: str, synthesis: str
) -> None:
    backend = ScriptedBackend(fn=answer)
    coordinator = Coordinator(backend, strategy=strategy, synthesis=synthesis)  # type: ignore[arg-type]
    result = coordinator.run(Request(documents=documents(), question=QUESTION))
    assert result.citations == HOSTILE_IDS
    assert result.invalid_citations == [] and result.uncited == [] and result.ok
    for name in NAMES:
        assert name in result.answer
    # JSON keeps every id exactly.
    assert json.loads(result.model_dump_json())["citations"] == HOSTILE_IDS
    # No prompt shows an id: the model reads aliases only.
    for call in backend.calls:
        if call.tags["document_id"] == "*" or strategy == "monolithic":
            shown = call.prompt.context + call.prompt.task
            assert not any(i in shown for i in HOSTILE_IDS if len(i) > 3)


def test_the_answer_shows_each_id_on_one_line() -> None:
    result = Coordinator(ScriptedBackend(fn=answer)).run(
        Request(documents=documents(), question=QUESTION)
    )
    lines = result.answer.splitlines()
    assert len(lines) == len(HOSTILE_IDS), "an id's line break never splits an answer line"
    assert "- Person Dd [line\\nbreak.md]" in lines
    assert "- Person Aa [northwind, 2025.md]" in lines
    assert "- Person Bb [[x].md]" in lines


def test_an_empty_id_is_refused() -> None:
    with pytest.raises(ValueError, match="document id is empty"):
        Document(id="", text="text")


def test_the_cli_keeps_findings_of_files_with_any_name(tmp_path: Path) -> None:
    """`fanout run "northwind, 2025.md" harbor.md`: both findings, both cited, nothing removed."""
    folder = tmp_path / "docs"
    folder.mkdir()
    names = ["northwind, 2025.md", "harbor.md", "[x].md", "a;b.md", "new\nline.md", "ünï 文.md"]
    for i, name in enumerate(names):
        (folder / name).write_text(f"The account manager is {NAMES[i]}.", encoding="utf-8")
    with StubHTTPServer(chat_reply) as server:
        for strategy in ("isolated", "monolithic"):
            proc = subprocess.run(
                [sys.executable, "-m", "fanout", "run", str(folder), "-q", QUESTION,
                 "--backend", "openai", "--model", "m", "--base-url", server.base_url,
                 "--strategy", strategy, "--json"],
                cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)
            assert sorted(result["citations"]) == sorted(names), strategy
            assert result["invalid_citations"] == [], strategy
            assert all(NAMES[i] in result["answer"] for i in range(len(names))), strategy


def test_synthesis_numbers_findings_in_the_order_it_shows_them() -> None:
    """Gemma 270M renumbered findings listed "[3] [1] [2]" as "[1] [2] [3]": so each synthesis
    prompt numbers its documents in the order its findings are listed, and that is right."""
    docs = [
        Document(id="harbor.md", text="Harbor. The account manager is Tom Becker."),
        Document(id="lumen.md", text="Lumen. The account manager is Ana Ribeiro."),
        Document(
            id="northwind.md", text="Northwind manager account. The account manager is Priya Shah."
        ),
    ]

    def sequential(request: CompletionRequest) -> str:
        if request.prompt.context_label != "Findings":
            return answer(request)
        claims = [line.rsplit(" [", 1)[0] for line in request.prompt.context.splitlines()]
        return "\n".join(f"{c} [{i}]" for i, c in enumerate(claims, 1))

    result = Coordinator(ScriptedBackend(fn=sequential)).run(
        Request(documents=docs, question=QUESTION)
    )
    ranked = sorted((a for a in result.answers if a.selected), key=lambda a: a.rank or 0)
    assert ranked[0].document_id == "northwind.md" and len(ranked) == 3
    assert result.invalid_citations == [] and result.synthesis_error is None
    for line in result.answer.splitlines():
        name = line.removeprefix("- ").split(" [")[0]
        doc = next(d for d in docs if name in d.text)
        assert line.endswith(f"[{doc.id}]"), line


def test_instructions_answered_apart_are_joined_with_the_right_citations() -> None:
    docs = documents()[:3]
    backend = ScriptedBackend(fn=answer)
    result = Coordinator(backend).run(
        Request(documents=docs, instructions=("Who is the account manager?", "Name the manager."))
    )
    assert result.invalid_citations == [] and result.uncited == []
    assert result.citations == [d.id for d in docs]
    for i in range(3):
        assert f"{NAMES[i]} [{inline_id(HOSTILE_IDS[i])}]" in result.answer
