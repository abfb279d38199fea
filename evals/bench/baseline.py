"""The baselines fanout is measured against: what a user would write without it.

`plain_llama_loop` is a loop of llama-cpp-python ``create_completion`` calls (which already reuses
the previous call's prompt prefix), run on the compute thread the backends use: a user's loop
runs in a process where it is the only thread driving llama.cpp, and a second such thread would
slow both (`fanout.agents._compute`); `plain_gather` is an asyncio gather under a semaphore over a
backend's calls. Every section that compares with "the plain loop" uses these two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fanout.agents._compute import compute_thread
from fanout.agents._prompts import render_completion, stop_sequences
from fanout.agents.backend import Backend, CompletionRequest, Prompt

__all__ = ["plain_gather", "plain_llama_loop"]


def plain_llama_loop(
    llama: Any,
    prompts: Sequence[Prompt],
    *,
    max_tokens: int,
    stop: bool = True,
    reuse_prefix: bool = True,
) -> list[str]:
    """One ``create_completion`` per prompt, greedy, on a loaded ``llama_cpp.Llama``.

    Args:
        llama: the model; the caller holds whatever lock guards it.
        prompts: rendered as completion prompts, as the sub-agents render them.
        max_tokens: the completion budget of each call.
        stop: end each answer at the prompt's stop sequences; False runs every answer to the budget.
        reuse_prefix: keep the KV cache between calls (llama-cpp-python's default); False
            evaluates every prompt from scratch.
    """

    def loop() -> list[str]:
        texts = []
        for prompt in prompts:
            if not reuse_prefix:
                llama.reset()
            out = llama.create_completion(
                prompt=render_completion(prompt),
                max_tokens=max_tokens,
                temperature=0.0,
                stop=stop_sequences(prompt) if stop else [],
            )
            texts.append(out["choices"][0]["text"].strip())
        return texts

    return compute_thread().call(loop)


async def plain_gather(
    backend: Backend, requests: Sequence[CompletionRequest], *, max_concurrency: int
) -> list[str]:
    """Every request through `backend`, at most `max_concurrency` at a time."""
    limiter = asyncio.Semaphore(max_concurrency)

    async def call(request: CompletionRequest) -> str:
        async with limiter:
            return (await backend.complete(request)).text

    return list(await asyncio.gather(*(call(r) for r in requests)))
