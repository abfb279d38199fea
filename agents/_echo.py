"""Recognising a base model behind a chat endpoint from what it answers.

A server that has no chat template for a model formats chat turns with some default markup
(llama-cpp-python: Llama 2's ``[INST]``); a base model then continues that markup, or repeats the
system prompt, instead of answering. No chat model's answer contains its prompt's markup, so
either in a reply means the endpoint, not the model, is wrong.
"""

from __future__ import annotations

from .backend import Prompt

__all__ = ["ECHO_HINT", "echo_reason"]

ECHO_HINT = (
    "it looks like a base model (no chat template) behind a chat endpoint: "
    "use --endpoint completions (OpenAIBackend(endpoint='completions'))"
)
"""What to do about an echo, for error messages."""

_MARKUP = (
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|start_header_id|>",
    "<|eot_id|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "### Instruction:",
)
# Instructions shorter than this could be repeated by an honest answer.
_MIN_ECHO_CHARS = 24


def echo_reason(prompt: Prompt, reply: str) -> str | None:
    """Why `reply` looks like an echo of the chat prompt rather than an answer (None if it does not)."""
    for marker in _MARKUP:
        if marker in reply:
            return f"its reply contains chat markup {marker!r}"
    instruction = prompt.instruction.strip()
    if len(instruction) >= _MIN_ECHO_CHARS and instruction in reply:
        return "its reply repeats the system prompt"
    return None
