"""Citation integrity: an answer may cite a document only for what that document itself found.

A synthesizer (a small model especially) invents aliases, cites a document for another document's
fact, or copies a hostile document's forged line ("- Zed Zulu [1]"). Models never see document
ids, only aliases (`fanout.orchestrator.aliases`), so the coordinator reads every bracket of the
answer as a list of aliases, keeps a citation only when the alias is a document of the request
with a selected finding and the claim it is attached to agrees with that finding, removes the rest
from the text and records why; a line left with no valid citation after that is dropped as
unsupported. Model text is also stripped of lines posing as the coordinator's own report
(``Missing: ...``), which the coordinator prints from its fields, apart from model text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .aliases import DocumentAliases, inline_id
from .grounding import normalize_text
from .result import InvalidCitation

__all__ = [
    "CheckedAnswer",
    "CitedLine",
    "check_citations",
    "clean_model_text",
    "relabel",
    "sanitize_model_text",
]

_BRACKET = re.compile(r"\[([^\[\]\n]*)\]")
_ALIAS_TOKEN = re.compile(r"[^,;\s]+")
_DIGITS = re.compile(r"[0-9]+")
_RESERVED = re.compile(
    r"^\s*(?:fanout\s*:\s*)?(?:missing|uncited|no document answers|removed citations|"
    r"synthesis failed)\b.*$|^\s*-{3,}\s*$",
    re.I | re.M,
)
_WORD = re.compile(r"\w+")
_LEADER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def sanitize_model_text(text: str) -> str:
    """Model text without lines that pose as the coordinator's report."""
    return _RESERVED.sub("", text).strip("\n")


def clean_model_text(text: str) -> str:
    """A sub-agent's answer as data: no report lines, and brackets turned into parentheses.

    Brackets are how answers cite documents, so a document cannot make its sub-agent's answer
    carry a citation ("- Zed Zulu [1]" becomes "- Zed Zulu (1)").
    """
    return sanitize_model_text(text).replace("[", "(").replace("]", ")").strip()


def _agrees(claim: str, finding: str) -> bool:
    """Whether a claim states (a large part of) a document's finding, or the finding the claim."""
    c, f = normalize_text(claim).strip(" .,;:"), normalize_text(finding).strip(" .,;:")
    if not c or not f:
        return False
    if f in c or c in f:
        return True
    want = set(_WORD.findall(f))
    # A short finding (a name, a code) must be stated whole: "Priya Shah" is not "Priya Lund".
    need = 1.0 if len(want) <= 3 else 0.5
    return bool(want) and len(want & set(_WORD.findall(c))) / len(want) >= need


Part = str | tuple[str, ...]
"""A piece of an answer line: its own text, or the ids one bracket cites."""


@dataclass(frozen=True)
class CitedLine:
    """One line of an answer after its brackets were checked: text pieces and cited ids."""

    parts: tuple[Part, ...]
    """The line's text, with each bracket replaced by the (valid) ids it cites."""

    @classmethod
    def of(cls, claim: str, document_id: str) -> CitedLine:
        """A line stating `claim`, citing one document at its end."""
        return cls((f"- {claim} ", (document_id,)))

    @property
    def ids(self) -> list[str]:
        """The ids the line cites, first-cited first."""
        return list(dict.fromkeys(i for p in self.parts if isinstance(p, tuple) for i in p))

    @property
    def claim(self) -> str:
        """What the line claims: its text without the list marker and the citations."""
        return _LEADER.sub("", "".join(p for p in self.parts if isinstance(p, str))).strip()

    def render(self, name: Callable[[str], str]) -> str:
        """The line as text, each citation written as ``[name(id), ...]``."""
        out = "".join(
            p if isinstance(p, str) else f"[{', '.join(name(i) for i in p)}]"
            for p in self.parts
            if p
        )
        return out.rstrip()


@dataclass(frozen=True, kw_only=True)
class CheckedAnswer:
    """An answer after its citations were checked."""

    lines: list[CitedLine]
    """The lines kept, with only valid citations."""
    citations: list[str]
    """Valid cited ids, first-cited first."""
    invalid: list[InvalidCitation]
    """What was removed, and why."""

    @property
    def text(self) -> str:
        """The answer as users read it: each citation names its documents by id, on one line."""
        return "\n".join(line.render(inline_id) for line in self.lines).strip()


def _bracket_ids(
    inside: str,
    claim: str,
    aliases: DocumentAliases,
    findings: Mapping[str, Sequence[str]] | None,
    invalid: list[InvalidCitation],
) -> tuple[str, ...]:
    """The valid ids one bracket cites; each invalid alias is recorded with its reason."""
    tokens = _ALIAS_TOKEN.findall(inside)
    resolved = [(t, aliases.resolve(t)) for t in tokens]
    if tokens and all(doc_id is None for _, doc_id in resolved):
        # No alias at all ("[northwind.md]", a name copied from a document): one citation, as written.
        resolved = [(inside.strip(), None)]
    kept: list[str] = []
    for written, doc_id in resolved:
        if doc_id is None:
            reason = "not a document of the request"
        elif findings is not None and doc_id not in findings:
            reason = "no finding from that document"
        elif findings is not None and not any(_agrees(claim, f) for f in findings[doc_id]):
            reason = "disagrees with that document's own finding"
        else:
            kept.append(doc_id)
            continue
        invalid.append(InvalidCitation(document_id=doc_id or written, claim=claim, reason=reason))
    return tuple(dict.fromkeys(kept))


def relabel(text: str, source: DocumentAliases, target: DocumentAliases) -> str:
    """`text` citing by `target`'s aliases where it cited by `source`'s.

    Used to join answers that numbered their documents apart. An alias `source` does not know is
    written "?N", so it resolves in neither and is reported as written.
    """

    def one(match: re.Match[str]) -> str:
        out = []
        for token in _ALIAS_TOKEN.findall(match.group(1)):
            doc_id = source.resolve(token)
            if doc_id is not None and doc_id in target:
                out.append(target.alias(doc_id))
            else:
                out.append(f"?{token}" if _DIGITS.fullmatch(token) else token)
        return f"[{', '.join(out)}]"

    return _BRACKET.sub(one, text)


def check_citations(
    text: str,
    *,
    aliases: DocumentAliases,
    findings: Mapping[str, Sequence[str]] | None,
) -> CheckedAnswer:
    """Keep only citations of documents with a finding that agrees with the claim citing them.

    Args:
        text: the model's answer, citing documents by alias ("[1]", "[2, 3]").
        aliases: the request's aliases, which map what the model cites back to ids.
        findings: each document's selected finding(s), by id; None when there are none to check
            against (the monolithic baseline): then only the aliases themselves are checked.
    """
    citations: list[str] = []
    invalid: list[InvalidCitation] = []
    lines: list[CitedLine] = []
    for line in sanitize_model_text(text).splitlines():
        claim = _LEADER.sub("", _BRACKET.sub("", line)).strip()
        before = len(invalid)
        parts: list[Part] = []
        at = 0
        for match in _BRACKET.finditer(line):
            parts.append(line[at : match.start()])
            parts.append(_bracket_ids(match.group(1), claim, aliases, findings, invalid))
            at = match.end()
        parts.append(line[at:])
        checked = CitedLine(tuple(parts))
        if len(invalid) > before and not checked.ids:
            continue  # every source it named was invalid: an unsupported claim is dropped
        lines.append(checked)
        citations += checked.ids
    return CheckedAnswer(lines=lines, citations=list(dict.fromkeys(citations)), invalid=invalid)
