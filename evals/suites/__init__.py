"""Evaluation suites: synthetic generators and dataset loaders, all producing `Group`s.

`make_suite` is the one place a suite name becomes a suite, for the CLI and the library alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from fanout.agents.errors import UserError

from .aggregate import AggregateSuite
from .dataset import DatasetSuite
from .filler import Position
from .group import Document, Group, MatchMode, Question, Suite
from .injection import InjectionSuite
from .jsonl import load_jsonl
from .keyvalue import KeyValueSuite
from .kvretrieval import KVRetrievalSuite, load_kvretrieval
from .litm import DEV_KV_ITEMS, DEV_NQ_ITEMS, ItemRange
from .mdqa import MultiDocQASuite, load_mdqa
from .mti import load_mti
from .multitask import MultitaskSuite
from .nq import DEFAULT_NQ, load_nq

__all__ = [
    "DEFAULT_NQ",
    "DEV_KV_ITEMS",
    "DEV_NQ_ITEMS",
    "SUITES",
    "AggregateSuite",
    "DatasetSuite",
    "Document",
    "Group",
    "InjectionSuite",
    "ItemRange",
    "KVRetrievalSuite",
    "KeyValueSuite",
    "MatchMode",
    "MultiDocQASuite",
    "MultitaskSuite",
    "Position",
    "Question",
    "Suite",
    "load_jsonl",
    "load_kvretrieval",
    "load_mdqa",
    "load_mti",
    "load_nq",
    "make_suite",
]

SUITES = (
    "keyvalue", "aggregate", "multitask", "injection", "nq", "mdqa", "kvretrieval", "jsonl", "mti"
)  # fmt: skip
"""Every suite name `make_suite` knows; kvretrieval, jsonl and mti need a dataset file."""
_RANGED = ("nq", "mdqa", "kvretrieval")
"""Suites read from Lost in the Middle's files: they read a range of items, by default the
development range (the rest is kept for acceptance)."""
_POSITIONS = ("start", "middle", "end", "random")


def make_suite(
    name: str,
    *,
    dataset: str | Path | None = None,
    doc_tokens: int = 120,
    position: str = "random",
    items: str | ItemRange | None = None,
) -> Suite:
    """The suite called `name`.

    Args:
        name: one of `SUITES`.
        dataset: the data file (nq: default the shipped slice; jsonl and mti: required; the
            synthetic suites take none).
        doc_tokens: approximate document length for the synthetic suites.
        position: where a suite places the fact, the gold passage or the gold pair (start,
            middle, end, random).
        items: which items of a Lost in the Middle file to read, "START:END" (nq, mdqa,
            kvretrieval); None reads the development range (`DEV_NQ_ITEMS`, `DEV_KV_ITEMS`).
    """
    if name not in SUITES:
        raise UserError(
            f"unknown suite '{name}' (use one of: {', '.join(SUITES)})", parameter="suite"
        )
    if doc_tokens < 1:
        raise UserError(f"must be at least 1, not {doc_tokens}", parameter="doc_tokens")
    if position not in _POSITIONS:
        raise UserError(
            f"unknown position '{position}' (use one of: {', '.join(_POSITIONS)})",
            parameter="position",
        )
    pos = cast(Position, position)
    if name in ("kvretrieval", "jsonl", "mti") and dataset is None:
        raise UserError(f"the {name} suite needs a data file", parameter="dataset")
    if dataset is not None and name in ("keyvalue", "aggregate", "multitask", "injection"):
        raise UserError(
            f"the {name} suite is generated; it takes no data file", parameter="dataset"
        )
    if items is not None and name not in _RANGED:
        raise UserError(
            f"the {name} suite reads no item range (only {', '.join(_RANGED)} do)",
            parameter="items",
        )
    item_range = ItemRange.parse(items) if isinstance(items, str) else items
    if name == "keyvalue":
        return KeyValueSuite(doc_tokens=doc_tokens, position=pos)
    if name == "aggregate":
        return AggregateSuite(doc_tokens=doc_tokens, position=pos)
    if name == "multitask":
        return MultitaskSuite(doc_tokens=doc_tokens)
    if name == "injection":
        return InjectionSuite(doc_tokens=doc_tokens, position=pos)
    return _load(name, dataset, item_range, pos)


def _load(name: str, dataset: str | Path | None, items: ItemRange | None, pos: Position) -> Suite:
    """The suites read from a file."""
    if name == "nq":
        return load_nq(dataset, items=items)
    if name == "mdqa":
        return load_mdqa(dataset or DEFAULT_NQ, items=items, position=pos)
    assert dataset is not None
    if name == "kvretrieval":
        return load_kvretrieval(dataset, items=items, position=pos)
    if name == "jsonl":
        return load_jsonl(dataset)
    return load_mti(dataset)
