"""Engine hooks: middleware around dispatch and every attempt's claim -> run -> record.

In the manner of dramatiq's ``Middleware``: a :class:`Hook` overrides the
methods it needs; every method of the base class does nothing. The runtime
holds an ordered :class:`Hooks` list and the engine calls it at each point:

- ``before_insert(new)`` for every job about to be stored by an enqueue (one job,
  a bulk enqueue's, a canvas member); it may return an evolved job (say, with
  the enqueue's trace context, which the row keeps).
- ``before_dispatch(dispatch)`` for every message the dispatcher is about to
  publish, on every path (first publish, bulk, retry, postponement, sweeper,
  dead-letter retry, canvas members); it may return an evolved dispatch
  (say, with trace headers). ``on_follow_up(parent_id, dispatch)`` runs too
  when the message is published from inside a running job (a canvas's next
  step, a job that enqueues another).
- ``after_dispatch(dispatches)`` once they are on the broker.
- ``after_claim(attempt)`` once a worker has won a job.
- ``around_handler(attempt, call)`` wraps the handler: call ``call()`` and
  return what it returns. The first hook is the outermost.
- ``after_record(recorded)`` once an attempt's outcome is in the store
  (succeeded, retried, postponed, dead, cancelled), wherever it was recorded:
  the pool child, the worker's main process after a lost child, the sweeper
  after an expired lease.
- ``on_sweep(runtime)`` in every sweeper pass; returns how many things it fixed.

A hook that raises in ``after_*`` or ``on_*`` is logged and skipped: what it
observes has already happened and must not be undone by an observer.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from jobsys.store import Job, NewJob

if TYPE_CHECKING:
    from jobsys.engine.dispatch import Dispatch
    from jobsys.engine.runtime import Runtime

log = structlog.get_logger("jobsys.hooks")


class Outcome(enum.StrEnum):
    """What became of an attempt once it was recorded."""

    # The handler returned; its result is stored.
    SUCCEEDED = "succeeded"
    # It failed and goes back to the queue after a backoff (the attempt counts).
    RETRIED = "retried"
    # A guard said not yet: back to the queue without spending the attempt.
    POSTPONED = "postponed"
    # Out of attempts, or not retryable: a dead letter holds its context.
    DEAD = "dead"
    # Cancelled (by an operator, or a revoke) before it finished.
    CANCELLED = "cancelled"
    # Someone else had already moved the job on (a late duplicate): nothing recorded.
    LOST = "lost"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attempt:
    """One attempt of a job, as a worker runs it."""

    job: Job
    worker: str
    # The broker message's headers: where trace context travels.
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recorded:
    """An attempt's outcome, as recorded in the store."""

    job: Job
    outcome: Outcome
    # Seconds until the next try (retried, postponed).
    delay: float = 0.0
    # The failure's classification (retried, postponed, dead), else None.
    reason: str | None = None
    # Who recorded it: a worker node, ``sweeper``, or an operator.
    actor: str = ""


class Hook:
    """Base of every engine hook; each method is a no-op until overridden."""

    def before_insert(self, new: NewJob) -> NewJob:
        return new

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        return dispatch

    def on_follow_up(self, parent_id: uuid.UUID, dispatch: Dispatch) -> Dispatch:
        return dispatch

    def after_dispatch(self, dispatches: Sequence[Dispatch]) -> None:
        return None

    def after_claim(self, attempt: Attempt) -> None:
        return None

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        return call()

    def after_record(self, recorded: Recorded) -> None:
        return None

    def on_sweep(self, runtime: Runtime) -> int:
        return 0


class Hooks:
    """An ordered list of hooks, called as one."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks: list[Hook] = []
        for hook in hooks:
            self.add(hook)

    def add(self, hook: Hook) -> None:
        """Append a hook; adding the same object twice changes nothing."""
        if not isinstance(hook, Hook):
            raise TypeError(f"a hook must subclass jobsys.engine.hooks.Hook, got {hook!r}")
        if all(h is not hook for h in self._hooks):
            self._hooks.append(hook)

    def remove(self, hook: Hook) -> None:
        self._hooks = [h for h in self._hooks if h is not hook]

    def __iter__(self) -> Iterator[Hook]:
        return iter(list(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)

    def before_insert(self, new: NewJob) -> NewJob:
        for hook in self._hooks:
            new = hook.before_insert(new)
        return new

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        for hook in self._hooks:
            dispatch = hook.before_dispatch(dispatch)
            if dispatch.parent_id is not None:
                dispatch = hook.on_follow_up(dispatch.parent_id, dispatch)
        return dispatch

    def after_dispatch(self, dispatches: Sequence[Dispatch]) -> None:
        self._notify("after_dispatch", dispatches)

    def after_claim(self, attempt: Attempt) -> None:
        self._notify("after_claim", attempt)

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        wrapped = call
        for hook in reversed(self._hooks):
            wrapped = _wrap(hook, attempt, wrapped)
        return wrapped()

    def after_record(self, recorded: Recorded) -> None:
        if recorded.outcome is not Outcome.LOST:
            self._notify("after_record", recorded)

    def on_sweep(self, runtime: Runtime) -> int:
        fixed = 0
        for hook in self._hooks:
            try:
                fixed += hook.on_sweep(runtime)
            except Exception as e:  # one broken repair must not stop the sweep
                log.exception("hook.failed", hook=type(hook).__name__, at="on_sweep", error=str(e))
        return fixed

    def _notify(self, method: str, arg: Any) -> None:
        for hook in self._hooks:
            try:
                getattr(hook, method)(arg)
            except Exception as e:  # an observer must not undo what it observes
                log.exception("hook.failed", hook=type(hook).__name__, at=method, error=str(e))


def _wrap(hook: Hook, attempt: Attempt, inner: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: hook.around_handler(attempt, inner)
