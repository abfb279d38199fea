"""Suites made from a file: a pool of instances, sliced into groups of N, and the reading helpers.

Group g of size N takes N consecutive instances from one seeded shuffle of the pool, starting at
g x N, so groups do not overlap until the pool runs out and the N=1 instances are a subset of the
N=10 ones: the curve compares strategies, not luckier draws.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout.agents.errors import UserError

from .group import Group

__all__ = ["DatasetSuite", "read_json", "read_jsonl"]


@dataclass(frozen=True, kw_only=True)
class DatasetSuite:
    """Groups of N instances drawn from a loaded dataset (NQ, your JSONL, MTI Bench)."""

    name: str
    """Suite name in reports."""
    source: str
    """The dataset file."""
    instances: Sequence[Group]
    """One group per dataset instance (a question with its documents, or a multi-part task)."""
    _orders: dict[int, list[int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def check(self, n: int, groups: int) -> None:
        """Refuse an N the dataset cannot fill."""
        if n > len(self.instances):
            raise UserError(
                f"N={n} is larger than the dataset "
                f"({len(self.instances)} instances in {self.source})"
            )

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """N consecutive instances of the seeded shuffle, wrapping round when the pool runs out."""
        self.check(n, index + 1)
        order = self._orders.get(seed)
        if order is None:
            order = list(range(len(self.instances)))
            random.Random(f"{self.name}/{seed}").shuffle(order)
            self._orders[seed] = order
        start = index * n
        picks = [order[(start + j) % len(order)] for j in range(n)]
        group = Group.merge(
            f"{self.name}-n{n}-g{index}-s{seed}", [self.instances[p] for p in picks]
        )
        return group.model_copy(update={"metadata": {"instances": ",".join(map(str, picks))}})


def _open_text(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise UserError(f"dataset not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as gz:
                yield from gz
        else:
            with path.open(encoding="utf-8") as text:
                yield from text
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a bad line is a `UserError` naming it."""
    for lineno, line in enumerate(_open_text(path), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(value).__name__}")
        yield lineno, value


def read_json(path: Path) -> Any:
    """The whole file as JSON; a syntax error is a `UserError` naming its line."""
    text = "".join(_open_text(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
