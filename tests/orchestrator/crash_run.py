"""A run killed with SIGKILL by test_resume.py: 10 slow sub-agents, checkpointed to argv[1].

Every backend call that completes appends its sub-agent id to argv[3], so the test can count exactly
which sub-agents were computed in each process.
"""

import sys

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request
from fanout.orchestrator.checkpoint import open_checkpoint


def answer(request: CompletionRequest) -> str:
    with open(sys.argv[3], "a") as log:
        log.write(request.tags["sub_agent_id"] + "\n")
    return f"answer from {request.tags['document_id']}"


def main() -> None:
    db, run_id = sys.argv[1], sys.argv[2]
    documents = tuple(Document(id=f"d{i}.md", text=f"text {i}") for i in range(10))
    saved = open_checkpoint(db)
    coordinator = Coordinator(
        ScriptedBackend(fn=answer, delay_s=float(sys.argv[4])),
        synthesis="collect",
        policy=CallPolicy(max_concurrency=2),
        checkpointer=saved.checkpointer,
        result_store=saved.result_store,
    )
    result = coordinator.run(Request(documents=documents, question="Q"), run_id=run_id)
    sys.stdout.write(result.model_dump_json())


main()
