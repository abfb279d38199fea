"""Building a backend from command-line style options, shared by ``fanout run``, ``eval`` and ``bench``."""

from __future__ import annotations

import os
from typing import Literal, get_args

from .backend import Backend
from .errors import UserError

__all__ = ["BACKENDS", "BackendKind", "make_backend"]

BackendKind = Literal["llama", "openai"]
BACKENDS: tuple[BackendKind, ...] = get_args(BackendKind)


def make_backend(
    kind: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    endpoint: Literal["chat", "completions"] = "chat",
    n_gpu_layers: int = 0,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    context_window: int | None = None,
    n_parallel: int | Literal["auto"] = "auto",
    timeout_s: float | None = None,
) -> Backend:
    """A backend by name: "llama" (in-process GGUF; `model` a path or a model's name) or "openai".

    `n_ctx` None gives a local model the context it was trained with.

    `timeout_s` bounds every network wait of a remote backend (its start-up check included).

    Raises:
        UserError: unknown kind, missing model file, unloadable GGUF, missing model name or key.
    """
    if kind == "llama":
        from .llama_cpp import LlamaCppBackend

        # llama-cpp-python's own default is half the cores: one thread on a 2-core machine.
        return LlamaCppBackend(
            model,
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads or os.cpu_count(),
            n_parallel=n_parallel,
        )
    if kind == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(
            model,
            base_url=base_url,
            endpoint=endpoint,
            context_window=context_window,
            timeout_s=600.0 if timeout_s is None else timeout_s,
        )
    raise UserError(
        f"unknown backend '{kind}' (choose from: {', '.join(BACKENDS)})", parameter="kind"
    )
