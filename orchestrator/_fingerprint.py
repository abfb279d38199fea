"""What a stored result answered: the settings of a run, and a content key per sub-task.

A stored result may only stand in for a new computation of the same thing. Results were keyed by
(run id, sub-agent id) alone, so a document edited between runs, another question, or another
model under the same run id got the old answer back without a model call. A sub-task's content key
hashes what its answer depends on: the document text it reads, the task, the prompt it is given,
the model and the settings. A resume with other settings is refused, naming what changed; a
result-store entry with another key is ignored (computed again).

Not covered: the code of your own sub-agent beyond its name, and a model served under an unchanged
name and address (a server that swapped its weights).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fanout.agents._fleet import redact_url
from fanout.agents.backend import Backend, PromptStyle
from fanout.agents.subagent import task_prompt
from fanout.agents.task import SubTask

from .request import Request

__all__ = ["describe_request_change", "run_settings", "settings_change", "sub_task_key"]


def _model(backend: Backend) -> str:
    """The model as the results depend on it: its kind, name, file and endpoints."""
    parts = [type(backend).__name__, backend.name]
    for attribute in ("primary", "fallback", "inner"):
        wrapped = getattr(backend, attribute, None)
        if wrapped is not None and wrapped is not backend:
            parts.append(f"{attribute}=({_model(wrapped)})")
    path = getattr(backend, "model_path", None)
    if isinstance(path, str | os.PathLike):
        file = Path(path)
        size = file.stat().st_size if file.exists() else -1
        parts.append(f"file={file.name} ({size} bytes)")
    urls = getattr(backend, "base_urls", None)
    if urls:
        parts.append("at " + ",".join(redact_url(u) for u in urls))  # never a credential
    endpoint = getattr(backend, "endpoint", None)
    if isinstance(endpoint, str):
        parts.append(f"endpoint={endpoint}")
    return " ".join(parts)


def _callable_name(fn: object) -> str:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_settings(
    *,
    backend: Backend,
    max_tokens: int,
    output_schema: type[BaseModel] | None,
    sub_agent: object,
    strategy: str,
    synthesis: str,
    chunking: str,
) -> dict[str, str]:
    """The settings a run's results depend on, by name (a resume must agree on every one)."""
    schema = output_schema.model_json_schema() if output_schema is not None else None
    return {
        "model": _model(backend),
        "prompt style": backend.prompt_style,
        "max tokens": str(max_tokens),
        "output schema": "none" if schema is None else _digest(schema)[:16],
        "sub-agent": _callable_name(sub_agent),
        "prompts": _digest(task_prompt(_PROBE, style=backend.prompt_style).model_dump())[:16],
        "strategy": strategy,
        "synthesis": synthesis,
        "chunking": chunking,
    }


_PROBE = SubTask(id="probe", document_id="probe.md", task="probe", context="probe")
"""A fixed sub-task whose rendered prompt changes whenever fanout's prompt wording does."""


def settings_change(stored: dict[str, str], now: dict[str, str]) -> str | None:
    """The first setting that differs, in words, or None when they agree."""
    for name, value in stored.items():
        if name in now and now[name] != value:
            return f"{name} {value!r}, not {now[name]!r}"
    return None


def sub_task_key(settings: dict[str, str], task: SubTask, style: PromptStyle) -> str:
    """A sub-task's content key: its text, task, prompt, the model and the settings."""
    relevant = {k: v for k, v in settings.items() if k not in ("strategy", "synthesis")}
    return _digest(
        {
            "settings": relevant,
            "document": task.document_id,
            "chunk": [task.chunk_index, task.n_chunks, task.start, task.end],
            "task": [task.task_index, task.task],
            "prompt": _digest(task_prompt(task, style=style).model_dump()),  # holds the context
        }
    )


def describe_request_change(stored: Request, now: Request) -> str:
    """What differs between the request a run was started with and this one, in words."""
    old = {d.id: d.text for d in stored.documents}
    new = {d.id: d.text for d in now.documents}
    if added := [i for i in new if i not in old]:
        return f"document {added[0]!r} was not part of it"
    if removed := [i for i in old if i not in new]:
        return f"document {removed[0]!r} is missing"
    if changed := [i for i in new if new[i] != old[i]]:
        return f"document {changed[0]!r} has changed"
    if stored.question != now.question:
        return "the question has changed"
    if stored.instructions != now.instructions:
        return "the instructions have changed"
    return "its settings differ (order of documents, pairing)"
