"""Errors raised by jobsys.

Everything jobsys raises derives from :class:`JobsysError`::

    JobsysError                      reason, retryable, retry_after (below)
    ├── ConfigError                  malformed or missing configuration
    │   └── JobModuleError           a module JOBSYS_IMPORTS names cannot be imported
    ├── PayloadError                 a payload failed its kind's schema (each item, field, rule)
    ├── OptionError                  an enqueue option breaks its rule (user_id, priority, delay)
    ├── UnknownKindError             no job kind registered under that name
    ├── JobNotFoundError             no job (or dead letter) with that id
    ├── InvalidTransitionError       the job is not in a state that allows the action
    ├── DuplicateJobError            a live job with the same unique key exists
    ├── DuplicateUserError           a user with that e-mail exists
    ├── RunMismatchError             a job named a pipeline run its user does not own
    ├── UnstorableError              a result PostgreSQL's jsonb refuses (NaN, \\u0000, an object)
    ├── StoreUnavailableError        PostgreSQL cannot be reached
    ├── JobError                     raised by a handler to say how its failure is treated
    ├── JobCancelled                 the job was cancelled (raised inside its handler)
    ├── JobPostponed                 run again later without spending an attempt
    ├── JobDeadError                 ``result.get()`` of a job that was dead-lettered
    ├── Refused (jobsys.guards)      a guard said not yet (key, retry_after)
    │   ├── RateLimited              quota units spent
    │   ├── BreakerOpen              a circuit breaker is open
    │   └── Throttled                every concurrency slot is held
    └── GoogleError (jobsys.connectors.google.errors)
        ├── AuthError                401, 403 other than quota, refresh refused
        ├── QuotaError               429, 403 quota reasons
        ├── ExpiredCursorError       Gmail history 404, Calendar 410
        ├── TransientError           5xx, timeouts, connection errors
        ├── NotFoundError            an item is gone
        └── RequestError             any other 4xx

Every error carries the three fields the engine reads to decide what becomes
of a failed attempt: ``reason`` (a short classification stored with the
attempt and in the dead letter), ``retryable`` (whether another attempt may
succeed) and ``retry_after`` (seconds to wait instead of the backoff, or
None). Subclasses set them as class attributes or per instance.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar


class JobsysError(Exception):
    """Base of every jobsys error."""

    reason: str = "error"
    retryable: bool = False
    retry_after: float | None = None

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


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error names a value, not a megabyte."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class ConfigError(JobsysError):
    """Configuration is malformed or missing."""

    reason = "config"


class JobModuleError(ConfigError, ImportError):
    """A module of job kinds (``JOBSYS_IMPORTS`` or ``--import``) cannot be imported."""

    def __init__(self, module: str, cause: ImportError) -> None:
        self.module = module
        super().__init__(
            f"cannot import job module: {cause} ({module!r}, named by JOBSYS_IMPORTS or --import)"
        )


class PayloadError(JobsysError, ValueError):
    """A payload does not match its job kind's schema.

    ``problems`` holds one line per failed rule; in a batch each names its
    item by index (``item 3: key: ...``).
    """

    reason = "bad_input"

    def __init__(self, kind: str, problems: list[str]) -> None:
        self.kind = kind
        self.problems = problems
        super().__init__(f"invalid payload for {kind!r}: " + "; ".join(problems))


class OptionError(JobsysError, ValueError):
    """An enqueue option (``user_id``, ``priority``, ``delay``, ...) breaks its rule."""

    reason = "bad_input"

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field} {rule}, got {shown(value)}")


class UnknownKindError(JobsysError, ValueError):
    """No job kind is registered under the given name."""

    reason = "unknown_kind"

    def __init__(self, kind: str, known: list[str]) -> None:
        self.kind = kind
        shown = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown job kind {kind!r} (registered: {shown})")


class JobNotFoundError(JobsysError, LookupError):
    """No job or dead letter has that id."""

    reason = "not_found"

    def __init__(self, what: str, ident: object) -> None:
        self.ident = ident
        # An empty or blank id is quoted, or the message would seem cut short.
        shown = ident if str(ident).strip() else repr(str(ident))
        super().__init__(f"no {what} with id {shown}")


class InvalidTransitionError(JobsysError):
    """The job's current status does not allow the requested action."""

    reason = "invalid_transition"

    def __init__(self, job_id: object, status: str, action: str) -> None:
        self.job_id = job_id
        self.status = status
        super().__init__(f"job {job_id} is {status}; cannot {action}")


