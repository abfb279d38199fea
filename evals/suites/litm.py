"""What Lost in the Middle's suites share: the item range kept for acceptance, and the gold position.

Liu et al., "Lost in the Middle: How Language Models Use Long Contexts" (TACL 2024; data:
github.com/nelson-liu/lost-in-the-middle, MIT, passages from Wikipedia under CC BY-SA) measure how
accuracy moves with where the one relevant piece sits among many. Its files are split here into a
development range, where prompts may be tuned, and the rest, kept for acceptance: a suite reads only
the items of its range, so a sweep on the default range never sees an acceptance item.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from fanout.agents.errors import UserError, validation_message

from .dataset import read_jsonl
from .filler import Position

__all__ = ["DEV_KV_ITEMS", "DEV_NQ_ITEMS", "ItemRange", "LitmSuite", "gold_index", "read_items"]

ItemT = TypeVar("ItemT", bound=BaseModel)


@dataclass(frozen=True)
class ItemRange:
    """Items ``start`` (inclusive) to ``end`` (exclusive) of a dataset file, counted from 0."""

    start: int
    """First item read."""
    end: int
    """One past the last item read."""

    @classmethod
    def parse(cls, text: str) -> ItemRange:
        """``"0:1000"`` -> ItemRange(0, 1000); anything else is a `UserError`."""
        head, sep, tail = text.partition(":")
        if not sep or not head.strip().isdigit() or not tail.strip().isdigit():
            raise UserError(f"takes START:END, e.g. 0:1000, not '{text}'", parameter="items")
        item_range = cls(int(head), int(tail))
        if item_range.end <= item_range.start:
            raise UserError(f"END must be above START, not '{text}'", parameter="items")
        return item_range

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.start <= index < self.end


DEV_NQ_ITEMS = ItemRange(0, 1000)
"""NQ-open items tuned on; items from 1,000 on are kept for acceptance."""
DEV_KV_ITEMS = ItemRange(0, 300)
"""KV-retrieval items tuned on; items from 300 on are kept for acceptance."""


def gold_index(position: Position, n: int, rng: random.Random) -> int:
    """Where the relevant piece goes among `n`: first, middle, last, or a seeded random place.

    The middle is Lost in the Middle's: index 4 of 10, 9 of 20.
    """
    if position == "start":
        return 0
    if position == "middle":
        return (n - 1) // 2
    if position == "end":
        return n - 1
    return rng.randrange(n)


@dataclass(frozen=True, kw_only=True)
class LitmSuite(Generic[ItemT]):
    """The items of one range of a Lost in the Middle file, and where the gold piece goes."""

    items: Sequence[tuple[int, ItemT]]
    """(item number in the file, item) for each item of the range."""
    source_file: str
    """The dataset file."""
    item_range: ItemRange
    """Which items of the file were read."""
    position: Position = "middle"
    """Where the gold piece sits."""

    @property
    def source(self) -> str:
        """The file, the items read and the gold position: a resume must agree on all three."""
        return f"{self.source_file} items {self.item_range}, gold {self.position}"


def read_items(path: Path, model: type[ItemT], item_range: ItemRange) -> list[tuple[int, ItemT]]:
    """The items of `item_range` in a JSON-lines file, each validated as `model`.

    Raises:
        UserError: a line that is not a valid item (naming ``FILE:LINE``), or no item in the range.
    """
    read: list[tuple[int, ItemT]] = []
    for lineno, raw in read_jsonl(path):
        number = lineno - 1
        if number >= item_range.end:
            break
        if number not in item_range:
            continue
        try:
            read.append((number, model.model_validate(raw)))
        except ValidationError as exc:
            raise UserError(f"{path}:{lineno}: {validation_message(exc)}") from None
    if not read:
        raise UserError(f"{path}: no items in the range {item_range}")
    return read
