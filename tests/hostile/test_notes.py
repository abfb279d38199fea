"""Issue 17, class 9 (two items): the coordinator's notes say what happened to every finding.

A finding dropped as outranked or ungrounded is named in `result.notes` and `report()`, not only in
the CLI's table; and when every sub-agent failed, the notes say so instead of "No document answers".
"""

from fanout.agents.backend import CompletionRequest
from fanout.agents.errors import BackendUnavailable
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request

FAST = CallPolicy(max_attempts=1, backoff_initial_s=0.001, backoff_max_s=0.002)
NOTES = [
    Document(id="jade.txt", text="The access code for the jade chest is 1111."),
    Document(id="ruby.txt", text="The access code for the ruby chest is 2222."),
    Document(id="amber.txt", text="The access code for the amber chest is 3333."),
]


def test_outranked_and_ungrounded_findings_are_named_in_the_notes() -> None:
    notes = [
        NOTES[0],
        Document(
            id="ruby.txt",
            text="The access code for the jade chest is kept in the jade box. "
            "The ruby chest code is 2222.",
        ),
        NOTES[2],
    ]

    def extract(request: CompletionRequest) -> str:
        doc = request.tags["document_id"]
        if doc == "ruby.txt":  # a quote and an answer that are not in the ruby note
            return "9999\nEvidence: The access code for the jade chest is 9999."
        text = next(d.text for d in notes if d.id == doc)
        return f"{text.split()[-1].rstrip('.')}\nEvidence: {text}"

    result = Coordinator(ScriptedBackend(fn=extract)).run(
        Request(documents=notes, question="What is the access code for the jade chest?")
    )
    excluded = {a.document_id: a.excluded for a in result.answers}
    assert excluded == {"jade.txt": None, "ruby.txt": "ungrounded", "amber.txt": "outranked"}
    report = result.report()
    assert (
        "fanout: Not used (outranked by a finding that matches the question better): amber.txt"
        in report
    )
    assert (
        "fanout: Not used (neither its quote nor its answer is in the document): ruby.txt" in report
    )


def test_when_every_sub_agent_failed_the_notes_say_so() -> None:
    backend = ScriptedBackend(fn=lambda r: BackendUnavailable("HTTP 503: down"))
    result = Coordinator(backend, policy=FAST).run(Request(documents=NOTES, question="Who?"))
    assert not result.ok
    assert result.notes[0] == "Not answered: every sub-agent failed (3 of 3): Who?"
    assert not any("No document answers" in n for n in result.notes)
    for strategy in ("monolithic",):
        result = Coordinator(backend, policy=FAST, strategy=strategy).run(
            Request(documents=NOTES, question="Who?")
        )
        assert result.notes[0] == "Not answered: every sub-agent failed (1 of 1): Who?"


def test_some_failed_and_the_rest_abstained_says_the_answer_may_be_in_the_failed() -> None:
    def answer(request: CompletionRequest) -> str:
        if request.tags["document_id"] == "jade.txt":
            raise BackendUnavailable("HTTP 503: down")
        return "not found"

    result = Coordinator(ScriptedBackend(fn=answer), policy=FAST).run(
        Request(documents=NOTES, question="Who?")
    )
    assert result.notes[0] == (
        "No document answers: Who? (1 of 3 documents could not be asked: the answer may be in them)"
    )
