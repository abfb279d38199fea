"""Suites made from a file: a pool of instances, sliced into groups of N, and the reading helpers.

Group g of size N takes N consecutive instances from one seeded shuffle of the pool, starting at
g x N, so groups never overlap and the N=1 instances are a subset of the N=10 ones: the curve
compares strategies, not luckier draws. More groups than the pool fills are refused: repeated
instances would count one answer several times and narrow the confidence intervals falsely.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
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

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of the instances as loaded (questions, gold answers, documents).

        Results record it, so a resume or a report of an edited dataset is refused rather than
        scored against gold answers the file no longer holds.
        """
        digest = hashlib.sha256()
        for instance in self.instances:
            digest.update(instance.model_dump_json().encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()

    def check(self, n: int, groups: int) -> None:
        """Refuse an N, or a number of groups, the dataset cannot fill without repeating."""
        size = len(self.instances)
        if n > size:
            raise UserError(f"N={n} is larger than the dataset ({size} instances in {self.source})")
        if n * groups > size:
            raise UserError(
                f"{groups} groups of N={n} need {n * groups} distinct instances; {self.source} has "
                f"{size} (at most {size // n} group(s) of N={n}): instances are never repeated",
                parameter="groups",
            )

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """N consecutive instances of the seeded shuffle, never repeating one."""
        self.check(n, index + 1)
        order = self._orders.get(seed)
        if order is None:
            order = list(range(len(self.instances)))
            random.Random(f"{self.name}/{seed}").shuffle(order)
            self._orders[seed] = order
        start = index * n
        picks = order[start : start + n]
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
