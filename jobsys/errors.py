"""Errors raised by jobsys.

Every error derives from :class:`JobsysError`::

    JobsysError
    ├── ConfigError              malformed or missing configuration
    ├── PayloadError             a payload failed its kind's schema (field, value, rule)
    ├── UnknownKindError         no job kind registered under that name
    ├── JobNotFoundError         no job (or dead letter) with that id
    ├── InvalidTransitionError   the job is not in a state that allows the action
    ├── DuplicateJobError        a live job with the same unique key exists
    └── StoreUnavailableError    PostgreSQL cannot be reached
"""

from __future__ import annotations

from typing import Any


class JobsysError(Exception):
    """Base of every jobsys error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross processes (a pool child to the worker's main process, inside
        # Celery's Reject): rebuild from message and fields, since subclasses'
        # constructors take other arguments than ``self.args``.
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[JobsysError], args: tuple[Any, ...], state: dict[str, Any]) -> JobsysError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(JobsysError):
    """Configuration is malformed or missing."""


class PayloadError(JobsysError, ValueError):
    """A payload does not match its job kind's schema."""

    def __init__(self, kind: str, problems: list[str]) -> None:
        self.kind = kind
        self.problems = problems
        super().__init__(f"invalid payload for {kind!r}: " + "; ".join(problems))


class UnknownKindError(JobsysError, ValueError):
    """No job kind is registered under the given name."""

    def __init__(self, kind: str, known: list[str]) -> None:
        self.kind = kind
        shown = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown job kind {kind!r} (registered: {shown})")


class JobNotFoundError(JobsysError, LookupError):
    """No job or dead letter has that id."""

    def __init__(self, what: str, ident: object) -> None:
        self.ident = ident
        super().__init__(f"no {what} with id {ident}")


class InvalidTransitionError(JobsysError):
    """The job's current status does not allow the requested action."""

    def __init__(self, job_id: object, status: str, action: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"job {job_id} is {status}; cannot {action}")


class DuplicateJobError(JobsysError):
    """A queued or running job already holds this unique key."""

    def __init__(
        self, kind: str, user_id: str, unique_key: str, existing_id: object = None
    ) -> None:
        self.unique_key = unique_key
        self.existing_id = existing_id
        super().__init__(
            f"a live {kind!r} job for user {user_id!r} already has unique_key {unique_key!r}"
        )


class StoreUnavailableError(JobsysError):
    """PostgreSQL could not be reached."""
