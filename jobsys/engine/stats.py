"""The business metrics report: the store's figures with each kind's deadline and the SLO."""

from __future__ import annotations

from jobsys.engine.registry import registry
from jobsys.engine.runtime import Runtime
from jobsys.store.gateway import Store
from jobsys.store.stats import Stats, StatsQuery, StatsSql


def report(
    rt: Runtime,
    *,
    window: float,
    user_id: str | None = None,
    kind: str | None = None,
    store: Store | None = None,
    scope: str | None = None,
) -> Stats:
    """Figures of the last ``window`` seconds, of one user or kind if named.

    Parameters:
        window: seconds back from now, more than 0.
        store: where to read (default the runtime's PostgreSQL store).
        scope: read as this user under row-level security (a user's API token).

    Raises:
        ValueError: ``window`` is not positive.
        UnknownKindError: ``kind`` is not a registered kind.
    """
    if not window > 0:
        raise ValueError(f"the window must be more than 0 seconds, got {window:g}")
    if kind is not None:
        registry.get(kind)
    deadlines = {}
    for name in registry.kinds():
        deadline = registry.get(name).deadline
        if deadline is not None:
            deadlines[name] = deadline
    query = StatsQuery(
        window=window,
        freshness_slo=rt.settings.freshness_slo,
        user_id=user_id,
        kind=kind,
        deadlines=deadlines,
    )
    return StatsSql(store or rt.postgres, scope=scope).read(query)
