"""Prompts of the strategies the coordinator has none for: mti/batch, chain, sequential.

Several questions in one call (mti, batch), a Chain-of-Agents worker and manager, and a sequential
session's turns.
All are few-shot and end on an answer cue, so base models (the embedded Gemma 3 270M) continue
them with the answer; chat models get the same parts as messages (see `fanout.agents._prompts`).
Documents are shown under their number in the group ("[1]"), never their id, as in the
coordinator's prompts (`fanout.orchestrator._aliases`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fanout.agents.backend import Example, Prompt
from fanout.agents.subagent import NOT_FOUND, task_prompt
from fanout.agents.task import SubTask

from .suites.group import Document

__all__ = [
    "chain_manager_prompt",
    "chain_worker_prompt",
    "documents_block",
    "numbered",
    "numbered_prompt",
    "sequential_prompt",
]

_NUMBERED_INSTRUCTION = (
    "Answer every question using only the documents. Each document starts with its number in "
    "brackets. Give one short answer per question, on its own line, numbered like the questions."
)
# Three questions, so a small model sees the numbering continue past 2; one is answered from the
# second document, so it sees that questions and documents need not line up.
_NUMBERED_EXAMPLES = (
    Example(
        context=(
            "[1]\nThe meeting moved to Tuesday. Lunch will be served at noon.\n\n"
            "[2]\nRoom 4B is booked. The projector is broken."
        ),
        task="1. When is the meeting?\n2. Which room is booked?\n3. When is lunch served?",
        answer="1. Tuesday\n2. Room 4B\n3. at noon",
    ),
)
_WORKER_INSTRUCTION = (
    "You read one document of many. Update the notes with every fact from the document that helps "
    "answer the questions. Keep the earlier notes. Write the notes on one line."
)
_WORKER_EXAMPLES = (
    Example(
        context=(
            "Notes so far: The meeting is on Tuesday.\n"
            "[2]\nRoom 4B is booked. The projector is broken."
        ),
        task="1. When is the meeting?\n2. Which room is booked?",
        answer="The meeting is on Tuesday. Room 4B is booked.",
    ),
)
_MANAGER_INSTRUCTION = (
    "Answer every question using only the notes. Give one short answer per question, on its own "
    "line, numbered like the questions."
)
_MANAGER_EXAMPLES = (
    Example(
        context="The meeting is on Tuesday. Room 4B is booked.",
        task="1. When is the meeting?\n2. Which room is booked?",
        answer="1. Tuesday\n2. Room 4B",
    ),
)


def numbered(questions: Sequence[str]) -> str:
    """Questions as a numbered list, one a line."""
    return "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))


def documents_block(documents: Sequence[Document]) -> str:
    """Documents one after another, each under its number in brackets (as the monolithic prompt)."""
    return "\n\n".join(f"[{i}]\n{d.text.strip()}" for i, d in enumerate(documents, 1))


def numbered_prompt(documents: Sequence[Document], questions: Sequence[str]) -> Prompt:
    """Every document and every question in one call; the answer is a numbered list."""
    return Prompt(
        instruction=_NUMBERED_INSTRUCTION,
        context=documents_block(documents),
        task=numbered(questions),
        examples=_NUMBERED_EXAMPLES,
        context_label="Documents",
        task_label="Questions",
        answer_label="Answers",
    )


def chain_worker_prompt(
    notes: str, document: Document, questions: Sequence[str], *, number: int
) -> Prompt:
    """A Chain-of-Agents worker: the notes so far plus one document (the `number`-th) in, notes out."""
    return Prompt(
        instruction=_WORKER_INSTRUCTION,
        context=f"Notes so far: {notes or 'none'}\n[{number}]\n{document.text.strip()}",
        task=numbered(questions),
        examples=_WORKER_EXAMPLES,
        context_label="Input",
        task_label="Questions",
        answer_label="Notes",
    )


def chain_manager_prompt(notes: str, questions: Sequence[str]) -> Prompt:
    """The Chain-of-Agents manager: answers every question from the last worker's notes."""
    return Prompt(
        instruction=_MANAGER_INSTRUCTION,
        context=notes or NOT_FOUND,
        task=numbered(questions),
        examples=_MANAGER_EXAMPLES,
        context_label="Notes",
        task_label="Questions",
        answer_label="Answers",
    )


def sequential_prompt(
    documents: Sequence[Document], question: str, earlier: Sequence[tuple[str, str]]
) -> Prompt:
    """One turn of a single-task session: fanout's QA prompt plus the session so far.

    The session's earlier questions and answers are shown before the current one: they are what a
    sequential agent remembers.
    """
    context = documents[0].text if len(documents) == 1 else documents_block(documents)
    base = task_prompt(SubTask(id="turn", document_id="turn", task=question, context=context))
    turns = tuple(Example(context="", task=q, answer=a) for q, a in earlier)
    return base.model_copy(update={"examples": base.examples + turns})
