"""Every word a sub-agent says to its model, and how its replies are read.

The QA prompt over one document, and the one prompt over every document (the monolithic baseline).

Wording lives in one place so a prompt change is one diff, measured once (see the README's
evaluation). Base models get few-shot completion prompts; chat models get the same parts as messages
(`fanout.agents.prompts` renders both). The coordinator's own words (merging chunks, synthesis) are
in `fanout.orchestrator.prompts`.
"""

from __future__ import annotations

import re
from typing import Any

from .backend import Example, Prompt, PromptStyle
from .task import SubTask

__all__ = [
    "NOT_FOUND",
    "is_not_found",
    "parse_evidence_answer",
    "parse_qa_output",
    "task_prompt",
]

NOT_FOUND = "not found"
"""What the default sub-agent answers when its document does not hold the answer."""

_QA_INSTRUCTION = (
    "Answer the question using only the document, then quote the sentence of the document that "
    f'gives the answer. If the document does not contain the answer, answer "{NOT_FOUND}".'
)
# Every example shows the evidence line, the abstention too: a small base model copies the layout
# it sees in all examples. (Measured on the embedded 270M model with the supplier notes: with the
# quote asked for first it wrote the name in the quote and then "not found"; answer-first kept
# both right, and the quotes it altered are caught by the grounding check.)
_QA_EXAMPLES = (
    Example(
        context="The Lisbon office opened in 2019. It employs 40 people and sells garden tools.",
        task="How many people does the Lisbon office employ?",
        answer="40 people\nEvidence: It employs 40 people and sells garden tools.",
    ),
    Example(
        context="Our cafeteria serves lunch from noon until 2 pm on weekdays.",
        task="Who founded the company?",
        answer=f"{NOT_FOUND}\nEvidence: none",
    ),
    Example(
        context="The old bridge was painted green in 1998 by the city council.",
        task="What colour is the bridge?",
        answer="green\nEvidence: The old bridge was painted green in 1998 by the city council.",
    ),
)
# Chat models get one plain user message, the request last: on SmolLM2-135M-Instruct a system
# prompt with few-shot turns answered 1 of 4 shipping memos right, one plain message 4 of 4. The
# wording was measured on the Qwen2.5-Coder models (evals/results/ladder/prompt-probe.md): "answer
# in a few words ... or reply not found" abstained on gold passages and on a 75-pair KV object
# whose key was there (0.5B: 8 of 9 KV calls); asking to copy the line first never abstained on a
# distractor; asking first whether a line answers abstained on 8 of 10 gold NQ passages on the
# 1.5B model. Answer first, then the line it came from, with "not found" only when the document
# says nothing that answers: 1.5B answered 7 of 10 gold passages and abstained on 8 of 10
# distractors; 0.5B answered 2 of 4, abstained on 8 of 36 distractors and found 1 of 2 KV values.
# A request put before the document lost the KV case: small models follow what they read last.
_QA_CHAT_REQUEST = (
    "Answer the question in a few words using the document, then copy the line it comes from, "
    "as:\nAnswer: <the answer>\nEvidence: <the line>\n"
    f"If the document says nothing that answers it, reply exactly: {NOT_FOUND}"
)
_QA_JSON_INSTRUCTION = (
    "Answer the question using only the document. Reply with one JSON object: found (false when "
    "the document does not answer the question), answer (a few words), evidence (the sentence of "
    "the document that gives the answer, copied exactly)."
)
# How models say the document does not answer: the one definition of "not found". A refusal
# phrase counts only next to a word for the source, so "the policy does not cover floods" is an
# answer while "the document does not mention it" is not.
_ABSTAIN_EXACT = frozenset({NOT_FOUND, "none", "no answer", "unknown", "n/a", "not stated"})
_REFUSALS = (
    "does not answer", "doesn't answer", "does not contain", "doesn't contain",
    "does not mention", "doesn't mention", "does not say", "doesn't say", "does not provide",
    "doesn't provide", "not mentioned", "not stated", "no information", "not provided",
    "cannot be determined", "can't be determined",
)  # fmt: skip
_SOURCE_WORDS = ("document", "text", "passage", "context", "question", "provided")


