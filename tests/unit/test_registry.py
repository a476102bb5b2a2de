from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ConfigDict, Field

from jobsys import PayloadError, UnknownKindError
from jobsys.config import Settings
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


def test_a_concurrency_key_is_made_from_the_user_and_the_payload() -> None:
    payload = Resize(photo_id=7)
    assert spec(concurrency_key="photos:{user_id}").key_of("u1", payload) == "photos:u1"
    assert spec(concurrency_key="p{photo_id}w{width}").key_of("u1", payload) == "p7w100"
    by_function = spec(concurrency_key=lambda user, p: f"{user}/{p.photo_id % 2}")
    assert by_function.key_of("u9", payload) == "u9/1"
    assert spec().key_of("u1", payload) is None


def test_a_key_template_naming_no_field_or_making_nothing_is_a_payload_error() -> None:
    wanted = re.escape("concurrency_key 'a:{album}': no field 'album'")
    with pytest.raises(PayloadError, match=wanted):
        spec(concurrency_key="a:{album}").key_of("u1", Resize(photo_id=1))
    with pytest.raises(PayloadError, match="made an empty key"):
        spec(concurrency_key=lambda user, p: "").key_of("u1", Resize(photo_id=1))


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_a_concurrency_out_of_range_is_refused_at_declaration(limit: int) -> None:
    with pytest.raises(ValueError, match=f"concurrency must be from 1 to 10000, got {limit}"):
        check_spec(spec(concurrency_key="k", concurrency=limit))


def test_a_concurrency_from_the_settings_is_read_for_each_enqueue() -> None:
    # Given a kind whose concurrency is the settings' per-user ingestion limit
    keyed = spec(concurrency_key="k", concurrency=lambda s: s.ingest_user_concurrency)
    check_spec(keyed)

    # Then each set of settings gives its own value
    assert keyed.concurrency_of(Settings(ingest_user_concurrency=1)) == 1
    assert keyed.concurrency_of(Settings(ingest_user_concurrency=3)) == 3
    assert spec(concurrency_key="k", concurrency=4).concurrency_of(Settings()) == 4


@pytest.mark.parametrize("value", [0, 10_001, "2", True])
def test_a_concurrency_function_giving_a_bad_value_is_refused(value: object) -> None:
    keyed = spec(concurrency_key="k", concurrency=lambda s: value)
    with pytest.raises(ValueError, match="concurrency"):
        keyed.concurrency_of(Settings())


def test_an_unknown_field_is_refused_naming_it_and_the_known_fields() -> None:
    # When a payload holds a field the model does not declare (a misspelt option)
    with pytest.raises(PayloadError) as caught:
        spec().validate({"photo_id": 7, "widht": 50})
    # Then the error names the field, its value and the fields the payload has
    (problem,) = caught.value.problems
    assert problem.startswith("widht: unknown field (got 50")
    assert "photo_id, width" in problem
    # And alongside a broken rule, both are reported
    with pytest.raises(PayloadError) as both:
        spec().validate({"photo_id": 0, "colour": "red"})
    assert [p.split(":")[0] for p in both.value.problems] == ["photo_id", "colour"]


def test_a_kind_or_its_model_may_take_unknown_fields() -> None:
    # Given a kind that opts out, and a model whose own config keeps extra fields
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        photo_id: int

    ignoring, keeping = spec(extra_fields="ignore"), spec(payload=Open)
    # Then the first drops unknown fields and the second keeps them
    assert ignoring.dump(ignoring.validate({"photo_id": 7, "x": 1})) == {
        "photo_id": 7,
        "width": 100,
    }
    assert keeping.dump(keeping.validate({"photo_id": 7, "x": 1})) == {"photo_id": 7, "x": 1}


def test_a_field_given_by_its_alias_is_known() -> None:
    class Aliased(BaseModel):
        photo_id: int = Field(alias="photoId")

    assert spec(payload=Aliased).validate({"photoId": 3}) == Aliased(photoId=3)


def test_extra_fields_takes_only_forbid_or_ignore() -> None:
    with pytest.raises(ValueError, match="extra_fields must be 'forbid' or 'ignore', got 'allow'"):
        check_spec(spec(extra_fields="allow"))


def test_a_huge_value_is_shown_cut_short_in_the_error() -> None:
    with pytest.raises(PayloadError) as caught:
        spec().validate({"photo_id": "x" * 100_000})
    assert len(str(caught.value)) < 500
    assert "(100002 characters)" in str(caught.value)


@pytest.mark.parametrize("limit", [0, -1.0, float("nan")])
def test_max_postpone_must_be_positive(limit: float) -> None:
    with pytest.raises(ValueError, match="max_postpone must be a positive number of seconds"):
        check_spec(spec(max_postpone=limit))
