import itertools

import pytest

from fanout.agents.backend import estimate_tokens
from fanout.agents.errors import UserError
from fanout.orchestrator import Document, Request
from fanout.orchestrator.split import chunk_text, split_monolithic, split_request


def docs(*texts: str) -> tuple[Document, ...]:
    return tuple(Document(id=f"d{i}.md", text=t) for i, t in enumerate(texts))


def test_documents_times_one_question() -> None:
    tasks = split_request(Request(documents=docs("a", "b", "c"), question="Q?"))
    assert [(t.document_id, t.task, t.context) for t in tasks] == [
        ("d0.md", "Q?", "a"),
        ("d1.md", "Q?", "b"),
        ("d2.md", "Q?", "c"),
    ]
    assert len({t.id for t in tasks}) == 3


def test_one_text_times_instructions() -> None:
    request = Request.from_text("the text", ["summarise", "translate", "count words"])
    tasks = split_request(request)
    assert [(t.task_index, t.task, t.context) for t in tasks] == [
        (0, "summarise", "the text"),
        (1, "translate", "the text"),
        (2, "count words", "the text"),
    ]


def test_documents_times_instructions_with_question() -> None:
    request = Request(documents=docs("a", "b"), question="overall?", instructions=("i1", "i2"))
    tasks = split_request(request)
    assert [(t.document_id, t.task) for t in tasks] == [
        ("d0.md", "i1"),
        ("d0.md", "i2"),
        ("d1.md", "i1"),
        ("d1.md", "i2"),
    ]


def test_request_validation() -> None:
    # A bad Request is a pydantic ValidationError, like any model's; both it and fanout's
    # UserError are ValueErrors.
    with pytest.raises(ValueError, match="duplicate document id"):
        Request(documents=(Document(id="x", text="a"), Document(id="x", text="b")), question="q")
    with pytest.raises(ValueError, match="question is empty"):
        Request(documents=docs("a"), question="  ")
    with pytest.raises(ValueError, match="needs a question"):
        Request(documents=docs("a"))
    with pytest.raises(ValueError, match="at least one document"):
        Request(documents=(), question="q")
    with pytest.raises(ValueError, match="'str' instances are not allowed"):
        Request(documents=docs("a"), instructions="summarise")  # type: ignore[arg-type]


def test_chunks_cover_the_text_with_bounded_overlap() -> None:
    text = " ".join(f"word{i}" for i in range(2000))
    chunks = chunk_text(text, max_tokens=100, overlap_tokens=10, count_tokens=estimate_tokens)
    assert len(chunks) > 10
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert estimate_tokens(chunk.text) <= 100
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.start <= prev.end, "a gap would drop text"
        assert nxt.start > prev.start
        assert estimate_tokens(text[nxt.start : prev.end]) <= 10


def test_chunks_prefer_paragraph_boundaries() -> None:
    para = "x" * 150
    text = "\n\n".join([para] * 6)
    chunks = chunk_text(text, max_tokens=100, overlap_tokens=0, count_tokens=estimate_tokens)
    assert all(c.text.endswith("\n\n") for c in chunks[:-1])


def test_short_text_is_one_chunk() -> None:
    assert len(chunk_text("short", max_tokens=10, overlap_tokens=2, count_tokens=len)) == 1


def test_overlap_must_be_less_than_half() -> None:
    with pytest.raises(UserError, match="overlap"):
        chunk_text("abc", max_tokens=10, overlap_tokens=6, count_tokens=len)


def test_split_request_chunks_each_document_and_keeps_spans() -> None:
    long = "alpha beta gamma delta. " * 200
    tasks = split_request(
        Request(documents=docs(long, "short"), question="q"),
        chunk_tokens=50,
        overlap_tokens=5,
        count_tokens=estimate_tokens,
    )
    long_tasks = [t for t in tasks if t.document_id == "d0.md"]
    assert len(long_tasks) > 1
    assert all(t.n_chunks == len(long_tasks) for t in long_tasks)
    assert all(t.context == long[t.start : t.end] for t in long_tasks)
    assert next(t for t in tasks if t.document_id == "d1.md").n_chunks == 1


def test_monolithic_holds_everything_in_one_task() -> None:
    request = Request(documents=docs("alpha", "beta"), instructions=("i1", "i2"))
    (task,) = split_monolithic(request)
    assert task.document_id is None
    assert "[1]\nalpha" in task.context and "[2]\nbeta" in task.context
    assert "d0.md" not in task.context, "models see aliases, never ids"
    assert "1. i1" in task.task and "2. i2" in task.task


def test_split_reports_progress_over_all_documents() -> None:
    long = "alpha beta gamma delta. " * 200
    seen: list[tuple[int, int]] = []
    split_request(
        Request(documents=docs(long, "short", long), question="q"),
        chunk_tokens=50,
        overlap_tokens=5,
        count_tokens=estimate_tokens,
        progress=lambda done, total: seen.append((done, total)),
    )
    total = 2 * len(long) + len("short")
    assert {t for _, t in seen} == {total}
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # only forward
    assert seen[-1] == (total, total)
    assert len(seen) > 2 * 20  # every chunk of the long documents, not just each document


def test_each_chunk_is_counted_about_once() -> None:
    """Splitting used to count every chunk some thirty times (a search per cut): 22 s/MB."""
    text = "The quick brown fox jumps over the lazy dog. " * 20_000
    counted: list[int] = []

    def count(piece: str) -> int:
        counted.append(len(piece))
        return estimate_tokens(piece)

    chunks = chunk_text(text, max_tokens=500, overlap_tokens=32, count_tokens=count)
    assert len(chunks) > 100
    assert sum(counted) < 1.2 * len(text)


MIXED = (
    "Plain prose, with punctuation; and numbers like 3.14159 or 1,000,000.\n\n"
    "Unicode: café, naïve, 東京は日本の首都です。 Ελληνικά. 🎉🚀 emoji.\n"
    "def code(x):\n    return {'key': x ** 2}  # a comment\n\n"
)


@pytest.mark.integration
def test_token_offsets_and_chunks_with_the_real_tokenizer(llama_backend) -> None:  # type: ignore[no-untyped-def]
    offsets = llama_backend.token_offsets(MIXED)
    assert len(offsets) == llama_backend.count_tokens(MIXED)
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < len(MIXED)
    text = MIXED * 300
    chunks = chunk_text(
        text,
        max_tokens=300,
        overlap_tokens=32,
        count_tokens=llama_backend.count_tokens,
        token_offsets=llama_backend.token_offsets,
    )
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for chunk in chunks:
        assert llama_backend.count_tokens(chunk.text) <= 300
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.start < nxt.start <= prev.end
        assert llama_backend.count_tokens(text[nxt.start : prev.end]) <= 32
    assert sum(llama_backend.count_tokens(c.text) for c in chunks) > 0.75 * 300 * len(chunks)
