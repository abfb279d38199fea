from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from fanout.agents.errors import UserError
from fanout.evals._scoring import is_correct
from fanout.evals.suites import (
    DEV_KV_ITEMS,
    DEV_NQ_ITEMS,
    ItemRange,
    load_kvretrieval,
    load_mdqa,
    load_nq,
    make_suite,
)
from fanout.evals.suites.kvretrieval import format_kv_records

TOPICS = ["river", "castle", "violin", "glacier", "comet", "orchard", "harbour", "falcon"]


def write_jsonl(path: Path, lines: list[dict[str, object]]) -> Path:
    with gzip.open(path, "wt") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return path


def nq_file(tmp_path: Path, count: int = 8) -> Path:
    """Item i asks about topic i; every passage names the "longest" of something."""
    lines = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        lines.append(
            {
                "question": f"what is the longest {topic} in the land",
                "answers": [f"Answer{i}"],
                "ctxs": [
                    {
                        "title": f"{topic.title()} {i}",
                        "text": f"The longest {topic} in the land is Answer{i}, a {topic} of note.",
                    }
                ],
            }
        )
    return write_jsonl(tmp_path / "nq.jsonl.gz", lines)


def test_mdqa_puts_the_gold_passage_where_asked_among_distractors_that_cannot_answer(
    tmp_path: Path,
) -> None:
    path = nq_file(tmp_path)
    # an item whose passage holds item 0's answer: never a distractor for item 0
    lines = [json.loads(x) for x in gzip.open(path, "rt")]
    lines[5]["ctxs"][0]["text"] += " It is not Answer0."
    write_jsonl(path, lines)
    for position, expected in (("start", 0), ("middle", 2), ("end", 5)):
        suite = load_mdqa(path, position=position)  # type: ignore[arg-type]
        for index in range(3):
            group = suite.group(6, index, seed=1)
            question = group.questions[0]
            (gold,) = question.document_ids
            ids = [d.id for d in group.documents]
            assert len(ids) == len(set(ids)) == 6
            assert ids.index(gold) == expected == int(group.metadata["gold_position"])
            for document in group.documents:
                holds = any(a in document.text for a in question.answers)
                assert holds == (document.id == gold)
            assert group == suite.group(6, index, seed=1)


def test_mdqa_distractors_are_ranked_by_the_question_words(tmp_path: Path) -> None:
    lines = [json.loads(x) for x in gzip.open(nq_file(tmp_path), "rt")]
    lines[3]["ctxs"][0]["text"] += " The river valley and the river delta."  # the most "river"
    suite = load_mdqa(write_jsonl(tmp_path / "nq2.jsonl.gz", lines))
    assert suite.distractors(0, 2)[0] == 3  # item 0 asks about the river


def test_mdqa_reads_only_its_item_range(tmp_path: Path) -> None:
    path = nq_file(tmp_path, count=8)
    suite = load_mdqa(path, items=ItemRange(2, 6))
    assert [n for n, _ in suite.items] == [2, 3, 4, 5]
    every = {d.id for i in range(4) for d in suite.group(4, i, seed=0).documents}
    assert every == {"p2", "p3", "p4", "p5"}
    with pytest.raises(UserError, match=r"N=5 passages need 4 distractors, but items 2:6"):
        suite.check(5, 1)
    assert "items 2:6, gold middle" in suite.source


def test_the_default_ranges_are_the_development_ranges(tmp_path: Path) -> None:
    assert (DEV_NQ_ITEMS, DEV_KV_ITEMS) == (ItemRange(0, 1000), ItemRange(0, 300))
    many = [
        {"question": f"q{i}", "answers": [f"a{i}"], "ctxs": [{"title": "t", "text": f"x{i}"}]}
        for i in range(1005)
    ]
    path = write_jsonl(tmp_path / "many.jsonl.gz", many)
    assert len(load_mdqa(path).items) == 1000
    assert len(load_nq(path).instances) == 1000
    assert len(load_nq(path, items=ItemRange(1000, 2000)).instances) == 5


def kv_file(tmp_path: Path, count: int = 3, pairs: int = 10) -> Path:
    lines = []
    for i in range(count):
        records = [[f"key-{i}-{j}", f"value-{i}-{j}"] for j in range(pairs)]
        lines.append({"ordered_kv_records": records, "key": f"key-{i}-3", "value": f"value-{i}-3"})
    return write_jsonl(tmp_path / "kv.jsonl.gz", lines)


def test_kvretrieval_builds_an_object_of_n_pairs_with_the_gold_pair_where_asked(
    tmp_path: Path,
) -> None:
    path = kv_file(tmp_path)
    for position, expected in (("start", 0), ("middle", 3), ("end", 7)):
        suite = load_kvretrieval(path, position=position)  # type: ignore[arg-type]
        group = suite.group(8, 1, seed=0)
        (document,) = group.documents
        record = json.loads(document.text)
        assert len(record) == 8
        question = group.questions[0]
        key = question.text.removeprefix('What is the value of the key "').removesuffix('"?')
        assert list(record).index(key) == expected == int(group.metadata["gold_position"])
        assert record[key] == question.answers[0]
        assert is_correct(f'The value is "{record[key]}".', question)
        other = next(v for k, v in record.items() if k != key)
        assert not is_correct(other, question)


def test_kv_records_are_written_as_lost_in_the_middle_writes_them() -> None:
    assert format_kv_records([("a", "1"), ("b", "2")]) == '{"a": "1",\n "b": "2"}'


def test_kvretrieval_refuses_bad_items_and_sizes(tmp_path: Path) -> None:
    suite = load_kvretrieval(kv_file(tmp_path))
    with pytest.raises(UserError, match="between 2 and 10, not 11"):
        suite.check(11, 1)
    bad = write_jsonl(
        tmp_path / "bad.jsonl.gz",
        [{"ordered_kv_records": [["a", "1"], ["b", "2"]], "key": "a", "value": "2"}],
    )
    with pytest.raises(UserError, match=r"bad.jsonl.gz:1: .*not one of the records"):
        load_kvretrieval(bad)


def test_make_suite_reads_ranges_only_for_the_files_of_lost_in_the_middle(tmp_path: Path) -> None:
    kv = kv_file(tmp_path)
    suite = make_suite("kvretrieval", dataset=kv, items="1:3", position="end")
    assert "items 1:3, gold end" in suite.source
    with pytest.raises(UserError, match="the keyvalue suite reads no item range"):
        make_suite("keyvalue", items="0:10")
    with pytest.raises(UserError, match="takes START:END"):
        make_suite("mdqa", items="10")
    with pytest.raises(UserError, match="END must be above START"):
        make_suite("mdqa", items="10:5")
    with pytest.raises(UserError, match="the kvretrieval suite needs a data file"):
        make_suite("kvretrieval")
