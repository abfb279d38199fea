"""What every bench section's report has: the goal in words and whether the measurement met it."""

from __future__ import annotations

import json
import subprocess
import sys
from abc import abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Section", "run_probe"]


def run_probe(code: str, what: str) -> dict[str, Any]:
    """Run `code` in a fresh interpreter and return the JSON object its last stdout line holds.

    Memory and scale figures need a process of their own: peak RSS is per process, and a model or
    100,000 results left over from an earlier measurement would be counted again.
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr.strip()[-500:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


class Section(BaseModel):
    """One section's figures, next to the goal they are held to."""

    model_config = ConfigDict(frozen=True)

    goal: str
    """The target, in words."""
    met: bool | None
    """Whether the measurement met it (None: no verdict possible)."""

    @abstractmethod
    def summary(self) -> str:
        """The measurement in one line, for the table."""