def is_not_found(text: str | None) -> bool:
    """Whether a model's answer says its document does not answer the question."""
    if text is None:
        return True
    norm = " ".join(text.lower().replace("\u2019", "'").strip(" .\"'").split())
    if not norm or norm in _ABSTAIN_EXACT or norm.startswith(NOT_FOUND):
        return True
    return any(r in norm for r in _REFUSALS) and any(w in norm for w in _SOURCE_WORDS)


_ANSWER_THEN_EVIDENCE = re.compile(
    r"^\s*answer\s*:\s*(?P<answer>[^\n]*)\n\s*evidence\s*:\s*(?P<quote>.*)$", re.I | re.S
)
_EVIDENCE_THEN_ANSWER = re.compile(
    r"^\s*(?:evidence\s*:\s*(?P<quote>.*?)\s*)?\banswer\s*:\s*(?P<answer>.*)$", re.I | re.S
)
_WRAPPING = " \t\"'`“”‘’"


def parse_evidence_answer(text: str) -> tuple[str, str | None]:
    """(answer, quote) from a chat QA reply: "Answer:" and "Evidence:" lines, in either order.

    Models asked for one order sometimes write the other. A reply without an answer line is all answer ("not found", or a model that skipped the
    layout); an answer runs to the end of its line.
    """
    first = _ANSWER_THEN_EVIDENCE.match(text)
    if first is not None:
        answer = first.group("answer").strip().strip(_WRAPPING)
        quote = first.group("quote").strip()
        if is_not_found(answer) or quote.lower().strip(" .") in ("none", "", NOT_FOUND):
            return answer, None
        return answer, quote
    match = _EVIDENCE_THEN_ANSWER.match(text)
    if match is None:
        return text.strip(), None
    answer = (match.group("answer").strip().splitlines() or [""])[0].strip(_WRAPPING)
    quote = (
        match.group("quote") or ""
    ).strip()  # grounding strips its edges; a JSON line keeps them
    if quote.lower().strip(" .") in ("none", ""):
        return answer, None
    return answer, quote


def parse_qa_output(text: str) -> tuple[str, str | None]:
    """(answer, quote) from a completion of the QA prompt: the answer, then "Evidence: <quote>".

    A model that skipped the evidence line gave no quote; "none" is no quote either.
    """
    answer, _, quote = text.partition("\nEvidence:")
    quote = quote.strip()
    if quote.lower().strip(" .") in ("none", ""):
        return answer.strip(), None
    return answer.strip(), quote


# Documents are numbered, never named: a file name may hold any character, and "[3]" costs two
# or three tokens where a name costs ten (see `fanout.orchestrator.aliases`).
_MONOLITHIC_INSTRUCTION = (
    "Answer the question using only the documents below. Each document starts with its number in "
    "brackets. Cite the numbers of the documents you used in brackets."
)
_MONOLITHIC_EXAMPLES = (
    Example(
        context="[1]\nThe meeting moved to Tuesday.\n\n[2]\nRoom 4B is booked.",
        task="When is the meeting?",
        answer="Tuesday [1]",
    ),
)


def task_prompt(
    task: SubTask,
    *,
    style: PromptStyle = "completion",
    json_schema: dict[str, Any] | None = None,
) -> Prompt:
    """The default prompt for a sub-task: extractive QA over one document, or over all of them.

    Completion (base) models get few-shot examples that answer, then quote; chat models get
    one plain message; with a JSON schema the layout is the schema's, so examples are dropped.
    """
    if task.document_id is None:
        return Prompt(
            instruction=_MONOLITHIC_INSTRUCTION,
            context=task.context,
            task=task.task,
            examples=() if json_schema is not None else _MONOLITHIC_EXAMPLES,
            context_label="Documents",
        )
    if json_schema is not None:
        return Prompt(instruction=_QA_JSON_INSTRUCTION, context=task.context, task=task.task)
    if style == "chat":
        return Prompt(
            instruction="", context=task.context, task=task.task, closing=_QA_CHAT_REQUEST
        )
    return Prompt(
        instruction=_QA_INSTRUCTION,
        context=task.context,
        task=task.task,
        examples=_QA_EXAMPLES,
    )
