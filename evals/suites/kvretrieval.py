"""The kvretrieval suite: one JSON object of N random UUID pairs, asked for the value of one key.

Lost in the Middle's synthetic retrieval task: nothing but exact matching is needed, so it shows
how well a model finds one line among many, with the gold pair at a chosen position. Each group
is one item of the file (75 or 140 pairs): the gold pair and the item's first N-1 others, written
as the paper writes them (one pair a line, in braces). N is the number of pairs; the object is one
document, which the isolated strategy cuts into chunks where it does not fit one sub-agent's
context. The value is scored by best-subspan match.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from fanout.agents.errors import UserError

from .filler import Position
from .group import Document, Group, Question
from .litm import DEV_KV_ITEMS, ItemRange, LitmSuite, gold_index, read_items

__all__ = ["KVItem", "KVRetrievalSuite", "format_kv_records", "load_kvretrieval"]


class KVItem(BaseModel):
    """One line of a kv-retrieval file: the records, and the key asked for with its value."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ordered_kv_records: list[tuple[str, str]]
    """Every (key, value) pair, the gold one among them."""
    key: str
    """The key asked for."""
    value: str
    """Its value: the answer."""

    @model_validator(mode="after")
    def _gold_is_a_record(self) -> KVItem:
        if (self.key, self.value) not in {tuple(r) for r in self.ordered_kv_records}:
            raise ValueError("the key and value are not one of the records")
        if len({k for k, _ in self.ordered_kv_records}) != len(self.ordered_kv_records):
            raise ValueError("the records repeat a key")
        return self


def format_kv_records(records: Sequence[tuple[str, str]]) -> str:
    """The records as Lost in the Middle's prompt shows them: a JSON object, one pair a line."""
    pairs = ",\n ".join(f'"{k}": "{v}"' for k, v in records)
    return "{" + pairs + "}"


@dataclass(frozen=True, kw_only=True)
class KVRetrievalSuite(LitmSuite[KVItem]):
    """Groups of one question over one JSON object of N pairs, the gold pair at `position`."""

    name: str = "kvretrieval"
    """Suite name in reports."""

    def check(self, n: int, groups: int) -> None:
        """N pairs must be at most what each item holds, and at least two."""
        most = min(len(item.ordered_kv_records) for _, item in self.items)
        if not 2 <= n <= most:
            raise UserError(f"N is the number of pairs: between 2 and {most}, not {n}")

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """Item number `index` of the seeded order, as an object of N pairs."""
        self.check(n, index + 1)
        order = list(range(len(self.items)))
        random.Random(f"{self.name}/{seed}").shuffle(order)
        number, item = self.items[order[index % len(order)]]
        rng = random.Random(f"{self.name}/{seed}/{n}/{index}")
        others = [r for r in item.ordered_kv_records if r[0] != item.key][: n - 1]
        at = gold_index(self.position, n, rng)
        records = [*others[:at], (item.key, item.value), *others[at:]]
        return Group(
            id=f"{self.name}-n{n}-g{index}-s{seed}",
            documents=(Document(id=f"kv{number}.json", text=format_kv_records(records)),),
            questions=(
                Question(
                    id=f"kv{number}",
                    text=f'What is the value of the key "{item.key}"?',
                    answers=(item.value,),
                    match="subspan",
                ),
            ),
            metadata={"item": str(number), "gold_position": str(at), "position": self.position},
        )


def load_kvretrieval(
    path: str | Path, *, items: ItemRange | None = None, position: Position = "middle"
) -> KVRetrievalSuite:
    """Read the items of `items` (default: the development range) from a kv-retrieval file."""
    item_range = items or DEV_KV_ITEMS
    return KVRetrievalSuite(
        items=read_items(Path(path), KVItem, item_range),
        source_file=str(path),
        item_range=item_range,
        position=position,
    )
