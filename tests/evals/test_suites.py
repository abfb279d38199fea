from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from fanout.agents.errors import UserError
from fanout.evals.suites import (
    DEFAULT_NQ,
    SUITES,
    AggregateSuite,
    DatasetSuite,
    Document,
    Group,
    InjectionSuite,
    KeyValueSuite,
    MultitaskSuite,
    Question,
    load_jsonl,
    load_mti,
    load_nq,
    make_suite,
)
from fanout.evals.suites.injection import PAYLOAD


def test_keyvalue_is_seeded_and_each_question_targets_its_document() -> None:
    suite = KeyValueSuite(doc_tokens=80, position="middle")
    group = suite.group(5, 0, seed=3)
    assert group == suite.group(5, 0, seed=3)
    assert group != suite.group(5, 1, seed=3) and group != suite.group(5, 0, seed=4)
    assert len(group.documents) == len(group.questions) == 5
    keys = set()
    for question, document in zip(group.questions, group.documents, strict=True):
        assert question.document_ids == (document.id,)
        key = question.text.removeprefix("What is the access code for the ").removesuffix("?")
        keys.add(key)
        assert f"The access code for the {key} is {question.answers[0]}." in document.text
        assert 200 < len(document.text) < 600  # about 80 tokens of four characters
    assert len(keys) == 5


@pytest.mark.parametrize("position", ["start", "end"])
def test_keyvalue_places_the_fact(position: str) -> None:
    group = KeyValueSuite(position=position).group(1, 0, seed=0)  # type: ignore[arg-type]
    text, code = group.documents[0].text, group.questions[0].answers[0]
    fact_at = text.index("The access code")
    assert fact_at == 0 if position == "start" else text.rstrip().endswith(f"{code}.")


def test_aggregate_answers_follow_from_the_documents() -> None:
    suite = AggregateSuite()
    argmax = suite.group(6, 0, seed=1)
    [question] = argmax.questions
    staff = {}
    for doc in argmax.documents:
        sentence = next(s for s in doc.text.split(". ") if " employs " in s)
        name = sentence.split(" is based in ")[0]
        staff[name] = int(sentence.split(" employs ")[1].split()[0])
    assert question.answers == (max(staff, key=staff.__getitem__),)
    assert question.map_task and not question.document_ids
    count = suite.group(6, 1, seed=1)
    city = count.questions[0].text.split(" based in ")[1].rstrip("?")
    expected = sum(f"is based in {city} " in d.text for d in count.documents)
    assert count.questions[0].answers[0] == str(expected)


def test_multitask_questions_are_chained_over_one_profile() -> None:
    group = MultitaskSuite().group(4, 0, seed=0)
    assert [d.id for d in group.documents] == ["profile"]
    assert [q.after for q in group.questions] == [None, "q1", "q2", "q3"]
    for question in group.questions:
        assert question.answers[0] in group.documents[0].text
    with pytest.raises(UserError, match="at most"):
        MultitaskSuite().check(50, 1)


def test_injection_has_one_carrier() -> None:
    group = InjectionSuite().group(5, 2, seed=0)
    carriers = [d.id for d in group.documents if PAYLOAD in d.text]
    assert carriers == [group.metadata["carrier"]]
    assert all(q.hijack_marker == PAYLOAD for q in group.questions)


def test_nq_loader_reads_the_shipped_slice() -> None:
    suite = load_nq()
    assert suite.source == str(DEFAULT_NQ) and len(suite.instances) == 100
    first = suite.instances[0]
    assert first.questions[0].text == "who got the first nobel prize in physics?"
    assert first.questions[0].answers == ("Wilhelm Conrad Röntgen",)
    assert first.questions[0].match == "subspan"
    assert first.documents[0].text.startswith("(Title: List of Nobel laureates in Physics)")


def _write_jsonl(path: Path, lines: list[object], *, gz: bool = False) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as out:
            out.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


NQ_LINE = {"question": "who?", "answers": ["Ada"], "ctxs": [{"title": "T", "text": "Ada did."}]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"data.jsonl.gz:2: not valid JSON"),
        ("[1, 2]", r":2: expected a JSON object, got list"),
        ({"answers": ["x"], "ctxs": []}, r":2: 'question': Field required"),
        ({"question": "q", "answers": [], "ctxs": [{"text": "t"}]}, r":2: no answers"),
    ],
)
def test_nq_loader_names_the_bad_line(tmp_path: Path, line: object, message: str) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl.gz", [NQ_LINE, line], gz=True)
    with pytest.raises(UserError, match=message):
        load_nq(path)


def test_missing_dataset_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset not found"):
        load_nq(tmp_path / "nope.jsonl")


