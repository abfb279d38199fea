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
from .mti import load_mti
from .multitask import MultitaskSuite
from .nq import DEFAULT_NQ, load_nq

__all__ = [
    "DEFAULT_NQ",
    "SUITES",
    "AggregateSuite",
    "DatasetSuite",
    "Document",
    "Group",
    "InjectionSuite",
    "KeyValueSuite",
    "MatchMode",
    "MultitaskSuite",
    "Position",
    "Question",
    "Suite",
    "load_jsonl",
    "load_mti",
    "load_nq",
    "make_suite",
]

SUITES = ("keyvalue", "aggregate", "multitask", "injection", "nq", "jsonl", "mti")
"""Every suite name `make_suite` knows; jsonl and mti need a dataset file."""
_POSITIONS = ("start", "middle", "end", "random")


def make_suite(
    name: str,
    *,
    dataset: str | Path | None = None,
    doc_tokens: int = 120,
    position: str = "random",
) -> Suite:
    """The suite called `name`.

    Args:
        name: one of `SUITES`.
        dataset: the data file (nq: default the shipped slice; jsonl and mti: required; the
            synthetic suites take none).
        doc_tokens: approximate document length for the synthetic suites.
        position: where the synthetic suites place each fact (start, middle, end, random).
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
    if name in ("jsonl", "mti") and dataset is None:
        raise UserError(f"the {name} suite needs a data file", parameter="dataset")
    if dataset is not None and name in ("keyvalue", "aggregate", "multitask", "injection"):
        raise UserError(
            f"the {name} suite is generated; it takes no data file", parameter="dataset"
        )
    if name == "keyvalue":
        return KeyValueSuite(doc_tokens=doc_tokens, position=pos)
    if name == "aggregate":
        return AggregateSuite(doc_tokens=doc_tokens, position=pos)
    if name == "multitask":
        return MultitaskSuite(doc_tokens=doc_tokens)
    if name == "injection":
        return InjectionSuite(doc_tokens=doc_tokens, position=pos)
    if name == "nq":
        return load_nq(dataset)
    assert dataset is not None
    if name == "jsonl":
        return load_jsonl(dataset)
    return load_mti(dataset)
