"""Citation integrity: an answer may cite a document only for what that document itself found.

A synthesizer (a small model especially) invents ids, cites a document for another document's fact,
or copies a hostile document's forged line ("- Zed Zulu [northwind.md]"). The coordinator reads
every bracket of the answer, keeps a citation only when the id is a document of the request with a
selected finding and the claim it is attached to agrees with that finding, removes the rest from
the text and records why; a line left with no valid citation after that is dropped as unsupported. Model text is also stripped of lines posing as the coordinator's own
report (``Missing: ...``), which the coordinator prints from its fields, apart from model text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .grounding import normalize_text
from .result import InvalidCitation

__all__ = [
    "CheckedAnswer",
    "check_citations",
    "cited_ids",
    "claim_text",
    "clean_model_text",
    "sanitize_model_text",
]

_BRACKET = re.compile(r"\[([^\[\]\n]+)\]")
_RESERVED = re.compile(
    r"^\s*(?:fanout\s*:\s*)?(?:missing|uncited|no document answers|not asked|removed citations|"
    r"synthesis failed)\b.*$|^\s*-{3,}\s*$",
    re.I | re.M,
)
_WORD = re.compile(r"\w+")
_LEADER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def cited_ids(text: str) -> list[str]:
    """Every id cited in brackets in `text` ("[a.md]", "[a.md, b.md]"), first-cited first."""
    ids: list[str] = []
    for inside in _BRACKET.findall(text):
        ids += [part.strip() for part in re.split(r"[,;]", inside) if part.strip()]
    return list(dict.fromkeys(ids))


def claim_text(line: str) -> str:
    """What a line of an answer claims: the line without its list marker and its citations."""
    return _LEADER.sub("", _BRACKET.sub("", line)).strip()


def sanitize_model_text(text: str) -> str:
    """Model text without lines that pose as the coordinator's report."""
    return _RESERVED.sub("", text).strip("\n")


def clean_model_text(text: str) -> str:
    """A sub-agent's answer as data: no report lines, and brackets turned into parentheses.

    Brackets are how answers cite documents, so a document cannot make its sub-agent's answer
    carry a citation ("- Zed Zulu [northwind.md]" becomes "- Zed Zulu (northwind.md)").
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


@dataclass(frozen=True, kw_only=True)
class CheckedAnswer:
    """An answer after its citations were checked."""

    text: str
    """The answer with invalid citations and forged report lines removed."""
    citations: list[str]
    """Valid cited ids, first-cited first."""
    invalid: list[InvalidCitation]
    """What was removed, and why."""


def check_citations(
    text: str,
    *,
    documents: Sequence[str],
    findings: Mapping[str, Sequence[str]] | None,
) -> CheckedAnswer:
    """Keep only citations of documents with a finding that agrees with the claim citing them.

    Args:
        text: the model's answer.
        documents: every document id of the request.
        findings: each document's selected finding(s); None when there are none to check against
            (the monolithic baseline): then only the ids themselves are checked.
    """
    known = set(documents)
    citations: list[str] = []
    invalid: list[InvalidCitation] = []
    out_lines = []
    for line in sanitize_model_text(text).splitlines():
        claim = claim_text(line)

        def keep(match: re.Match[str], claim: str = claim) -> str:
            kept = []
            for doc_id in (p.strip() for p in re.split(r"[,;]", match.group(1))):
                if not doc_id:
                    continue
                reason = None
                if doc_id not in known:
                    reason = "not a document of the request"
                elif findings is not None and doc_id not in findings:
                    reason = "no finding from that document"
                elif findings is not None and not any(_agrees(claim, f) for f in findings[doc_id]):
                    reason = "disagrees with that document's own finding"
                if reason is None:
                    kept.append(doc_id)
                    citations.append(doc_id)
                else:
                    invalid.append(InvalidCitation(document_id=doc_id, claim=claim, reason=reason))
            return f"[{', '.join(kept)}]" if kept else ""

        before = len(invalid)
        checked = re.sub(r"\s+$", "", _BRACKET.sub(keep, line))
        if len(invalid) > before and not cited_ids(checked):
            continue  # every source it named was invalid: an unsupported claim is dropped
        out_lines.append(checked)
    return CheckedAnswer(
        text="\n".join(out_lines).strip(),
        citations=list(dict.fromkeys(citations)),
        invalid=invalid,
    )
