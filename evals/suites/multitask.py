"""The multitask suite: one text, K instructions with exact answers (MTI multi-part style).

N here is the number of instructions asked about the same profile. The instructions form one
multi-part task in order, so besides plain accuracy the report gives conditional accuracy (a part
counts only when every earlier part was right), as MTI Bench does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fanout.agents.errors import UserError

from .filler import filler
from .group import Document, Group, Question

__all__ = ["ATTRIBUTES", "MultitaskSuite"]

_PEOPLE = (
    "Alma Reyes", "Bruno Keller", "Chiara Russo", "Dmitri Volkov", "Elif Kaya", "Farid Haddad",
    "Greta Lind", "Hugo Martin", "Ines Duarte", "Jonas Berg", "Keiko Sato", "Lars Nilsen",
)  # fmt: skip

# (fact template, question template, possible values); {p} is the person.
ATTRIBUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("{p} lives in {v}.", "In which city does {p} live?",
     ("Lisbon", "Oslo", "Tunis", "Quito", "Hanoi", "Perth")),
    ("{p} works as a {v}.", "What is {p}'s job?",
     ("baker", "pilot", "plumber", "librarian", "surveyor", "dentist")),
    ("{p} was born in {v}.", "In which year was {p} born?",
     ("1971", "1978", "1983", "1986", "1990", "1994")),
    ("{p} owns a dog named {v}.", "What is the name of {p}'s dog?",
     ("Biscuit", "Pepper", "Rufus", "Mango", "Ziggy", "Olive")),
    ("{p}'s car is {v}.", "What color is {p}'s car?",
     ("red", "green", "yellow", "black", "blue", "grey")),
    ("{p} plays the {v}.", "Which instrument does {p} play?",
     ("cello", "banjo", "flute", "trumpet", "harp", "drums")),
    ("{p}'s favourite fruit is the {v}.", "What is {p}'s favourite fruit?",
     ("mango", "plum", "pear", "fig", "kiwi", "apricot")),
    ("{p} has {v} siblings.", "How many siblings does {p} have?",
     ("two", "three", "four", "five", "six", "seven")),
    ("{p} speaks {v} at home.", "Which language does {p} speak at home?",
     ("Portuguese", "Finnish", "Greek", "Turkish", "Dutch", "Polish")),
    ("{p}'s best friend is called {v}.", "What is the name of {p}'s best friend?",
     ("Nadia", "Tomas", "Priya", "Oscar", "Leila", "Viktor")),
    ("{p} studied {v} at university.", "What did {p} study at university?",
     ("geology", "law", "chemistry", "history", "music", "nursing")),
    ("{p}'s apartment is on floor {v}.", "On which floor is {p}'s apartment?",
     ("3", "5", "7", "9", "11", "12")),
    ("{p} supports the {v} football club.", "Which football club does {p} support?",
     ("Rovers", "Wanderers", "Albion", "Athletic", "United", "Rangers")),
    ("{p} got married in {v}.", "In which month did {p} get married?",
     ("March", "June", "August", "October", "November", "May")),
    ("{p} grows {v} on the balcony.", "What does {p} grow on the balcony?",
     ("tomatoes", "basil", "chillies", "lavender", "mint", "strawberries")),
    ("{p}'s phone number ends in {v}.", "What does {p}'s phone number end in?",
     ("4417", "2093", "7781", "3356", "9024", "6610")),
    ("{p} goes on holiday to {v} every summer.", "Where does {p} go on holiday every summer?",
     ("Iceland", "Morocco", "Chile", "Japan", "Croatia", "Kenya")),
    ("{p}'s lucky number is {v}.", "What is {p}'s lucky number?",
     ("8", "13", "21", "27", "42", "64")),
    ("{p} drinks {v} every morning.", "What does {p} drink every morning?",
     ("green tea", "espresso", "cocoa", "orange juice", "mate", "chai")),
    ("{p} collects {v}.", "What does {p} collect?",
     ("stamps", "coins", "vinyl records", "postcards", "seashells", "old maps")),
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MultitaskSuite:
    """One profile of a fictional person, N questions about it."""

    doc_tokens: int = 120
    """Filler added to the profile, besides its N facts."""
    name: str = "multitask"
    """Suite name in reports."""

    @property
    def source(self) -> str:
        """The generator's settings."""
        return f"synthetic (profile + {self.doc_tokens} tokens of filler)"

    def check(self, n: int, groups: int) -> None:
        """N is bounded by the number of attributes a profile can hold."""
        if n > len(ATTRIBUTES):
            raise UserError(f"multitask asks at most {len(ATTRIBUTES)} questions per text, not {n}")

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """One profile with N facts among filler; question k asks for fact k, after question k-1."""
        self.check(n, 1)
        rng = random.Random(f"{self.name}/{seed}/{n}/{index}")
        person = rng.choice(_PEOPLE)
        chosen = rng.sample(ATTRIBUTES, n)
        facts: list[str] = []
        questions: list[Question] = []
        for k, (fact, question, values) in enumerate(chosen, 1):
            value = rng.choice(values)
            facts.append(fact.format(p=person, v=value))
            questions.append(
                Question(
                    id=f"q{k}",
                    text=question.format(p=person),
                    answers=(value,),
                    document_ids=("profile",),
                    after=f"q{k - 1}" if k > 1 else None,
                )
            )
        sentences = filler(rng, self.doc_tokens) + facts
        rng.shuffle(sentences)
        return Group(
            id=f"{self.name}-n{n}-g{index}-s{seed}",
            documents=(Document(id="profile", text=" ".join(sentences)),),
            questions=tuple(questions),
            metadata={"person": person},
        )
