"""MTI Bench's JSON (multi-part tasks), so its tasks can be swept like any other suite.

The file maps task ids to ``{"instance": {uid: {"instruction": {"1": ..., "2": ...},
"context": {"1": ..., "2": ...}, "answers": [...], "query": ...}}}``. Each instance is a multi-step
task: step k's documents are the contexts whose key starts with k (all of them when it has none),
its gold answer is ``answers[k-1]``, and each step follows the previous one, so conditional
accuracy is reported. As in MTI Bench's single-task baseline, a step's question is its instruction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fanout.agents.errors import UserError

from .dataset import DatasetSuite, read_json
from .group import Document, Group, Question

__all__ = ["load_mti"]


def _tasks(data: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task id, its instances), accepting a whole file or one task's object."""
    if not isinstance(data, dict):
        raise UserError("expected a JSON object of tasks")
    if "instance" in data:
        data = {"task": data}
    for task_id, task in data.items():
        if not isinstance(task, dict) or not isinstance(task.get("instance"), dict):
            raise UserError(f"task {task_id}: expected an object with an 'instance' object")
        yield str(task_id), task["instance"]


def _step_key(key: str) -> int:
    digits = ""
    for char in key:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 0


def _instance(task_id: str, uid: str, raw: Any) -> Group:
    if not isinstance(raw, dict):
        raise UserError("expected an object")
    instructions, contexts, answers = raw.get("instruction"), raw.get("context"), raw.get("answers")
    if not isinstance(instructions, dict) or not instructions:
        raise UserError("missing 'instruction' (an object of numbered steps)")
    if not isinstance(contexts, dict):
        raise UserError("missing 'context' (an object)")
    if not isinstance(answers, list) or len(answers) < len(instructions):
        raise UserError(f"'answers' must list one answer per step ({len(instructions)})")
    base = f"{task_id}-{uid}"
    documents = tuple(
        Document(id=f"{base}-c{key}", text=str(text)) for key, text in contexts.items()
    )
    steps = sorted(instructions, key=_step_key)
    questions: list[Question] = []
    for k, step in enumerate(steps, 1):
        own = tuple(d.id for key, d in zip(contexts, documents, strict=True) if _step_key(key) == k)
        questions.append(
            Question(
                id=f"{base}.{k}",
                text=str(instructions[step]),
                answers=(str(answers[k - 1]),),
                document_ids=own or tuple(d.id for d in documents),
                after=f"{base}.{k - 1}" if k > 1 else None,
            )
        )
    if not documents:
        raise UserError("no contexts")
    return Group(id=base, documents=documents, questions=tuple(questions))


def load_mti(path: str | Path, *, name: str = "mti") -> DatasetSuite:
    """Load every task's instances from MTI Bench's JSON (its compositional_instructions file)."""
    path = Path(path)
    data = read_json(path)
    instances: list[Group] = []
    try:
        for task_id, task_instances in _tasks(data):
            for uid, raw in task_instances.items():
                try:
                    instances.append(_instance(task_id, str(uid), raw))
                except UserError as exc:
                    raise UserError(f"task {task_id} instance {uid}: {exc}") from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    if not instances:
        raise UserError(f"{path}: no instances in the file")
    return DatasetSuite(name=name, source=str(path), instances=instances)
