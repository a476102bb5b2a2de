"""Per-process handles: settings, resolved server URLs and the store.

A store's connection pools must not cross a fork, so each process builds its
own on first use (prefork children inherit none).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

from jobsys.config import Settings, get_settings
from jobsys.errors import ConfigError
from jobsys.store import Store

SERVICES_FILE = "services.json"


@dataclass(frozen=True)
class Urls:
    database: str
    broker: str
    result_backend: str


def resolve_urls(settings: Settings | None = None) -> Urls:
    """URLs from the environment, else from embedded servers started in ``JOBSYS_HOME``.

    Raises:
        ConfigError: nothing is configured and no embedded servers are running.
    """
    s = settings or get_settings()
    database, broker = s.database_url, s.broker_url
    if database is None or broker is None:
        recorded = _recorded_services(s)
        database = database or recorded.get("database_url")
        broker = broker or recorded.get("broker_url")
    if database is None or broker is None:
        missing = [n for n, v in (("DATABASE_URL", database), ("BROKER_URL", broker)) if not v]
        raise ConfigError(
            "JOBSYS_" + " and JOBSYS_".join(missing) + " not set and no embedded servers are "
            f"running in {s.home}/ (start them with `jobsys services up`, or set the URLs)"
        )
    return Urls(database, broker, s.result_backend or broker)


def _recorded_services(s: Settings) -> dict[str, str]:
    path = s.home / SERVICES_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


_lock = threading.Lock()
_stores: dict[int, Store] = {}


def store() -> Store:
    """This process's store, built on first use."""
    pid = os.getpid()
    found = _stores.get(pid)
    if found is not None:
        return found
    with _lock:
        if pid not in _stores:
            _stores.clear()  # handles inherited from a parent are unusable here
            _stores[pid] = Store(resolve_urls().database)
        return _stores[pid]


def reset() -> None:
    """Forget this process's store (after a fork, or when URLs change in tests)."""
    with _lock:
        for s in _stores.values():
            s.dispose(close=False)
        _stores.clear()
