"""Job kinds: each a name, a payload schema, limits and a handler."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from jobsys.config import Settings
from jobsys.errors import PayloadError, UnknownKindError, shown

if TYPE_CHECKING:
    from jobsys.engine.runtime import Runtime

_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

Handler = Callable[..., Any]
# A concurrency key: a template formatted with ``user_id`` and the payload's fields
# ("gmail:{user_id}"), or a function of (user_id, validated payload).
KeyRule = str | Callable[[str, Any], str]
# How many jobs of one key may run or wait in the broker: a number, or a function of the
# settings read at each enqueue (the row keeps the value it gave).
Concurrency = int | Callable[[Settings], int]
MAX_CONCURRENCY = 10_000
# How a request joins the job of its kind already waiting for the user: the merged
# payload from (waiting, requested) payloads; True: the requested one wins.
Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
# What a payload's fields outside the kind's model become: refused by default (a
# misspelt option would otherwise run the job as if it had not been given).
ExtraFields = Literal["forbid", "ignore"]
# The one id a user is known by, from whatever identifies them (an id, an e-mail):
# jobs that several ways of naming a user must not split (runs, coalescing, quotas).
CanonicalUser = Callable[["Runtime", str], str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobSpec:
    """Everything the engine knows about one job kind."""

    kind: str
    handler: Handler
    payload: type[BaseModel] | None
    # None: the configured default, read when the job runs (not at import).
    max_attempts: int | None
    timeout: int | None
    soft_timeout: int | None
    queue: str
    priority: int = 0
    concurrency_key: KeyRule | None = None
    concurrency: Concurrency = 1
    coalesce: bool | Merge = False
    extra_fields: ExtraFields = "forbid"
    canonical_user: CanonicalUser | None = None
    # Seconds of postponing, from the first postponement, before the job is
    # dead-lettered; None: the settings' JOBSYS_MAX_POSTPONE.
    max_postpone: float | None = None
    # A step of a larger piece of work (a pipeline's phase): made by the system, not
    # by a client; the HTTP API refuses to enqueue it.
    internal: bool = False
    # Seconds from enqueue to success the kind's jobs should keep to (its SLA); None: none.
    deadline: float | None = None

    def merge(self, waiting: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        """The payload of a waiting job that a new request of the same kind joined."""
        if callable(self.coalesce):
            return self.dump(self.validate(self.coalesce(waiting, requested)))
        return requested

    def key_of(self, user_id: str, payload: BaseModel | None) -> str | None:
        """The job's concurrency key (None: the kind has none).

        Raises:
            PayloadError: the template names a field the payload lacks.
        """
        rule = self.concurrency_key
        if rule is None:
            return None
        if callable(rule):
            key = str(rule(user_id, payload))
        else:
            fields = payload.model_dump(mode="json") if payload is not None else {}
            try:
                key = rule.format(**{**fields, "user_id": user_id})
            except (KeyError, IndexError, AttributeError) as e:
                raise PayloadError(
                    self.kind, [f"concurrency_key {rule!r}: no field {e} to fill it from"]
                ) from None
        if not key:
            raise PayloadError(self.kind, [f"concurrency_key {rule!r} made an empty key"])
        return key

    def concurrency_of(self, settings: Settings) -> int:
        """The limit a new job of the kind's key is stored with (``concurrency`` may be
        a function of the settings).

        Raises:
            ValueError: the function gave something other than 1 to 10000.
        """
        if not callable(self.concurrency):
            return self.concurrency
        value = self.concurrency(settings)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.kind}: concurrency gave {value!r}, not an integer")
        try:
            _check_concurrency(value)
        except ValueError as e:
            raise ValueError(f"{self.kind}: {e}") from None
        return value

    def hard_limit(self, settings: Settings) -> int:
        return self.timeout if self.timeout is not None else settings.default_timeout

    def postpone_limit(self, settings: Settings) -> float:
        """Seconds the kind's jobs may go on being postponed, from the first postponement."""
        return self.max_postpone if self.max_postpone is not None else settings.max_postpone

    def attempts(self, settings: Settings) -> int:
        if self.max_attempts is not None:
            return self.max_attempts
        return settings.default_max_attempts

    def validate(self, payload: Mapping[str, Any] | BaseModel | None) -> BaseModel | None:
        """Check a payload against the kind's schema.

        Raises:
            PayloadError: naming each field, value and rule that failed.
        """
        if self.payload is None:
            if payload:
                raise PayloadError(self.kind, ["this kind takes no payload"])
            return None
        if isinstance(payload, self.payload):
            return payload
        data = dict(payload or {})
        unknown = self._unknown_fields(self.payload, data)
        try:
            valid = self.payload.model_validate(data)
        except ValidationError as e:
            raise PayloadError(self.kind, _problems(e) + unknown) from e
        if unknown:
            raise PayloadError(self.kind, unknown)
        return valid

    def _unknown_fields(self, model: type[BaseModel], data: Mapping[str, Any]) -> list[str]:
        """One problem per field the model does not declare, when the kind forbids them.

        A model whose own config sets ``extra`` decides for itself (pydantic then
        refuses, drops or keeps them).
        """
        if self.extra_fields != "forbid" or "extra" in model.model_config:
            return []
        known = set(model.model_fields)
        for field in model.model_fields.values():
            known.update(a for a in (field.alias, field.validation_alias) if isinstance(a, str))
        names = ", ".join(sorted(model.model_fields)) or "none"
        return [
            f"{name}: unknown field (got {shown(value)}; the payload's fields: {names})"
            for name, value in data.items()
            if name not in known
        ]

    def dump(self, payload: BaseModel | None) -> dict[str, Any]:
        return payload.model_dump(mode="json") if payload is not None else {}

    def call(self, ctx: Any, payload: Mapping[str, Any] | BaseModel | None) -> Any:
        """Validate the payload and run the handler with it.

        Raises:
            PayloadError: the payload does not match the kind's schema.
        """
        valid = self.validate(payload)
        return self.handler(ctx, valid) if self.payload is not None else self.handler(ctx)