def test_jsonl_loader_shapes(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"id": "a", "question": "Who?", "answer": "Ada", "context": "Ada wrote it."},
            {"question": "Where?", "answers": ["Oslo"], "match": "exact",
             "documents": [{"id": "d1", "text": "Oslo."}, {"title": "Two", "text": "Lima."}]},
            {"questions": [{"question": "One?", "answer": "1"}, {"question": "Two?", "answer": "2"}],
             "document": "1 and 2", "chained": True, "extra": "ignored"},
        ],
    )  # fmt: skip
    suite = load_jsonl(path)
    a, b, c = suite.instances
    assert a.questions[0].answers == ("Ada",) and a.questions[0].match == "subspan"
    assert a.documents[0].id == "a-d1"
    assert [d.id for d in b.documents] == ["d1", "line2-d2"]
    assert b.documents[1].text == "(Title: Two) Lima."
    assert b.questions[0].match == "exact" and b.questions[0].document_ids == ("d1", "line2-d2")
    assert [q.id for q in c.questions] == ["line3.1", "line3.2"]
    assert c.questions[1].after == "line3.1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"question": "q", "context": "c"}, r":2: .*needs 'answers'"),
        ({"question": "q", "answer": "a"}, r":2: .*needs 'documents'"),
        ({"answer": "a", "context": "c"}, r":2: .*needs 'question'"),
        ({"question": "q", "answer": "a", "documents": [{"id": "x", "text": "1"},
                                                       {"id": "x", "text": "2"}]},
         r":2: two documents share an id"),
        ({"question": "q", "answer": "a", "context": "c", "match": "fuzzy"}, r":2: 'match'"),
        ({"id": "a", "question": "q", "answer": "a", "context": "c"}, r":2: duplicate id 'a'"),
    ],
)  # fmt: skip
def test_jsonl_loader_names_the_bad_line(tmp_path: Path, line: object, message: str) -> None:
    first = {"id": "a", "question": "q", "answer": "a", "context": "c"}
    path = _write_jsonl(tmp_path / "mine.jsonl", [first, line])
    with pytest.raises(UserError, match=message):
        load_jsonl(path)


MTI = {
    "002": {
        "sample": "worked example",
        "instance": {
            "17": {
                "query": "Read and solve.",
                "instruction": {"1": "Name the city.", "2": "Give its country."},
                "context": {"1": "Oslo is a city.", "2_a": "Oslo is in Norway."},
                "answers": ["Oslo", "Norway"],
            },
            "18": {
                "instruction": {"1": "Count the words.", "2": "Double it."},
                "context": {"1": "one two three"},
                "answers": [3, 6],
            },
        },
    }
}


def test_mti_loader(tmp_path: Path) -> None:
    path = tmp_path / "mti.json"
    path.write_text(json.dumps(MTI))
    suite = load_mti(path)
    first, second = suite.instances
    assert [q.text for q in first.questions] == ["Name the city.", "Give its country."]
    assert first.questions[0].document_ids == ("002-17-c1",)
    assert first.questions[1].document_ids == ("002-17-c2_a",)
    assert first.questions[1].after == "002-17.1"
    assert second.questions[1].answers == ("6",)
    assert second.questions[1].document_ids == ("002-18-c1",)  # no own context: all of them


def test_mti_loader_errors_name_the_place(tmp_path: Path) -> None:
    path = tmp_path / "mti.json"
    path.write_text('{\n  "002": {\n    "instance": [}\n}')
    with pytest.raises(UserError, match=r"mti.json:3: not valid JSON"):
        load_mti(path)
    broken = json.loads(json.dumps(MTI))
    del broken["002"]["instance"]["18"]["answers"]
    path.write_text(json.dumps(broken))
    with pytest.raises(UserError, match=r"task 002 instance 18: 'answers' must list"):
        load_mti(path)


def _pool(size: int) -> DatasetSuite:
    instances = [
        Group(id=f"i{k}", documents=(Document(id="doc", text=f"text {k}"),),
              questions=(Question(id="q", text=f"q{k}?", answers=(str(k),), document_ids=("doc",)),))
        for k in range(size)
    ]  # fmt: skip
    return DatasetSuite(name="pool", source="memory", instances=instances)


def test_dataset_groups_do_not_overlap_and_rename_colliding_ids() -> None:
    suite = _pool(10)
    groups = [suite.group(3, g, seed=0) for g in range(3)]
    seen = [q.text for g in groups for q in g.questions]
    assert len(seen) == len(set(seen)) == 9
    group = groups[0]
    assert len({d.id for d in group.documents}) == 3
    for question in group.questions:
        [doc] = group.documents_for(question)
        assert doc.text == f"text {question.answers[0]}"
    assert suite.group(3, 0, seed=0) == groups[0]
    # one shuffle for every N: the N=1 instances are the first ones of the N=3 groups
    assert suite.group(1, 0, seed=0).questions[0].text == seen[0]


def test_dataset_refuses_an_n_larger_than_the_dataset() -> None:
    with pytest.raises(UserError, match=r"N=11 is larger than the dataset \(10 instances in mem"):
        _pool(10).check(11, 1)


def test_make_suite_checks_its_arguments(tmp_path: Path) -> None:
    assert isinstance(make_suite("keyvalue"), KeyValueSuite)
    assert set(SUITES) >= {"keyvalue", "aggregate", "multitask", "injection", "nq"}
    with pytest.raises(UserError, match="unknown suite 'kv'"):
        make_suite("kv")
    with pytest.raises(UserError, match="dataset: the jsonl suite needs a data file"):
        make_suite("jsonl")
    with pytest.raises(UserError, match="takes no data file"):
        make_suite("keyvalue", dataset=tmp_path / "x")
    with pytest.raises(UserError, match="unknown position"):
        make_suite("keyvalue", position="left")
