"""The aggregate suite: one question over all N documents (the largest, or how many match).

No single document holds the answer, so it needs synthesis: the isolated strategy extracts each
company's figures with its own sub-agent and combines the findings; one prompt must compare them in
context. Questions alternate between an argmax (which company is largest) and a count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fanout.agents.errors import UserError

from .filler import Position, embed_fact
from .group import Document, Group, Question

__all__ = ["COMPANIES", "AggregateSuite"]

COMPANIES: tuple[str, ...] = (
    "Acorn Tools", "Bluebird Freight", "Cinder Labs", "Dovetail Joinery", "Ember Foods",
    "Fernway Textiles", "Granite Works", "Harbor Optics", "Iris Pharma", "Juniper Mills",
    "Kestrel Air", "Lantern Media", "Marigold Farms", "Nimbus Cloudware", "Oakridge Paper",
    "Pebble Robotics", "Quarry Stoneware", "Riverbend Brewing", "Saltmarsh Salt",
    "Thistle Printing", "Umber Ceramics", "Vantage Lenses", "Willow Furniture", "Yarrow Herbs",
)  # fmt: skip
_CITIES = ("Lisbon", "Oslo", "Tunis", "Quito")
_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "twenty-one", "twenty-two", "twenty-three", "twenty-four",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class AggregateSuite:
    """N company profiles; one question that needs all of them."""

    doc_tokens: int = 120
    """Approximate length of each document."""
    position: Position = "random"
    """Where the company's facts sit in its document."""
    name: str = "aggregate"
    """Suite name in reports."""

    @property
    def source(self) -> str:
        """The generator's settings."""
        return f"synthetic (doc_tokens={self.doc_tokens}, position={self.position})"

    def check(self, n: int, groups: int) -> None:
        """N is bounded by the number of distinct companies."""
        if n > len(COMPANIES):
            raise UserError(
                f"aggregate makes at most {len(COMPANIES)} documents per group, not {n}"
            )

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """N profiles; even groups ask for the largest company, odd groups count a city's."""
        self.check(n, 1)
        rng = random.Random(f"{self.name}/{seed}/{n}/{index}")
        names = rng.sample(COMPANIES, n)
        staff = rng.sample(range(20, 1000), n)
        cities = [rng.choice(_CITIES) for _ in names]
        documents = tuple(
            Document(
                id=f"doc-{i}",
                text=embed_fact(
                    rng,
                    f"{name} is based in {city} and employs {people} people.",
                    self.doc_tokens,
                    self.position,
                ),
            )
            for i, (name, city, people) in enumerate(zip(names, cities, staff, strict=True), 1)
        )
        if index % 2 == 0:
            question = Question(
                id="q1",
                text="Which company employs the most people?",
                answers=(names[staff.index(max(staff))],),
                map_task="Which company is this, and how many people does it employ?",
            )
        else:
            city = rng.choice(cities)
            count = cities.count(city)
            question = Question(
                id="q1",
                text=f"How many of the companies are based in {city}?",
                answers=(str(count), _NUMBER_WORDS[count]),
                map_task="Which company is this, and in which city is it based?",
            )
        return Group(
            id=f"{self.name}-n{n}-g{index}-s{seed}",
            documents=documents,
            questions=(question,),
            metadata={"kind": "argmax" if index % 2 == 0 else "count"},
        )
