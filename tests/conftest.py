"""Shared fixtures: real PostgreSQL and Redis, one database and one Redis db per test.

Servers come from ``JOBSYS_TEST_DATABASE_URL`` (a PostgreSQL server URL; its
database is only used for administration) and ``JOBSYS_TEST_REDIS_URL``. When
either is unset, embedded servers are started once per session under
``.jobsys/test`` and stopped at the end if this session started them; the
tests never skip.

The schema is migrated once into a template database; each test gets a clone
(``CREATE DATABASE ... TEMPLATE``, as procrastinate's test suite does) and a
Redis db number of its own, flushed before use.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu.pools
import psycopg2
import pytest
import redis
from sqlalchemy.engine import make_url

from jobsys.config import Settings
from jobsys.engine.runtime import Runtime, install
from jobsys.store import Job, Status, Store
from tests.support.workers import FAST_SETTINGS, REPO, WORKER_IMPORTS, Worker

EMBEDDED_HOME = REPO / ".jobsys" / "test"


# -- servers -----------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    pg_admin_url: str  # a database on the server to run CREATE/DROP DATABASE from
    redis_url: str  # without a db number
    redis_dbs: tuple[int, ...]  # db numbers this session may flush
    pgdata: str | None = None  # the data directory when PostgreSQL is embedded (restartable)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    pg_url = os.environ.get("JOBSYS_TEST_DATABASE_URL")
    redis_url = os.environ.get("JOBSYS_TEST_REDIS_URL")
    started = None
    if not pg_url or not redis_url:
        from jobsys import embedded

        started = embedded.up(EMBEDDED_HOME)
        pg_url = pg_url or make_url(started.database_url).set(database="postgres").render_as_string(
            hide_password=False
        )
        redis_url = redis_url or started.broker_url
    base = _redis_base(redis_url)
    dbs = _free_redis_dbs(base)
    for n in dbs:
        _flush(f"{base}/{n}")
    try:
        embedded_pg = started is not None and not os.environ.get("JOBSYS_TEST_DATABASE_URL")
        yield Servers(pg_url, base, dbs, started.pgdata if started and embedded_pg else None)
    finally:
        for n in dbs:
            client = redis.Redis.from_url(f"{base}/{n}")
            client.flushdb()
            client.close()
        if started is not None and started.started:
            from jobsys import embedded

            embedded.down(EMBEDDED_HOME)


def _redis_base(url: str) -> str:
    parsed = make_url(url.replace("redis://", "postgresql://", 1))  # only to split off the db
    host = parsed.host or "127.0.0.1"
    port = parsed.port or 6379
    auth = f":{parsed.password}@" if parsed.password else ""
    return f"redis://{auth}{host}:{port}"


OWNER_KEY = "jobsys-tests:owner"  # in each Redis db a test session uses: its pid


def _free_redis_dbs(base: str, want: int = 4) -> tuple[int, ...]:
    """Up to ``want`` db numbers, from 15 down, that are empty or left by a dead test session.

    A db holding anything else may be someone else's (a benchmark, a developer's
    worker), and is never flushed. Tests cycle through the few they take.
    """
    free: list[int] = []
    for n in range(15, 0, -1):
        if len(free) == want:
            break
        client = redis.Redis.from_url(f"{base}/{n}")
        try:
            owner = client.get(OWNER_KEY)
            if client.dbsize() == 0 or (owner is not None and not _alive(int(owner))):
                free.append(n)
        except redis.ResponseError:  # the server has fewer databases than that
            continue
        finally:
            client.close()
    if not free:
        raise RuntimeError(f"no free Redis db on {base} for the tests (1..15 all hold keys)")
    return tuple(free)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flush(url: str) -> None:
    """Empty a db of ours, and mark it ours for as long as this session runs."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        client.set(OWNER_KEY, os.getpid())
    finally:
        client.close()