class DuplicateJobError(JobsysError):
    """A queued or running job already holds this unique key."""

    reason = "duplicate"

    def __init__(
        self, kind: str, user_id: str, unique_key: str, existing_id: object = None
    ) -> None:
        self.unique_key = unique_key
        self.existing_id = existing_id
        super().__init__(
            f"a live {kind!r} job for user {user_id!r} already has unique_key {unique_key!r}"
        )


class QuotaExceeded(JobsysError):
    """An enqueue would take a user past one of its quotas; nothing was stored.

    Attributes:
        user_id: whose quota.
        limit: ``max_queued`` or ``max_per_hour``.
        value: the limit's value.
        used: what the user holds (queued jobs) or spent (enqueues in the last hour).
        asked: jobs the refused call asked for.
        frees_at: when enough of the hour's enqueues age out (``max_per_hour``);
            None for ``max_queued``, which frees as the user's queued jobs start.
    """

    reason = "quota"
    retryable = True

    def __init__(
        self,
        user_id: str,
        limit: str,
        value: int,
        *,
        used: int,
        asked: int,
        frees_at: datetime | None = None,
    ) -> None:
        self.user_id, self.limit, self.value = user_id, limit, value
        self.used, self.asked, self.frees_at = used, asked, frees_at
        held = "queued" if limit == "max_queued" else "enqueued in the last hour"
        if asked > value:
            when = f"the call asks for {asked}, more than the limit allows at once"
        elif frees_at is not None:
            when = f"frees up at {frees_at.isoformat(timespec='seconds')}"
            self.retry_after = max(0.0, (frees_at - datetime.now(UTC)).total_seconds())
        else:
            when = "frees up as its queued jobs start"
        super().__init__(
            f"user {user_id!r} is over its quota {limit}={value} ({used} {held},"
            f" {asked} more asked): {when}"
        )


class DuplicateUserError(JobsysError, ValueError):
    """A user with that email already exists."""

    reason = "duplicate"

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"a user with email {email!r} already exists")


class RunMismatchError(JobsysError):
    """A job named a pipeline run that does not exist for the job's user.

    Permanent: the payload points at another user's run (or at none), and no
    retry changes that. Nothing was written to any run.
    """

    reason = "run_mismatch"

    def __init__(self, run_id: object, user_id: str) -> None:
        self.run_id = run_id
        self.user_id = user_id
        super().__init__(f"pipeline run {run_id} does not belong to user {user_id!r}")


class UnstorableError(JobsysError, ValueError):
    """A value cannot be stored as ``jsonb``: it is not JSON, or holds what ``jsonb`` refuses.

    Permanent: the same handler returns the same value again.
    """

    reason = "unstorable"

    def __init__(self, what: str, cause: str) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"{what} cannot be stored as JSON: {cause}")


class StoreUnavailableError(JobsysError):
    """PostgreSQL could not be reached."""

    reason = "store_unavailable"
    retryable = True


class JobError(JobsysError):
    """Raise from a handler to say how the failure should be treated.

    Parameters:
        message: what went wrong.
        reason: a short classification (``auth``, ``quota``, ``expired_cursor``, ...).
        retryable: whether another attempt may succeed.
        retry_after: seconds to wait before the next attempt, overriding backoff.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "error",
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class JobCancelled(JobsysError):
    """Raised inside a handler when its job was cancelled (or lost its lease)."""

    reason = "cancelled"


class JobPostponed(JobsysError):
    """Raise from a handler to run the job again later without spending an attempt.

    For a guard that refused before anything was tried (an open circuit
    breaker, a spent quota): the job is not failing, it is early.

    Parameters:
        message: why the job waits.
        delay: seconds until the next try.
        reason: a short classification (``quota``, ``breaker_open``, ``throttled``).
    """

    retryable = True

    def __init__(self, message: str, *, delay: float, reason: str = "postponed") -> None:
        super().__init__(message)
        self.delay = max(0.0, delay)
        self.retry_after = self.delay
        self.reason = reason


class JobDeadError(JobsysError):
    """The job was dead-lettered; raised by its result's ``get()``.

    Carries what its last attempt raised: ``exc_type``, ``message``, ``reason``,
    and ``dead_letter`` (the letter's id, for ``jobsys dlq show``).
    """

    template: ClassVar[str] = "job {job_id} is dead ({reason}): {exc_type}: {message}"

    def __init__(
        self, job_id: object, *, exc_type: str, message: str, reason: str, dead_letter: int | None
    ) -> None:
        self.job_id = job_id
        self.exc_type = exc_type
        self.error_message = message
        self.reason = reason
        self.dead_letter = dead_letter
        text = self.template.format(
            job_id=job_id, reason=reason, exc_type=exc_type, message=message
        )
        super().__init__(text)
