"""The one workload every section measures: N short supplier updates and one question about them.

Each document gets one sub-agent, so N documents are N isolated calls sharing the sub-agent's
instruction and few-shot examples (as a real fan-out's prompts do) and differing in the document.
The answers are a few tokens long. `copy_prompts` asks for each update back, word for word, for
answers as long as the token budget allows (how batching fares with long answers).
"""

from __future__ import annotations

from fanout.agents.backend import Example, Prompt
from fanout.agents.subagent import task_prompt
from fanout.orchestrator.request import Document, Request
from fanout.orchestrator.split import split_request

__all__ = ["QUESTION", "bench_prompts", "bench_request", "copy_prompts"]

QUESTION = "By how much did the supplier raise its prices?"

_SUPPLIERS = (
    ("Harbor Plastics", "granules", "Tom Becker", "Monday"),
    ("Lumen Glass", "float glass", "Ana Ribeiro", "Tuesday"),
    ("Northwind Metals", "steel coil", "Priya Shah", "Wednesday"),
    ("Cedar Timber", "oak planks", "Jonas Berg", "Thursday"),
    ("Delta Chemicals", "solvent", "Mei Lin", "Friday"),
    ("Orbit Electronics", "circuit boards", "Samir Haddad", "Monday"),
    ("Pine Paper", "cardboard", "Claire Dubois", "Tuesday"),
    ("Summit Textiles", "cotton", "Kofi Mensah", "Thursday"),
)
_MONTHS = ("January", "March", "May", "July", "September", "November")


def bench_request(n: int) -> Request:
    """`n` supplier updates (`supplier-000.md`, ...) and `QUESTION`."""
    documents = []
    for i in range(n):
        name, product, manager, day = _SUPPLIERS[i % len(_SUPPLIERS)]
        text = (
            f"{name} (branch {i}) supplier update. In {_MONTHS[i % len(_MONTHS)]} it raised its "
            f"prices for {product} by {3 + i % 9}% because energy costs went up. Deliveries to the "
            f"central warehouse happen every {day}. The account manager is {manager}."
        )
        documents.append(Document(id=f"supplier-{i:03d}.md", text=text))
    return Request(documents=tuple(documents), question=QUESTION)


def bench_prompts(n: int) -> list[Prompt]:
    """The completion-style prompts the sub-agents of `bench_request(n)` send, in order."""
    return [task_prompt(task) for task in split_request(bench_request(n))]


_COPY_EXAMPLE = (
    "Granite Tools supplier update. Granite Tools raised its prices for drill bits by 4% in "
    "October. Deliveries happen every Wednesday and the account manager is Lea Novak."
)


def copy_prompts(n: int) -> list[Prompt]:
    """The documents of `bench_request(n)`, each to be repeated word for word: long answers."""
    return [
        Prompt(
            instruction="Repeat the document word for word.",
            context=f"{d.text} {d.text}",
            task="Repeat the document.",
            examples=(
                Example(context=_COPY_EXAMPLE, task="Repeat the document.", answer=_COPY_EXAMPLE),
            ),
        )
        for d in bench_request(n).documents
    ]