def _problems(error: ValidationError) -> list[str]:
    out = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "payload"
        out.append(f"{field}: {item['msg']} (got {shown(item.get('input'))})")
    return out


def check_spec(spec: JobSpec) -> None:
    """Reject a kind whose declaration cannot work.

    Raises:
        ValueError: naming the field and the rule it breaks.
    """
    if not _KIND.match(spec.kind):
        raise ValueError(f"kind {spec.kind!r} must be dotted lowercase words, e.g. 'photos.resize'")
    if spec.max_attempts is not None and spec.max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {spec.max_attempts}")
    for name, value in (("timeout", spec.timeout), ("soft_timeout", spec.soft_timeout)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1 second, got {value}")
    if not callable(spec.concurrency):
        _check_concurrency(spec.concurrency)
    if spec.max_postpone is not None and not spec.max_postpone > 0:
        raise ValueError(
            f"max_postpone must be a positive number of seconds, got {spec.max_postpone}"
        )
    if spec.deadline is not None and not spec.deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds, got {spec.deadline}")
    if spec.extra_fields not in get_args(ExtraFields):
        choices = " or ".join(repr(c) for c in get_args(ExtraFields))
        raise ValueError(f"extra_fields must be {choices}, got {spec.extra_fields!r}")
    if spec.timeout and spec.soft_timeout and spec.soft_timeout > spec.timeout:
        raise ValueError(
            f"soft_timeout ({spec.soft_timeout}) must be positive and at most timeout "
            f"({spec.timeout})"
        )


def _check_concurrency(value: int) -> None:
    if value < 1 or value > MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be from 1 to {MAX_CONCURRENCY}, got {value}")


class Registry:
    """The job kinds this process knows."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def add(self, spec: JobSpec) -> None:
        check_spec(spec)
        self._specs[spec.kind] = spec

    def get(self, kind: str) -> JobSpec:
        try:
            return self._specs[kind]
        except KeyError:
            raise UnknownKindError(kind, list(self._specs)) from None

    def kinds(self) -> list[str]:
        return sorted(self._specs)

    def queues(self) -> set[str]:
        return {s.queue for s in self._specs.values()}


registry = Registry()


def keyed(kind: str) -> bool:
    """Whether the kind's jobs have a concurrency key (False for a kind this process
    lacks: a sweeper or node that does not import it treats its jobs as unkeyed)."""
    try:
        return registry.get(kind).concurrency_key is not None
    except UnknownKindError:
        return False
