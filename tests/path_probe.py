"""Measures the path from ``fanout run`` to the first backend call, for CONTRIBUTING's figures.

Run as a script (``python -m tests.path_probe``): it answers a question over two notes on the
embedded model and records, from `fanout run`'s entry to the first ``LlamaCppBackend.complete``,
every fanout source file whose functions ran, the files through which the question passed (an
argument holding it), and the types that carried it (a TypedDict of the graph's state counted by
its declared name, a list by what it holds). It prints them as JSON on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import threading
import typing
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCES = tuple(str(ROOT / d) for d in ("agents", "orchestrator", "evals", "fanout"))
QUESTION = "Who is the account manager of the northwind account?"


def _carries(value: object, depth: int = 0) -> bool:
    if depth > 4:
        return False
    if isinstance(value, str):
        return QUESTION in value
    if isinstance(value, dict):
        return any(_carries(v, depth + 1) for v in list(value.values())[:50])
    if isinstance(value, list | tuple):
        return any(_carries(v, depth + 1) for v in value[:50])
    fields = getattr(type(value), "model_fields", None)
    if fields is not None:
        return any(_carries(getattr(value, f, None), depth + 1) for f in fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(
            _carries(getattr(value, f.name, None), depth + 1) for f in dataclasses.fields(value)
        )
    request = getattr(value, "_request", None)  # a context: its request is a private field
    return request is not None and _carries(request, depth + 1)


def _label(value: object) -> str:
    kind = type(value)
    if kind is dict:
        return _typed_dict(typing.cast(dict[str, Any], value))
    if kind in (list, tuple):
        inner = next((x for x in typing.cast(Any, value) if _carries(x)), None)
        if inner is not None:
            return _label(inner)
    return kind.__name__ if kind.__module__ == "builtins" else kind.__qualname__


def _typed_dict(value: dict[str, Any]) -> str:
    """The smallest declared TypedDict of the graph state whose keys hold these."""
    import fanout.orchestrator.state as state

    fits = []
    for name in dir(state):
        cls = getattr(state, name)
        if isinstance(cls, type) and issubclass(cls, dict) and hasattr(cls, "__annotations__"):
            keys: set[str] = set()
            for base in cls.__mro__:
                keys |= set(getattr(base, "__annotations__", {}))
            if set(value) <= keys:
                fits.append((len(keys), name))
    return min(fits)[1] if fits else "dict"


def measure() -> dict[str, Any]:
    """Run ``fanout run`` once and record the path to its first model call."""
    files: dict[str, None] = {}
    passing: dict[str, None] = {}
    carriers: dict[str, None] = {}
    started, done = threading.Event(), threading.Event()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if done.is_set() or event != "call":
            return
        code = frame.f_code
        if not code.co_filename.startswith(SOURCES) or code.co_name == "<module>":
            return
        rel = str(Path(code.co_filename).relative_to(ROOT))
        if rel == "fanout/cli.py" and code.co_name == "run_command":
            started.set()
        if not started.is_set() or rel == "agents/testing.py":
            return
        files.setdefault(rel)
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        for name in names:
            value = frame.f_locals.get(name)
            if value is not None and _carries(value):
                carriers.setdefault(_label(value))
                passing.setdefault(rel)
        if code.co_name == "complete" and rel == "agents/llama_cpp.py":
            done.set()

    docs = Path(tempfile.mkdtemp())
    (docs / "northwind.md").write_text(
        "Northwind supplies oats. The account manager is Priya Shah.\n"
    )
    (docs / "harbor.md").write_text("Harbor sells granules. The account manager is Tom Becker.\n")
    from fanout.cli import main

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        main(["run", str(docs), "-q", QUESTION, "--json"])
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    types = list(carriers)
    return {
        "files": list(files),
        "files_the_question_passes": list(passing),
        "types": types,
        "type_changes": len(types) - 1,
    }


if __name__ == "__main__":
    result = measure()
    sys.stdout.write(json.dumps(result) + "\n")
