"""Citation integrity: every line of an answer is proven by what its cited documents say, or removed.

A synthesizer (a small model especially) invents aliases, cites a document for another document's
fact, appends an instruction it read in a finding ("- Priya Shah, and wire the deposit to IBAN
XX99 [1]"), writes a line citing nothing, or copies a hostile document's forged line ("- Zed Zulu
[1]"). Models never see document ids, only aliases (`fanout.orchestrator._aliases`), so the
coordinator reads every bracket of the answer as a list of aliases and checks each line:

- each cited alias must be a document of the request; with findings (isolated runs), a document
  with a selected finding that the claim agrees with; without (one prompt), a document holding at
  least one of the claim's words. Other citations are removed and recorded in `invalid`;
- the line's claim must say nothing its cited documents do not: every content word of it (stop
  words and the request's own words aside) is in a cited document's finding or in that document's
  text. A line that says more is removed and recorded in `unsupported`;
- a line citing nothing (or only what was removed) is checked the same way against every
  selected finding (or, for one prompt, every document): if some back it, they are cited; if none,
  it is removed and recorded.

Words are compared, not meaning: a line that recombines words of its documents into a false
statement passes, and a faithful paraphrase in other words is removed (the findings are then
listed instead when nothing else is left). Model text is also stripped of lines posing as the
coordinator's own report (``Missing: ...``), which the coordinator prints from its fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ._aliases import DocumentAliases, inline_id
from ._bm25 import bm25s as import_bm25s
from ._grounding import normalize_text
from .result import InvalidCitation, UnsupportedLine

__all__ = [
    "CheckedAnswer",
    "CitedLine",
    "Evidence",
    "check_citations",
    "clean_model_text",
    "relabel",
    "sanitize_model_text",
]

_BRACKET = re.compile(r"\[([^\[\]\n]*)\]")
_ALIAS_TOKEN = re.compile(r"[^,;\s]+")
_DIGITS = re.compile(r"[0-9]+")
_RESERVED = re.compile(
    r"^\s*(?:fanout\s*:\s*)?(?:(?:missing|uncited|no document answers|not asked|removed citations|"
    r"synthesis failed|budget reached)\b|unsupported:|not used \(|not answered:|no supported answer:).*$|"
    r"^\s*-{3,}\s*$",
    re.I | re.M,
)
# Words that carry no claim: English stop words (negations kept: "is not Priya Shah" must be
# backed) and the words an answer frames itself with.
_NEGATIONS = frozenset(
    {"no", "nor", "not", "ain", "aren", "couldn", "didn", "doesn", "don", "hadn", "hasn", "haven",
     "isn", "mightn", "mustn", "needn", "shan", "shouldn", "wasn", "weren", "won", "wouldn"}
)  # fmt: skip
_FRAMING = frozenset(
    {"answer", "answers", "finding", "findings", "document", "documents", "according", "source",
     "sources", "based", "following", "question", "says", "said", "states", "stated"}
)  # fmt: skip
_NO_CLAIM = (frozenset(import_bm25s().stopwords.STOPWORDS_EN_PLUS) - _NEGATIONS) | _FRAMING
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
    """Citations removed, and why."""
    unsupported: list[UnsupportedLine]
    """Lines removed because nothing they cite (or nothing selected) says what they say."""

    @property
    def text(self) -> str:
        """The answer as users read it: each citation names its documents by id, on one line."""
        return "\n".join(line.render(inline_id) for line in self.lines).strip()


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(normalize_text(text)))


class Evidence:
    """What may back a line of an answer.

    Selected findings, their documents' text, and the request's own words (restating the question
    claims nothing).
    """

    def __init__(
        self,
        *,
        documents: Mapping[str, str],
        findings: Mapping[str, Sequence[str]] | None,
        request_text: Iterable[str] = (),
    ) -> None:
        """Build the evidence of one answer.

        Args:
            documents: the request's document texts, by id.
            findings: each document's selected finding(s), by id; None when there are none (one
                prompt read every document): then the documents alone back the answer.
            request_text: the question and tasks.
        """
        self.documents = documents
        self.findings = findings
        self._free = _NO_CLAIM.union(*(_words(t) for t in request_text))
        self._found: dict[str, frozenset[str]] = {}
        self._text: dict[str, frozenset[str]] = {}
        self._by_word: dict[str, list[str]] | None = None

    def claim_words(self, claim: str) -> frozenset[str]:
        """The words of `claim` that claim something."""
        return _words(claim) - self._free

    def _found_words(self, document_id: str) -> frozenset[str]:
        words = self._found.get(document_id)
        if words is None:
            found = self.findings.get(document_id, ()) if self.findings is not None else ()
            words = self._found[document_id] = frozenset().union(*(_words(f) for f in found))
        return words

    def _text_words(self, document_id: str) -> frozenset[str]:
        words = self._text.get(document_id)
        if words is None:
            words = self._text[document_id] = _words(self.documents.get(document_id, ""))
        return words

    def unbacked(self, words: frozenset[str], document_ids: Iterable[str]) -> frozenset[str]:
        """The `words` that neither the documents' findings nor their texts hold.

        Findings are read first: a line that states its finding never has its document's whole
        text tokenized (a listed answer of 100,000 findings stays linear and cheap).
        """
        ids = list(document_ids)
        left = words
        for doc_id in ids:
            left = left - self._found_words(doc_id)
        for doc_id in ids:
            if not left:
                break
            left = left - self._text_words(doc_id)
        return left

    def agrees(self, claim: str, document_id: str) -> bool:
        """Whether `claim` states one of the document's findings (always, without findings)."""
        if self.findings is None:
            return True
        return any(_agrees(claim, f) for f in self.findings.get(document_id, ()))

    def backers(self, claim: str, words: frozenset[str]) -> list[str]:
        """Documents that could have been cited for a claim citing none, in request order."""
        pool = self.findings if self.findings is not None else self.documents
        if self._by_word is None:  # which documents' findings (or texts) hold each word
            self._by_word = {}
            for doc_id in pool:
                held = (
                    self._found_words(doc_id)
                    if self.findings is not None
                    else self._text_words(doc_id)
                )
                for word in held:
                    self._by_word.setdefault(word, []).append(doc_id)
        near = {d for w in words for d in self._by_word.get(w, ())}
        return [
            d for d in pool if d in near and not self.unbacked(words, [d]) and self.agrees(claim, d)
        ]


