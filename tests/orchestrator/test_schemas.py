import json

import pytest
from pydantic import ValidationError

from fanout.agents.errors import UserError
from fanout.orchestrator._schemas import load_output_schema, model_from_json_schema
from tests.conftest import EXAMPLES

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "level": {"enum": ["low", "high"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "office": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "note": {"type": ["string", "null"]},
    },
    "required": ["name", "level"],
}


def test_a_json_schema_file_validates_answers_and_is_sent_as_written() -> None:
    model = model_from_json_schema(SCHEMA)
    assert model.model_json_schema() == SCHEMA
    ok = model.model_validate_json('{"name": "Ana", "level": "high", "office": {"city": "Porto"}}')
    assert ok.model_dump()["office"] == {"city": "Porto"}
    for bad in (
        '{"level": "high"}',  # required name missing
        '{"name": "Ana", "level": "medium"}',  # not in the enum
        '{"name": "Ana", "level": "low", "tags": [1, {}]}',  # items must be strings
        '{"name": "Ana", "level": "low", "office": {}}',  # nested required field
    ):
        with pytest.raises(ValidationError):
            model.model_validate_json(bad)


def test_the_example_schemas_agree() -> None:
    from_file = load_output_schema(str(EXAMPLES / "schemas" / "contact.json"))
    answer = '{"name": "Tom Becker", "role": "account manager"}'
    assert from_file.model_validate_json(answer).model_dump() == json.loads(answer)
    assert from_file.model_json_schema()["required"] == ["name", "role"]


def test_a_schema_that_is_not_an_object_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "list.json"
    path.write_text('{"type": "array"}')
    with pytest.raises(UserError, match="must be"):
        load_output_schema(str(path))
