"""A scripted reader of the coordinator's prompts, for hostile-text tests.

It answers like a small model that follows the layout it is shown: a sub-agent extracts "The
account manager is X." from its document, a synthesizer copies its findings (aliases and all), and
the one-prompt baseline cites the number of each document it extracts from. It works on a
`CompletionRequest` (for `ScriptedBackend`) and on the text of an HTTP chat request (for a loopback
server the CLI talks to).
"""

from __future__ import annotations

import json
import re

from fanout.agents.backend import CompletionRequest
from tests.conftest import MODELS_BODY, chat_completion_body

FACT = re.compile(r"account manager is ([^.\n]+)\.")
QUESTION = "Who is the account manager?"


def answer_block(label: str, context: str) -> str:
    """What the model writes for a prompt whose context is introduced by `label`."""
    if label == "Findings":
        return context
    if label == "Documents":
        blocks = re.split(r"^\[(\d+)\]$", context, flags=re.M)[1:]
        lines = [
            f"- {fact.group(1)} [{number}]"
            for number, text in zip(blocks[::2], blocks[1::2], strict=True)
            if (fact := FACT.search(text))
        ]
        return "\n".join(lines) or "not found"
    fact = FACT.search(context)
    return fact.group(1) if fact else "not found"


def answer(request: CompletionRequest) -> str:
    """`ScriptedBackend(fn=answer)`."""
    return answer_block(request.prompt.context_label, request.prompt.context)


def chat_reply(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """A `StubHTTPServer` handler: the same model behind an OpenAI-compatible chat endpoint."""
    if method == "GET":
        return 200, MODELS_BODY
    content = json.loads(body)["messages"][-1]["content"]
    label, _, rest = content.partition(": ")
    context = rest.rsplit("\nQuestion: ", 1)[0]
    return 200, chat_completion_body(answer_block(label, context))
