"""Property tests: chunking never loses or duplicates text beyond the declared overlap."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.agents.backend import estimate_tokens
from fanout.orchestrator import Document, Request
from fanout.orchestrator.split import chunk_text, split_request

texts = st.text(alphabet=st.sampled_from(list("abcdefgh .,\n\né中")), min_size=0, max_size=3000)


@settings(max_examples=200, deadline=None)
@given(text=texts, max_tokens=st.integers(4, 200), overlap_frac=st.floats(0, 0.5))
def test_chunking_covers_everything_and_overlaps_at_most_as_declared(
    text: str, max_tokens: int, overlap_frac: float
) -> None:
    overlap = int(max_tokens * overlap_frac)
    chunks = chunk_text(
        text, max_tokens=max_tokens, overlap_tokens=overlap, count_tokens=estimate_tokens
    )
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert estimate_tokens(c.text) <= max_tokens or len(c.text) == 1
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.start < nxt.start <= prev.end  # no gap, always progress
        assert estimate_tokens(text[nxt.start : prev.end]) <= overlap  # declared overlap only
    # Rebuilding from the non-overlapping parts gives back the exact text.
    rebuilt = chunks[0].text + "".join(
        n.text[p.end - n.start :] for p, n in itertools.pairwise(chunks)
    )
    assert rebuilt == text


@settings(max_examples=100, deadline=None)
@given(
    bodies=st.lists(st.text(min_size=1, max_size=400), min_size=1, max_size=6),
    n_tasks=st.integers(1, 3),
)
def test_each_document_reaches_exactly_its_own_sub_agents(bodies: list[str], n_tasks: int) -> None:
    documents = tuple(Document(id=f"doc{i}", text=b) for i, b in enumerate(bodies))
    request = Request(documents=documents, instructions=tuple(f"task {k}" for k in range(n_tasks)))
    tasks = split_request(request, chunk_tokens=20, overlap_tokens=3, count_tokens=estimate_tokens)
    by_doc = {d.id: d.text for d in documents}
    for t in tasks:
        assert t.context == by_doc[t.document_id][t.start : t.end]
    for d in documents:
        mine = [t for t in tasks if t.document_id == d.id]
        n_chunks = mine[0].n_chunks
        assert len(mine) == n_chunks * n_tasks
        assert {t.task for t in mine} == set(request.tasks)
    assert len({t.id for t in tasks}) == len(tasks)
