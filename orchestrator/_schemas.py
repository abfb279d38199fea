"""The output schema a run's sub-agents must answer in, named on the command line.

``output_schema="module:Model"`` (``--output-schema``) imports a pydantic model; ``--output-schema file.json`` reads a
JSON Schema. A file's schema is sent to the model exactly as written (a grammar on llama.cpp,
``response_format`` on servers), and answers are validated by a pydantic model built from it: the
common keywords (type, properties, required, items, enum) are checked, others are left to the
model's constrained decoding.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, create_model

from fanout.agents.errors import UserError

__all__ = ["load_output_schema", "model_from_json_schema"]

_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


class _SchemaModel(BaseModel):
    """A model built from a JSON Schema file: its schema is the file's, word for word."""

    model_config = ConfigDict(extra="allow")
    source_schema: ClassVar[dict[str, Any]] = {}

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema as written in the file, not pydantic's rendering of the model built from it."""
        return cls.source_schema


def _python_type(schema: dict[str, Any], name: str) -> Any:
    if schema.get("enum"):
        return Literal[tuple(schema["enum"])]
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        types = [_python_type({**schema, "type": k}, name) for k in kind]
        union = types[0]
        for t in types[1:]:
            union = union | t
        return union
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        items = schema.get("items")
        return list[_python_type(items, f"{name}Item") if isinstance(items, dict) else Any]  # type: ignore[misc]
    if kind == "object" and isinstance(schema.get("properties"), dict):
        return _object_model(schema, name, base=BaseModel)
    if kind == "object":
        return dict[str, Any]
    return Any  # anyOf, $ref, ...: left to the model's constrained decoding


def _object_model(schema: dict[str, Any], name: str, *, base: type[BaseModel]) -> type[BaseModel]:
    required = set(schema.get("required", []))
    fields: dict[str, Any] = {}
    for prop, sub in schema["properties"].items():
        if not isinstance(sub, dict):
            raise UserError(f"output schema property '{prop}' is not an object")
        kind = _python_type(sub, f"{name}_{prop}")
        fields[prop] = (kind, ...) if prop in required else (kind | None, None)
    return create_model(name, __base__=base, **fields)


def model_from_json_schema(schema: dict[str, Any], name: str = "Output") -> type[BaseModel]:
    """A pydantic model that validates answers against `schema` (an object schema).

    Raises:
        UserError: the schema does not describe a JSON object with properties.
    """
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise UserError('the output schema must be {"type": "object", "properties": {...}}')
    title = schema.get("title")
    model = _object_model(
        schema,
        title if isinstance(title, str) and title.isidentifier() else name,
        base=_SchemaModel,
    )
    model.source_schema = schema  # type: ignore[attr-defined]
    return model


def _from_file(path: Path) -> type[BaseModel]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read output schema {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"output schema {path} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise UserError(f"output schema {path} is not a JSON object")
    return model_from_json_schema(schema, name=path.stem.title().replace("-", "").replace("_", ""))


def _from_module(spec: str) -> type[BaseModel]:
    module_name, _, attribute = spec.partition(":")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` would find a module of this project
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name}: {exc}", parameter="output_schema") from None
    model = getattr(module, attribute, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise UserError(f"{spec} is not a pydantic model (a BaseModel subclass)")
    return model


def load_output_schema(spec: str) -> type[BaseModel]:
    """A pydantic model from ``module:Model`` or from a JSON Schema file (``.json``).

    Raises:
        UserError: missing file, bad JSON, an import that fails, or not a model.
    """
    path = Path(spec)
    if spec.endswith(".json") or path.is_file():
        return _from_file(path)
    if ":" not in spec:
        raise UserError(
            f"takes module:Model or a JSON Schema file, not '{spec}'", parameter="output_schema"
        )
    return _from_module(spec)
