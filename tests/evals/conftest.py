"""An answering function for `ScriptedBackend` that reads the prompt like a perfect model would.

It knows the keyvalue facts ("The access code for the <key> is <code>.") and the prompt shapes of
every strategy, so a test can run any strategy end to end and know what the right answer was.
"""

from __future__ import annotations

import re

import pytest

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend


def answer_one(question: str, context: str) -> str:
    key = re.search(r"access code for the (.+?)\?", question)
    if key is None:
        return "not found"
    fact = re.search(rf"access code for the {re.escape(key.group(1))} is (\d+)", context)
    return fact.group(1) if fact else "not found"


def oracle(request: CompletionRequest) -> str:
    prompt = request.prompt
    if prompt.context_label == "Findings":  # the coordinator's synthesis: keep the first finding
        return prompt.context.splitlines()[0].removeprefix("- ")
    if prompt.task_label == "Questions":
        if prompt.answer_label == "Notes":  # chain worker: pass everything on
            return prompt.context.replace("\n", " ")
        questions = [line.split(". ", 1)[1] for line in prompt.task.splitlines()]
        return "\n".join(
            f"{i}. {answer_one(q, prompt.context)}" for i, q in enumerate(questions, 1)
        )
    return answer_one(prompt.task, prompt.context)


@pytest.fixture
def oracle_backend() -> ScriptedBackend:
    return ScriptedBackend(fn=oracle)


def confused(request: CompletionRequest) -> str:
    """A model that reads one or two documents right but, given more in one prompt, answers
    with the first code it sees: the multi-instance penalty, scripted."""
    prompt = request.prompt
    documents = len(re.findall(r"^\[\d+\]$", prompt.context, re.M))
    if prompt.context_label != "Findings" and documents > 2:
        codes = re.findall(r" is (\d{4})\.", prompt.context)
        if prompt.task_label == "Questions":
            return "\n".join(f"{i}. {codes[0]}" for i in range(1, prompt.task.count("\n") + 2))
        return codes[0] if codes else "not found"
    return oracle(request)
