"""Choosing which findings answer the question: relevance that does not rest on the model alone.

`fanout run` asks every document, and a small model rarely says "not found": asked for the jade
chest's code over eight notes, the embedded 270M model extracts each note's own code. So when
several documents report a finding for one question, the coordinator scores each finding's evidence
and document against the question with BM25 (bm25s), whose IDF weighting makes the words that set
documents apart ("jade") count and the words every note shares ("access code") count for almost
nothing. Findings scoring at least `RELATIVE_THRESHOLD` of the best are kept. Within them, a finding
whose quote is not in its document is ranked after the grounded ones, and dropped when its answer
is not in the document either (while some relevant finding is supported).

A stronger model's abstention is used as it is: a document whose sub-agent said "not found" is never
ranked, so when only one document answers, its finding is the answer whatever its score.

Texts with no indexable word (a finding "x" from a document "t") score 0 and are all kept:
bm25s cannot index an empty vocabulary. bm25s sets its own logger to DEBUG when imported, which an
application logging at INFO would see on every run; fanout imports it with the logger's level put
back as it was.

Limits: BM25 sees words, not meaning. A question phrased with synonyms of the document's words, or
one whose distinguishing word is in every document, cannot be told apart this way: then every
finding scores alike and all are kept (ranked), and the synthesizer sees them all. Ranking is only
used for a question over documents; per-document instructions and known pairings keep every finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._bm25 import bm25s as import_bm25s
from ._grounding import is_grounded
from .result import DocumentAnswer

__all__ = ["RELATIVE_THRESHOLD", "relevance_scores", "select_findings"]

RELATIVE_THRESHOLD = 2 / 3
"""A finding is kept when its score is at least this share of the best one. Two thirds separates a
document matching all of a question's distinguishing words from one matching half of them ("jade
vault" against "jade chest")."""


def relevance_scores(question: str, texts: Sequence[str]) -> list[float]:
    """BM25 score of `question` against each text, with IDF taken over these texts alone."""
    bm25s = import_bm25s()
    corpus = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    if not corpus.vocab or not any(corpus.ids):
        return [0.0] * len(texts)  # no word to index: nothing tells the texts apart
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    query = bm25s.tokenize(question, stopwords="en", show_progress=False, return_ids=False)
    terms = [t for t in query[0] if t in corpus.vocab]
    if not terms:
        return [0.0] * len(texts)
    return [float(x) for x in retriever.get_scores(terms)]


def select_findings(
    question: str,
    answers: Sequence[DocumentAnswer],
    documents: Mapping[str, str],
    *,
    rank: bool,
) -> list[DocumentAnswer]:
    """`answers` with `selected`, `rank` and `relevance` set for one task's findings.

    Args:
        question: what the findings should answer (the task).
        answers: one task's per-document answers, in request order.
        documents: document text by id (scored with the evidence).
        rank: score and filter by relevance; False keeps every found answer (instructions that
            every document should answer, known pairings).
    """
    found = [i for i, a in enumerate(answers) if a.outcome == "found"]
    scores: dict[int, float] = {}
    relevant = list(found)
    if rank and len(found) > 1:
        # A quote the grounding check rejected may carry the question's words into a document
        # that lacks them (the model wrote "jade" into the amber note's quote): score the
        # document, with its quote counted again only when the quote is really in it.
        texts = [
            f"{answers[i].evidence if answers[i].grounded else ''}\n"
            f"{documents.get(answers[i].document_id or '', '')}"
            for i in found
        ]
        scores = dict(zip(found, relevance_scores(question, texts), strict=True))
        best = max(scores.values())
        if best > 0:
            relevant = [i for i in found if scores[i] >= RELATIVE_THRESHOLD * best]
    # A quote not in the document downgrades a finding; it is dropped only when its answer is
    # not in the document either and some relevant finding is supported.
    supported = {
        i
        for i in relevant
        if answers[i].grounded is not False
        or is_grounded(answers[i].answer, documents.get(answers[i].document_id or "", ""))
    }
    chosen = supported or set(relevant)
    order = sorted(
        found,
        key=lambda i: (i not in chosen, answers[i].grounded is False, -scores.get(i, 0.0), i),
    )
    ranks = {i: r for r, i in enumerate(order, 1)}
    found_set, relevant_set = set(found), set(relevant)  # sets: 100,000 findings in one task
    return [
        a.model_copy(
            update={
                "selected": i in chosen,
                "rank": ranks.get(i),
                "relevance": round(scores[i], 4) if i in scores else None,
                "excluded": None
                if i in chosen or i not in found_set
                else "ungrounded"
                if i in relevant_set
                else "outranked",
            }
        )
        for i, a in enumerate(answers)
    ]