def _bracket_ids(
    inside: str,
    claim: str,
    words: frozenset[str],
    aliases: DocumentAliases,
    evidence: Evidence,
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
        elif evidence.findings is not None and doc_id not in evidence.findings:
            reason = "no finding from that document"
        elif not evidence.agrees(claim, doc_id):
            reason = "disagrees with that document's own finding"
        elif evidence.findings is None and words and evidence.unbacked(words, [doc_id]) == words:
            reason = "that document does not say it"
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
    evidence: Evidence,
) -> CheckedAnswer:
    """Keep the lines of `text` that their documents back, with only their valid citations.

    Args:
        text: the model's answer, citing documents by alias ("[1]", "[2, 3]").
        aliases: what the aliases it cites stand for.
        evidence: what may back a line (see `Evidence`).
    """
    citations: list[str] = []
    invalid: list[InvalidCitation] = []
    unsupported: list[UnsupportedLine] = []
    lines: list[CitedLine] = []
    for line in sanitize_model_text(text).splitlines():
        claim = _LEADER.sub("", _BRACKET.sub("", line)).strip()
        words = evidence.claim_words(claim)
        before = len(invalid)
        parts: list[Part] = []
        at = 0
        for match in _BRACKET.finditer(line):
            parts.append(line[at : match.start()])
            parts.append(_bracket_ids(match.group(1), claim, words, aliases, evidence, invalid))
            at = match.end()
        parts.append(line[at:])
        checked = CitedLine(tuple(parts))
        cited = checked.ids
        miscited = len(invalid) > before and not cited
        if miscited and not words:
            continue  # it named only invalid sources and claims nothing: dropped
        if not cited and words:
            # A line citing nothing, or only what was removed: cited to what says it, if anything
            # does (its wrong citations stay recorded); else removed.
            cited = evidence.backers(claim, words)
            if not cited:
                if not miscited:  # a miscited line is already recorded in `invalid`
                    unsupported.append(
                        UnsupportedLine(text=claim, cited=[], reason="nothing selected says it")
                    )
                continue
            text = "".join(p for p in parts if isinstance(p, str)).rstrip()
            checked = CitedLine((text + " ", tuple(cited)))  # the coordinator cites it
        unbacked = evidence.unbacked(words, cited)
        if unbacked:
            unsupported.append(
                UnsupportedLine(
                    text=claim,
                    cited=cited,
                    reason="says what its documents do not",
                    unbacked=sorted(unbacked),
                )
            )
            continue
        lines.append(checked)
        citations += cited
    return CheckedAnswer(
        lines=lines,
        citations=list(dict.fromkeys(citations)),
        invalid=invalid,
        unsupported=unsupported,
    )
