"""The runtime: one object, built at the edge, that every part of a jobsys process runs on.

A CLI command, a worker's start, a test fixture or the demo builds a
:class:`Runtime` from its settings; it holds the Celery app, the hooks, the
store, the dispatcher and per-process state such as the guards, and is
passed down (a handler reaches it as ``ctx.runtime``). Nothing else in
jobsys reads configuration or keeps connections in module globals.

Connections must not cross a fork, so the store and the per-process state
are built on first use in each process: a prefork child inherits the
runtime but none of its connections (they stay referenced, never closed,
since closing them in the child would end the parent's sessions).

A process that never builds one explicitly (``celery -A jobsys worker``, a
script calling ``enqueue``) gets :func:`current`, built from the environment
on first use; :func:`install` replaces it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jobsys.config import Settings
from jobsys.engine.dispatch import Dispatcher
from jobsys.engine.hooks import Hook, Hooks
from jobsys.errors import ConfigError, JobModuleError
from jobsys.store import JobStore, Store

if TYPE_CHECKING:
    from celery import Celery

T = TypeVar("T")
SERVICES_FILE = "services.json"
HOOKS_ATTRIBUTE = "jobsys_hooks"


@dataclass(frozen=True)
class Urls:
    database: str
    broker: str
    result_backend: str


def resolve_urls(settings: Settings) -> Urls:
    """URLs from the settings, else from embedded servers started in ``JOBSYS_HOME``.

    Raises:
        ConfigError: nothing is configured and no embedded servers are running.
    """
    s = settings
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


class Runtime:
    """Settings, Celery app, hooks, store, dispatcher and per-process state.

    Parameters:
        settings: the process's configuration.
        app: the Celery app (jobsys's own by default).
        hooks: engine hooks, outermost first; modules loaded by
            :meth:`load_imports` may add theirs.
        store: a store to use instead of PostgreSQL at the settings' URL (an
            in-memory store in unit tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        app: Celery | None = None,
        hooks: Iterable[Hook] = (),
        store: JobStore | None = None,
    ) -> None:
        self.settings = settings
        self.hooks = Hooks(hooks)
        self._app = app
        self._given_store = store
        self._urls: Urls | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._store: JobStore | None = None
        self._state: dict[Any, Any] = {}
        self._inherited: list[Any] = []
        self._imported: set[str] = set()
        self._dispatcher: Dispatcher | None = None

    @classmethod
    def from_env(cls, **kwargs: Any) -> Runtime:
        """A runtime on the settings the environment gives (``JOBSYS_*``)."""
        return cls(Settings.from_env(), **kwargs)

    @property
    def app(self) -> Celery:
        if self._app is None:
            from jobsys.engine.app import app

            self._app = app
        return self._app

    @property
    def urls(self) -> Urls:
        """The servers' URLs (resolved on first use: the embedded ones may start later)."""
        if self._urls is None:
            self._urls = resolve_urls(self.settings)
        return self._urls

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self.app, self.hooks)
        return self._dispatcher

    @property
    def store(self) -> JobStore:
        """This process's store, built on first use."""
        self._own()
        found = self._store
        if found is None:
            with self._lock:
                if self._store is None:
                    self._store = self._given_store or Store(self.urls.database)
                found = self._store
        return found

    @property
    def postgres(self) -> Store:
        """The PostgreSQL gateway (for the sync pipeline's SQL, which has no other store).

        Raises:
            ConfigError: this runtime runs on another store.
        """
        found = self.store
        if not isinstance(found, Store):
            raise ConfigError(f"this runtime's store is {type(found).__name__}, not PostgreSQL")
        return found

    def state(self, key: Any, build: Callable[[Runtime], T]) -> T:
        """Per-process state under ``key`` (e.g. the guards), built by ``build`` on first use."""
        self._own()
        with self._lock:
            if key not in self._state:
                self._state[key] = build(self)
            return cast(T, self._state[key])

    def load_imports(self, extra: Iterable[str] = ()) -> None:
        """Import the modules that define job kinds (``JOBSYS_IMPORTS``), once each.

        A module may define ``jobsys_hooks(runtime)`` returning hooks to add.

        Raises:
            JobModuleError: a module cannot be imported (an ``ImportError`` too).
        """
        for name in (*self.settings.imports, *extra):
            if name in self._imported:
                continue
            try:
                module = importlib.import_module(name)
            except ImportError as e:
                raise JobModuleError(name, e) from e
            self._imported.add(name)
            for hook in getattr(module, HOOKS_ATTRIBUTE, lambda _rt: ())(self):
                self.hooks.add(hook)

    def forked(self) -> None:
        """Forget connections and state inherited from a parent process."""
        with self._lock:
            self._inherited.extend(x for x in (self._store, *self._state.values()) if x)
            self._store = self._given_store
            self._state = {}
            self._pid = os.getpid()

    def close(self) -> None:
        """Close this process's connections (the next use opens new ones)."""
        with self._lock:
            found, self._store = self._store, None
            self._state = {}
        if isinstance(found, Store) and found is not self._given_store:
            found.dispose()

    def _own(self) -> None:
        if os.getpid() != self._pid:
            self.forked()


_current: Runtime | None = None
_current_lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime: the installed one, else one built from the environment.

    Raises:
        ConfigError: the environment holds a malformed setting.
    """
    global _current
    found = _current
    if found is None:
        with _current_lock:
            if _current is None:
                _current = Runtime.from_env()
            found = _current
    return found


def install(runtime: Runtime | None) -> Runtime | None:
    """Make ``runtime`` the process's runtime (None: build from the environment next time).

    Returns the one it replaces.
    """
    global _current
    with _current_lock:
        previous, _current = _current, runtime
    return previous


def reset() -> None:
    """Close the process's runtime and forget it: the next :func:`current` reads the
    environment again (for scripts that change it)."""
    previous = install(None)
    if previous is not None:
        previous.close()


@contextlib.contextmanager
def using(runtime: Runtime) -> Iterator[Runtime]:
    """Install ``runtime`` for the block, then put the previous one back."""
    previous = install(runtime)
    try:
        yield runtime
    finally:
        install(previous)
