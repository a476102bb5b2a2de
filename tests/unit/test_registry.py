from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from jobsys import PayloadError, UnknownKindError
from jobsys.engine.registry import JobSpec, Registry, check_spec


class Resize(BaseModel):
    photo_id: int = Field(ge=1)
    width: int = 100


def spec(**changes: object) -> JobSpec:
    values: dict[str, object] = {
        "kind": "photos.resize",
        "handler": lambda ctx, p: None,
        "payload": Resize,
        "max_attempts": 5,
        "timeout": 180,
        "soft_timeout": 150,
        "queue": "default",
    }
    values.update(changes)
    return JobSpec(**values)  # type: ignore[arg-type]


def test_valid_payload_is_parsed_with_defaults() -> None:
    assert spec().dump(spec().validate({"photo_id": 7})) == {"photo_id": 7, "width": 100}


def test_invalid_payload_names_field_value_and_rule() -> None:
    # When a payload breaks the schema
    with pytest.raises(PayloadError) as caught:
        spec().validate({"photo_id": "seven"})
    # Then the error names the kind, the field, the value and the rule
    text = str(caught.value)
    assert "photos.resize" in text
    assert "photo_id" in text
    assert "'seven'" in text
    assert "integer" in text


def test_missing_field_and_rule_violation_are_both_reported() -> None:
    with pytest.raises(PayloadError) as caught:
        spec().validate({"width": "x"})
    assert len(caught.value.problems) == 2


def test_kind_without_model_rejects_a_payload() -> None:
    with pytest.raises(PayloadError, match="takes no payload"):
        spec(payload=None).validate({"a": 1})


def test_unknown_kind_lists_known_kinds() -> None:
    registry = Registry()
    registry.add(spec())
    with pytest.raises(UnknownKindError, match=r"'nope'.*photos\.resize"):
        registry.get("nope")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "Photos Resize"}, "dotted lowercase"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"soft_timeout": 200}, "soft_timeout"),
        ({"soft_timeout": 0}, "soft_timeout"),
    ],
)
def test_bad_declarations_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_spec(spec(**changes))
