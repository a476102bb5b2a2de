"""Limits at enqueue: a payload's size and JSON, a user id's length; nothing stored past them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from jobsys import enqueue, enqueue_many
from jobsys.engine.dispatch import REPR_LIMIT, Dispatch, Why
from jobsys.engine.enqueue import MAX_USER_ID
from jobsys.engine.registry import registry
from jobsys.errors import OptionError, PayloadError
from tests.support.engine import ECHO, Engine


class Blob(BaseModel):
    value: Any = None


BLOB = dataclasses.replace(ECHO, kind="unit.blob", payload=Blob)
registry.add(BLOB)
LIMIT = 256 * 1024


def nothing_stored_or_published(engine: Engine) -> None:
    assert engine.store.calls == []
    assert engine.broker.take_all() == []


def test_a_payload_over_the_size_limit_is_refused_naming_the_limit(engine: Engine) -> None:
    # Given the default limit of 256 KiB, and a payload of just over it as JSON
    assert engine.rt.settings.max_payload_bytes == LIMIT
    big = {"value": "x" * (LIMIT - len('{"value": ""}') + 1)}
    assert len(json.dumps(big)) == LIMIT + 1

    # When it is enqueued, alone or in a batch
    with pytest.raises(PayloadError) as alone:
        enqueue(BLOB.kind, user_id="u1", payload=big, runtime=engine.rt)
    with pytest.raises(PayloadError) as batch:
        enqueue_many(BLOB.kind, [("u1", {"value": 1}), ("u2", big)], runtime=engine.rt)

    # Then the error names the size and the setting, and nothing was stored or published
    rule = f"payload: {LIMIT + 1} bytes as JSON, more than JOBSYS_MAX_PAYLOAD_BYTES={LIMIT} allows"
    assert alone.value.problems == [rule]
    assert batch.value.problems == [f"item 1: {rule}"]
    assert len(str(alone.value)) < 300
    nothing_stored_or_published(engine)
    # While a payload of exactly the limit is taken
    exact = {"value": "x" * (LIMIT - len('{"value": ""}'))}
    enqueue(BLOB.kind, user_id="u1", payload=exact, runtime=engine.rt)
    assert engine.store.calls == ["insert"]


def test_the_size_limit_is_a_setting(engine: Engine) -> None:
    # Given JOBSYS_MAX_PAYLOAD_BYTES=64
    engine.rt.settings = engine.rt.settings.model_copy(update={"max_payload_bytes": 64})
    # When a payload of 65 bytes is enqueued
    with pytest.raises(PayloadError, match="JOBSYS_MAX_PAYLOAD_BYTES=64"):
        enqueue(BLOB.kind, user_id="u1", payload={"value": "x" * 52}, runtime=engine.rt)
    nothing_stored_or_published(engine)


def test_a_payload_jsonb_refuses_is_a_payload_error(engine: Engine) -> None:
    # When a payload holds a NUL character, which PostgreSQL's jsonb cannot hold
    # (NaN cannot get this far: pydantic's JSON dump turns it into null)
    with pytest.raises(PayloadError) as caught:
        enqueue(BLOB.kind, user_id="u1", payload={"value": ["a\u0000b"]}, runtime=engine.rt)
    # Then the error says so, and nothing was stored
    assert caught.value.problems == [
        "payload: it holds a \\u0000 character, which jsonb cannot hold"
    ]
    nothing_stored_or_published(engine)


def test_a_user_id_over_the_length_limit_is_refused(engine: Engine) -> None:
    # When the user id is one character too long, alone or in a batch
    long = "u" * (MAX_USER_ID + 1)
    with pytest.raises(OptionError) as caught:
        enqueue(ECHO.kind, user_id=long, runtime=engine.rt)
    with pytest.raises(PayloadError, match=r"item 0: user_id must be at most 200 characters"):
        enqueue_many(ECHO.kind, [(long, {})], runtime=engine.rt)

    # Then the error names the field and the rule, and shows the value cut short
    assert caught.value.field == "user_id"
    assert "must be at most 200 characters (it has 201)" in str(caught.value)
    assert len(str(caught.value)) < 400
    nothing_stored_or_published(engine)
    # While 200 characters are taken
    enqueue(ECHO.kind, user_id="u" * MAX_USER_ID, runtime=engine.rt)
    assert engine.store.calls == ["insert"]


def test_a_bulk_message_shows_its_arguments_cut_short(engine: Engine) -> None:
    # Given a bulk dispatch with a long user id and a payload of 100 KB
    d = Dispatch(
        job_id=uuid.uuid4(),
        user_id="u" * MAX_USER_ID * 2,
        kind=BLOB.kind,
        queue="default",
        why=Why.BULK,
        payload={"value": "x" * 100_000},
    )

    # When it is prepared for the Redis transport
    (raw,) = engine.rt.dispatcher.prepare([d]).lists["default:9"]

    # Then its headers carry at most REPR_LIMIT characters of each argument's repr
    headers = json.loads(raw)["headers"]
    assert REPR_LIMIT == 256
    assert len(headers["argsrepr"]) == len(headers["kwargsrepr"]) == REPR_LIMIT
    assert headers["kwargsrepr"].startswith("{'value': 'xxx") and headers["kwargsrepr"].endswith(
        "..."
    )
