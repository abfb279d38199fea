"""The chat sub-agent prompt: what its layout shares across sub-agents, and how its reply is read."""

import pytest

from fanout.agents._prompts import render_chat, render_completion
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.subagent import parse_evidence_answer
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import Coordinator, Document, Request

DOCS = (
    Document(id="a.md", text="The ferry leaves at noon. Tickets cost thirty-three euros."),
    Document(id="b.md", text="The museum is closed on Mondays."),
)
QUESTION = "How much does a ferry ticket cost?"


def test_the_chat_sub_agent_asks_for_the_answer_then_its_line_after_the_document() -> None:
    def reply(request: CompletionRequest) -> str:
        if request.tags["document_id"] == "a.md":
            return "Answer: thirty-three euros\nEvidence: Tickets cost thirty-three euros."
        return "not found"

    backend = ScriptedBackend(fn=reply, prompt_style="chat")
    result = Coordinator(backend).run(Request(documents=DOCS, question=QUESTION))
    first, _ = backend.prompts
    # the request is what the model reads last, after its document and the question
    assert (
        first.index(DOCS[0].text)
        < first.index(QUESTION)
        < first.index("Answer the question in a few words")
    )
    assert first.rstrip().endswith("reply exactly: not found")
    (found,) = [a for a in result.answers if a.outcome == "found"]
    assert (found.document_id, found.answer) == ("a.md", "thirty-three euros")
    assert found.evidence == "Tickets cost thirty-three euros." and found.grounded
    assert result.answer.startswith("thirty-three euros")


@pytest.mark.parametrize(
    ("reply", "answer", "quote"),
    [
        ('Evidence: "k1": "v1",\nAnswer: "v1"', "v1", '"k1": "v1",'),
        (
            "Evidence: It has 33 floors.\nAnswer: 33 floors\n\nIt is tall.",
            "33 floors",
            "It has 33 floors.",
        ),
        ("evidence: none\nanswer: not found", "not found", None),
        ("not found", "not found", None),
        ("Answer: Paris", "Paris", None),
        ("Paris", "Paris", None),  # a model that skipped the layout answered all the same
        ("Answer: 33 floors\nEvidence: It has 33 floors.", "33 floors", "It has 33 floors."),
        ("Answer: not found\nEvidence: not found", "not found", None),
        ('answer: "Tinker"\nevidence: none', "Tinker", None),
    ],
)
def test_an_evidence_then_answer_reply_is_read(reply: str, answer: str, quote: str | None) -> None:
    assert parse_evidence_answer(reply) == (answer, quote)


def test_task_first_shows_the_task_on_both_sides_of_the_context() -> None:
    prompt = Prompt(instruction="Answer.", context="DOC", task="Q?", task_first=True)
    assert render_chat(prompt)[-1]["content"] == "Question: Q?\n\nDocument: DOC\n\nQuestion: Q?"
    assert render_completion(prompt).endswith(
        "Question: Q?\n\nDocument: DOC\n\nQuestion: Q?\nAnswer:"
    )
    plain = prompt.model_copy(update={"task_first": False})
    assert render_chat(plain)[-1]["content"] == "Document: DOC\nQuestion: Q?"
