"""Guards around outside calls: quota-unit rate limits, shared circuit breakers,
adaptive batch sizes and adaptive concurrency.

Guards know nothing of jobs: they take keys, costs and clocks. Each refuses in
one way, a :class:`Refused` that says when to come back::

    JobsysError
    └── Refused(key, retry_after)        retryable: try again later, do not fail
        ├── RateLimited                  reason "quota": the key's units are spent
        ├── BreakerOpen                  reason "breaker_open": the key's breaker is open
        └── Throttled                    reason "throttled": every slot of the key is held
"""

from __future__ import annotations

from typing import Any, ClassVar

from jobsys.errors import JobsysError


class Refused(JobsysError):
    """A guard said not yet; try again after ``retry_after`` seconds."""

    reason = "refused"
    retryable = True
    template: ClassVar[str] = "{key!r} refused"

    def __init__(self, key: str, retry_after: float) -> None:
        self.key = key
        self.retry_after = retry_after
        what = self.template.format(key=key)
        super().__init__(f"{what}; retry after {retry_after:.3f} s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.retry_after))
