"""How much of a document fits one sub-agent's context, next to its prompt and its answer."""

from __future__ import annotations

from fanout.agents.backend import Backend
from fanout.agents.errors import UserError
from fanout.agents.prompts import prompt_text

from .prompts import task_prompt
from .request import Request
from .task import SubTask

__all__ = ["chunk_budget", "task_budget"]

# Tokens kept free beyond the measured prompt overhead and completion budget (template drift).
_CONTEXT_MARGIN = 32


def chunk_budget(backend: Backend, request: Request, *, max_tokens: int) -> int | None:
    """Largest chunk that fits the context next to the prompt and the completion budget.

    None when the backend's context is unknown (then documents are not cut).

    Raises:
        UserError: the context cannot hold the prompt and the answer with any document at all.
    """
    window = backend.context_window
    if window is None:
        return None
    return task_budget(backend, request.tasks, max_tokens=max_tokens, window=window)


def task_budget(backend: Backend, tasks: list[str], *, max_tokens: int, window: int) -> int:
    """Largest chunk that fits a `window`-token context next to any of `tasks`' prompts.

    Raises:
        UserError: the context cannot hold the prompt and the answer with any document at all.
    """
    overhead = max(
        backend.count_tokens(
            prompt_text(
                task_prompt(
                    SubTask(id="probe", document_id="probe", task=t, context=""),
                    style=backend.prompt_style,
                ),
                backend.prompt_style,
            )
        )
        for t in tasks
    )
    budget = window - overhead - max_tokens - _CONTEXT_MARGIN
    if budget < 16:
        raise UserError(
            f"the model's context ({window} tokens) leaves no room for a document next to the "
            f"prompt ({overhead} tokens) and the answer ({max_tokens} tokens)"
        )
    return budget
