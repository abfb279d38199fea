"""Rendering a structured `Prompt` for base (completion) models and for chat models.

Base models such as the embedded Gemma 3 270M have no chat template: given chat turns they echo them.
They answer well when the prompt is a document they can continue: instruction, worked examples in a
fixed layout, then the real item ending on the answer cue. Chat models get the same parts as messages.
"""

from __future__ import annotations

from .backend import Prompt

__all__ = ["prompt_text", "render_chat", "render_completion", "stop_sequences"]


def _block(
    context_label: str,
    context: str,
    task_label: str,
    task: str,
    *,
    task_first: bool = False,
    closing: str = "",
) -> str:
    task_line = f"{task_label}: {task.strip()}"
    if closing.strip():
        task_line = f"{task_line}\n\n{closing.strip()}"
    if not context:
        return task_line
    context_line = f"{context_label}: {context.strip()}"
    if task_first:  # everything before the context is shared by the calls of one task
        return f"{task_label}: {task.strip()}\n\n{context_line}\n\n{task_line}"
    return f"{context_line}\n{task_line}"


def render_completion(prompt: Prompt) -> str:
    """One text ending on the answer cue, so a base model's continuation is the answer."""
    parts = [prompt.instruction.strip()] if prompt.instruction.strip() else []
    for ex in prompt.examples:
        block = _block(
            prompt.context_label,
            ex.context,
            prompt.task_label,
            ex.task,
            task_first=prompt.task_first,
        )
        parts.append(f"{block}\n{prompt.answer_label}: {ex.answer.strip()}")
    block = _block(
        prompt.context_label, prompt.context, prompt.task_label, prompt.task,
        task_first=prompt.task_first, closing=prompt.closing,
    )  # fmt: skip
    parts.append(f"{block}\n{prompt.answer_label}:")
    return "\n\n".join(parts)


def render_chat(prompt: Prompt) -> list[dict[str, str]]:
    """System instruction, few-shot turns, then the real item as the last user message."""
    messages: list[dict[str, str]] = []
    if prompt.instruction.strip():
        messages.append({"role": "system", "content": prompt.instruction.strip()})
    for ex in prompt.examples:
        block = _block(
            prompt.context_label,
            ex.context,
            prompt.task_label,
            ex.task,
            task_first=prompt.task_first,
        )
        messages.append({"role": "user", "content": block})
        messages.append({"role": "assistant", "content": ex.answer.strip()})
    block = _block(
        prompt.context_label, prompt.context, prompt.task_label, prompt.task,
        task_first=prompt.task_first, closing=prompt.closing,
    )  # fmt: skip
    messages.append({"role": "user", "content": block})
    return messages


def stop_sequences(prompt: Prompt) -> list[str]:
    """Where a completion model starts inventing the next example instead of answering."""
    return ["\n\n", f"\n{prompt.context_label}:", f"\n{prompt.task_label}:"]


def prompt_text(prompt: Prompt, style: str) -> str:
    """The text a model of `style` reads for `prompt`: used to count a prompt's tokens before sending."""
    if style == "chat":
        # ~4 tokens of role markup per message in common chat templates.
        return "\n".join(f"<|{m['role']}|> {m['content']} <|end|>" for m in render_chat(prompt))
    return render_completion(prompt)
