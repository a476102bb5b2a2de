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
# Stores inherited across a fork stay referenced, never closed: closing (or
# garbage-collecting) their connections in a child would end the parent's sessions.
_inherited: list[Store] = []


def store() -> Store:
    """This process's store, built on first use."""
    pid = os.getpid()
    found = _stores.get(pid)
    if found is not None:
        return found
    with _lock:
        if pid not in _stores:
            _inherited.extend(_stores.values())  # a parent's handles are unusable here
            _stores.clear()
            _stores[pid] = Store(resolve_urls().database)
        return _stores[pid]


def reset(*, inherited: bool = False) -> None:
    """Forget this process's store: after a fork (``inherited``), or when URLs change.

    An inherited store belongs to the parent: it is kept referenced and never
    closed here. Otherwise its connections are closed.
    """
    with _lock:
        for s in _stores.values():
            s.dispose(close=not inherited)
            if inherited:
                _inherited.append(s)
        _stores.clear()
