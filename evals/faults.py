"""Seeded fault injection around any backend: errors, timeouts, garbage output, wrong answers.

Whether a call is faulted is decided from a hash of the seed and the call's prompt (and how often
that prompt was sent before), not from a shared random stream: concurrent calls finish in any
order, yet the same seed faults the same calls every time.

Kinds:
    error:   the call raises `BackendUnavailable` (as an HTTP 503 would): transient, so retried
             when the call policy allows retries.
    timeout: the call raises `BackendTimeout` (as if its deadline had passed).

The wrapped model runs for every call, faulted or not, and a fault only replaces what the call
returns: a local model's state (llama.cpp's prompt cache) then evolves exactly as in the clean run,
so a changed answer elsewhere is the fault's doing, not a different cache.
    garbage: the call returns unstructured junk instead of the model's text.
    wrong:   the call keeps its shape (numbering) but every answer in it is replaced by
             `WRONG_ANSWER`: well-formed and wrong.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, fields
from typing import Literal

from fanout.agents._prompts import render_completion
from fanout.agents.backend import Backend, Completion, CompletionRequest, PromptStyle
from fanout.agents.errors import BackendTimeout, BackendUnavailable, UserError

__all__ = [
    "FAULT_KINDS",
    "WRONG_ANSWER",
    "FaultKind",
    "FaultSpec",
    "FaultyBackend",
    "InjectedFault",
    "wrong_text",
]

FaultKind = Literal["error", "timeout", "garbage", "wrong"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error", "timeout", "garbage", "wrong")
"""Every kind, in the order a call's draw is matched against the rates."""
WRONG_ANSWER = "xyzzy"
"""What a `wrong` fault puts in place of each answer: no gold answer is ever this."""

_MARKER = re.compile(r"((?:^|(?<=\s))#?\d{1,3}\s*[.):][ \t]+)", re.M)
_JUNK = "abcdefghijklmnopqrstuvwxyz{}<>#@%&*~"


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """Probability of each fault kind per call; they add up to at most 1."""

    error: float = 0.0
    """Calls that raise a transient backend error."""
    timeout: float = 0.0
    """Calls that time out."""
    garbage: float = 0.0
    """Calls that return junk."""
    wrong: float = 0.0
    """Calls whose answers are replaced by a wrong one."""

    def __post_init__(self) -> None:
        for f in fields(self):
            rate = getattr(self, f.name)
            if not 0.0 <= rate <= 1.0:
                raise UserError(f"fault rate {f.name}={rate:g} must be between 0 and 1")
        if self.total > 1.0 + 1e-9:
            raise UserError(f"fault rates add up to {self.total:g}; they must add up to at most 1")

    @property
    def total(self) -> float:
        """Probability that a call is faulted at all."""
        return self.error + self.timeout + self.garbage + self.wrong

    @property
    def active(self) -> bool:
        """Whether any fault can happen."""
        return self.total > 0

    @classmethod
    def parse(cls, spec: str) -> FaultSpec:
        """Read ``error=0.1,timeout=0.05,garbage=0.05,wrong=0.05``: any subset; "none" for none."""
        if spec.strip().lower() in ("", "none", "0"):
            return cls()
        rates: dict[str, float] = {}
        for item in spec.split(","):
            name, sep, value = (part.strip() for part in item.partition("="))
            if not sep or not name or not value:
                raise UserError(
                    f"bad item '{item.strip()}': write kind=rate, e.g. error=0.1",
                    parameter="faults",
                )
            if name not in FAULT_KINDS:
                raise UserError(
                    f"unknown fault kind '{name}' (use: {', '.join(FAULT_KINDS)})",
                    parameter="faults",
                )
            if name in rates:
                raise UserError(f"fault kind '{name}' is given twice", parameter="faults")
            try:
                rates[name] = float(value)
            except ValueError:
                raise UserError(
                    f"fault rate '{value}' for {name} is not a number", parameter="faults"
                ) from None
        return cls(**rates)

    def __str__(self) -> str:
        """The canonical spec string (kinds with a zero rate left out)."""
        parts = [f"{k}={getattr(self, k):g}" for k in FAULT_KINDS if getattr(self, k)]
        return ",".join(parts) or "none"


@dataclass(frozen=True, kw_only=True)
class InjectedFault:
    """One fault that was injected."""

    kind: FaultKind
    """What was done to the call."""
    call: int
    """Index of the call among every call this backend received."""
    tags: dict[str, str]
    """The call's tags (run, sub-agent, document)."""


class FaultyBackend:
    """Wraps any `Backend`, injecting seeded faults at the rates of a `FaultSpec`.

    Args:
        inner: the backend every call goes to; a fault replaces its answer afterwards.
        spec: fault rates.
        seed: with the same seed, the same prompts are faulted the same way.
    """

    def __init__(self, inner: Backend, spec: FaultSpec, *, seed: int = 0) -> None:
        self.inner = inner
        self.spec = spec
        self.seed = seed
        self.name = inner.name
        self.prompt_style: PromptStyle = inner.prompt_style
        self.context_window = inner.context_window
        self.injected: list[InjectedFault] = []
        """Every fault injected so far, in call order."""
        self._calls = 0
        self._seen: Counter[str] = Counter()

    def count_tokens(self, text: str) -> int:
        """The inner backend's count."""
        return self.inner.count_tokens(text)

    def draw(self, request: CompletionRequest) -> FaultKind | None:
        """The fault (if any) for this call; repeats of a prompt (retries) draw afresh."""
        return self._draw(request)[0]

    def _draw(self, request: CompletionRequest) -> tuple[FaultKind | None, bytes]:
        text = render_completion(request.prompt)
        occurrence = self._seen[text]
        self._seen[text] += 1
        key = f"{self.seed}\x00{occurrence}\x00{request.max_tokens}\x00{text}".encode()
        digest = hashlib.sha256(key).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self.spec, kind)
            if u < edge:
                return kind, digest
        return None, digest

    async def complete(self, request: CompletionRequest) -> Completion:
        """The inner call, or a fault."""
        call = self._calls
        self._calls += 1
        kind, digest = self._draw(request)
        if kind is not None:
            self.injected.append(InjectedFault(kind=kind, call=call, tags=dict(request.tags)))
        completion = await self.inner.complete(request)
        if kind == "error":
            raise BackendUnavailable("injected fault: HTTP 503", status_code=503)
        if kind == "timeout":
            raise BackendTimeout("injected fault: timeout")
        if kind == "garbage":
            return completion.model_copy(update={"text": _garbage(digest), "data": None})
        if kind == "wrong":
            return completion.model_copy(update={"text": wrong_text(completion.text), "data": None})
        return completion


def _garbage(digest: bytes) -> str:
    """Junk words, seeded by the call's digest so the same call always gets the same junk."""
    rng = random.Random(digest)
    words = ("".join(rng.choice(_JUNK) for _ in range(rng.randint(2, 7))) for _ in range(6))
    return " ".join(words)


def wrong_text(text: str) -> str:
    """`text` with every answer replaced by `WRONG_ANSWER`; a numbered list keeps its numbers."""
    parts = _MARKER.split(text.strip())
    if len(parts) < 3 or parts[0].strip():  # not a list that starts with a number marker
        return WRONG_ANSWER
    out = []
    for marker, answer in zip(parts[1::2], parts[2::2], strict=True):
        tail = "\n" if "\n" in answer else " "
        out.append(f"{marker}{WRONG_ANSWER}{tail}")
    return "".join(out).strip()
