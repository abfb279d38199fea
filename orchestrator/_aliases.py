"""Short aliases ("[1]", "[2]", ...) that stand for document ids in every prompt showing documents.

Ids are opaque: a file name may hold any character a filesystem allows ("northwind, 2025.md",
"[x].md", a newline), so no id is ever shown to a model or parsed back out of its text. Prompts
name each document by its alias, its 1-based position among the documents that prompt shows (the
request's order for the one-prompt baseline, the order findings are listed for synthesis), and
the coordinator maps the aliases a model cites back to ids. Aliases are also cheaper: "[3]" is two or
three tokens where a file name is often ten.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fanout.agents._safe_text import visible

from .request import Request

__all__ = ["DocumentAliases", "inline_id"]

_ALIAS = re.compile(r"[1-9][0-9]*")


class DocumentAliases:
    """The two-way map between a request's document ids and the aliases its prompts show."""

    def __init__(self, ids: Sequence[str]) -> None:
        """Alias "1" for ``ids[0]``, "2" for ``ids[1]``, ... (`ids` must be distinct)."""
        self._ids = tuple(ids)
        self._aliases = {doc_id: str(i) for i, doc_id in enumerate(self._ids, 1)}

    @classmethod
    def of(cls, request: Request) -> DocumentAliases:
        """Aliases of `request`'s documents, in request order."""
        return cls([d.id for d in request.documents])

    def alias(self, document_id: str) -> str:
        """The alias of `document_id` ("3"), as a prompt shows it inside brackets."""
        return self._aliases[document_id]

    def label(self, document_id: str) -> str:
        """The alias in brackets ("[3]"): how prompts name the document and how models cite it."""
        return f"[{self._aliases[document_id]}]"

    def resolve(self, alias: str) -> str | None:
        """The id an alias stands for; None when `alias` is no alias of this request."""
        alias = alias.strip()
        if not _ALIAS.fullmatch(alias):
            return None
        index = int(alias)
        return self._ids[index - 1] if index <= len(self._ids) else None

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids, in alias order: alias "1" is ``ids[0]``."""
        return self._ids

    def __contains__(self, document_id: object) -> bool:
        return document_id in self._aliases

    def __len__(self) -> int:
        return len(self._ids)


def inline_id(document_id: str) -> str:
    """A document id fit for one line of an answer or a note: line breaks and controls escaped.

    The exact id stays in `RunResult.citations` and the JSON; this is only how text shows it.
    """
    return visible(document_id)
