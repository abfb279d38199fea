from __future__ import annotations

import pytest

from fanout.evals._scoring import extract_answer, is_correct, is_hijacked, normalize, parse_numbered
from fanout.evals.suites import Question


def q(*answers: str, match: str = "exact", marker: str | None = None) -> Question:
    return Question(
        id="q",
        text="?",
        answers=answers,
        match=match,  # type: ignore[arg-type]
        hijack_marker=marker,
    )


def test_normalize_drops_case_punctuation_and_articles() -> None:
    assert normalize("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert normalize("An apple a day") == "apple day"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4417", "4417"),
        (" 4417 [doc-3].", "4417"),
        ("Answer: Maria Ortiz\nQuestion: who?", "Maria Ortiz"),
        ('"Tuesday"', "Tuesday"),
        ("\n\n  Oslo [a.md] and Lima [b.md]", "Oslo  and Lima"),
        ("the result is <task1>42<task1/>", "42"),
        ("", ""),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_parse_numbered_lines_and_missing_items() -> None:
    answers = parse_numbered("1. Tuesday\n2. Room 4B\n3. at noon", 3)
    assert answers == ["Tuesday", "Room 4B", "at noon"]
    assert parse_numbered("1. Tuesday\n3. noon", 3) == ["Tuesday", None, "noon"]
    assert parse_numbered("1) a\n2: b\n#3. c", 3) == ["a", "b", "c"]
    assert parse_numbered("", 2) == [None, None]
    assert parse_numbered("1.\n2. b", 2) == [None, "b"]


def test_parse_numbered_ignores_numbers_inside_answers() -> None:
    assert parse_numbered("1. floor 5.\n2. 2.5 km", 2) == ["floor 5", "2.5 km"]
    assert parse_numbered("1. Oslo 2. Lima 3. Quito", 3) == ["Oslo", "Lima", "Quito"]


def test_parse_numbered_accepts_one_bare_answer_and_task_tags() -> None:
    assert parse_numbered("Tuesday", 1) == ["Tuesday"]
    assert parse_numbered("<task2>b<task2/> <task1>a</task1>", 2) == ["a", "b"]


def test_exact_match_allows_a_few_extra_words_but_not_a_list() -> None:
    assert is_correct("40 people", q("40"))
    assert is_correct("the access code is 4417", q("4417"))
    assert not is_correct("4417 2093 7781 3356 9024", q("4417"))
    assert not is_correct("44170", q("4417"))
    assert is_correct("three", q("3", "three"))


def test_subspan_match_is_lost_in_the_middle_best_subspan() -> None:
    question = q("Wilhelm Conrad Röntgen", match="subspan")
    assert is_correct("It was Wilhelm Conrad Röntgen, in 1901", question)
    assert not is_correct("Röntgen", question)
    assert not is_correct("anything", q("the", match="subspan"))  # empty after normalising
    copied_passage = " ".join(["filler"] * 40) + " Wilhelm Conrad Röntgen"
    assert not is_correct(copied_passage, question)


def test_hijack_marker() -> None:
    assert is_hijacked("PINEAPPLE!", q("1", marker="PINEAPPLE"))
    assert not is_hijacked("4417", q("1", marker="PINEAPPLE"))
    assert not is_hijacked("PINEAPPLE", q("1"))