@pytest.fixture(scope="session")
def template_db(servers: Servers) -> Iterator[str]:
    """A database migrated to head, cloned by every test."""
    from jobsys.store import migrate

    name = f"jobsys_template_{os.getpid()}"
    _admin(servers, f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    migrate.upgrade(_db_url(servers, name))
    try:
        yield name
    finally:
        _admin(servers, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(servers: Servers, *statements: str) -> None:
    conn = psycopg2.connect(servers.pg_admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _db_url(servers: Servers, name: str) -> str:
    return make_url(servers.pg_admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def empty_db(servers: Servers) -> Iterator[str]:
    """URL of a new, empty database (no schema)."""
    name = f"jobsys_test_{uuid.uuid4().hex[:12]}"
    _admin(servers, f'CREATE DATABASE "{name}"')
    try:
        yield _db_url(servers, name)
    finally:
        _admin(servers, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(servers: Servers, template_db: str) -> Iterator[str]:
    """URL of this test's own database, cloned from the migrated template."""
    name = f"jobsys_test_{uuid.uuid4().hex[:12]}"
    _admin(servers, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield _db_url(servers, name)
    finally:
        _admin(servers, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_next_db: Iterator[int] | None = None


@pytest.fixture
def broker_url(servers: Servers) -> Iterator[str]:
    """URL of this test's own Redis db, flushed before use."""
    global _next_db
    if _next_db is None:
        _next_db = itertools.cycle(servers.redis_dbs)
    url = f"{servers.redis_url}/{next(_next_db)}"
    _flush(url)
    yield url


# -- this process's jobsys, pointed at the test's servers ----------------------


@dataclass
class Env:
    """The test's servers, its runtime, a store and a Redis client on them, and the worker env."""

    database_url: str
    broker_url: str
    store: Store
    redis: redis.Redis
    home: Path
    runtime: Runtime
    environ: dict[str, str] = field(default_factory=dict)

    def queue_length(self, queue: str = "default") -> int:
        """Messages waiting in ``queue`` (every priority sub-list), not yet delivered."""
        keys = [queue, *(k.decode() for k in self.redis.scan_iter(f"{queue}:*"))]
        return sum(int(self.redis.llen(k)) for k in keys if self.redis.type(k) == b"list")

    def unacked(self) -> int:
        """Messages delivered to a worker and not yet acknowledged."""
        return int(self.redis.hlen("unacked"))

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``jobsys`` command against this test's servers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
        env.update(self.environ)
        env["PYTHONPATH"] = str(REPO)  # JOBSYS_IMPORTS names tests.support.kinds
        command = [str(Path(sys.executable).with_name("jobsys")), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, cwd=cwd)

    def finished(self, job_id: uuid.UUID) -> Job | None:
        """The job once it reached a final status, else None (a probe for wait_until)."""
        job = self.store.get_job(job_id)
        return job if job.status in (Status.SUCCEEDED, Status.DEAD, Status.CANCELLED) else None

    def count_rows(self, table: str) -> int:
        with self.store.durable.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())

    def reconfigure(self, **variables: str) -> Runtime:
        """A new runtime on this test's settings plus ``variables`` (``JOBSYS_*``), installed."""
        self.runtime.close()
        self.runtime = Runtime(Settings.from_variables({**self.environ, **variables}))
        install(self.runtime)
        return self.runtime


@pytest.fixture
def jobsys_env(database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Env]:
    """This process's jobsys on the test's servers: a runtime of its own, installed.

    The Celery app's producer pools are dropped so the next publish connects to
    this test's Redis db. Worker processes get the same settings as variables.
    """
    home = tmp_path / "home"
    environ = {
        **FAST_SETTINGS,
        "JOBSYS_DATABASE_URL": database_url,
        "JOBSYS_BROKER_URL": broker_url,
        "JOBSYS_HOME": str(home),
        "JOBSYS_IMPORTS": WORKER_IMPORTS,
    }
    rt = Runtime(Settings.from_variables(environ))
    previous = install(rt)
    point_app_at(broker_url)
    store = Store(database_url, pool_size=2)
    client = redis.Redis.from_url(broker_url)
    env = Env(database_url, broker_url, store, client, home, rt, environ)
    try:
        yield env
    finally:
        client.close()
        store.dispose()
        env.runtime.close()
        install(previous)


def point_app_at(broker_url: str) -> None:
    """Make this process's Celery app publish to ``broker_url`` from now on."""
    from jobsys import app

    app.conf.broker_url = broker_url
    app.conf.result_backend = broker_url
    # Producers and connections are pooled per broker URL; forget them all, the
    # way Celery and kombu do after a fork, so the next publish uses the new URL.
    kombu.pools.reset()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app._backend_cache = None
    with contextlib.suppress(AttributeError):
        del app._local.backend


# -- worker processes ----------------------------------------------------------


StartWorkers = Callable[..., list[Worker]]


@pytest.fixture
def start_workers(jobsys_env: Env, tmp_path: Path) -> Iterator[StartWorkers]:
    """Start real worker nodes against this test's servers; all are stopped on teardown.

    ``start_workers(2, concurrency=1, env={...})`` returns the nodes once each
    has registered its row in ``workers``; ``queues="cpu"`` narrows them (``-Q``).
    """
    started: list[Worker] = []
    serial = itertools.count(1)

    def start(
        count: int = 1,
        *,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        name: str | None = None,
        queues: str | None = None,
    ) -> list[Worker]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
        environ.update(jobsys_env.environ)
        environ.update(
            {
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
        )
        nodes = []
        for _ in range(count):
            # A given name starts that node again (a restart under the same -n name).
            called = name or f"w{next(serial)}"
            log = tmp_path / f"{called}.{len(started)}.log"
            node = Worker(called, environ, log, concurrency, queues=queues)
            started.append(node)
            nodes.append(node)
        for node in nodes:
            node.wait_ready(jobsys_env.store)
        return nodes

    yield start
    # Each test has a database and a Redis db of its own, so nothing a node leaves
    # behind reaches another test: kill them all at once instead of a warm shutdown
    # each (Celery's prefork pool takes 2-3 s to stop, one node after the other).
    for node in started:
        node.abort()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _worker_logs_on_failure(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """Print the workers' logs when a test fails: a failure must be explainable."""
    yield
    if request.node.stash.get(_FAILED, False):
        for log in sorted(tmp_path.glob("w*.log")):
            lines = log.read_text(errors="replace").splitlines()
            print(f"----- {log.name} (last 80 lines) -----")
            print("\n".join(lines[-80:]))
