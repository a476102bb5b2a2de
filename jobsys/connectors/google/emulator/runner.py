"""Starting and stopping an emulator: the :class:`Emulator` object, ``running`` and ``serve``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from jobsys.connectors.google.emulator.admin import Admin
from jobsys.connectors.google.emulator.dispatch import Dispatcher
from jobsys.connectors.google.emulator.faults import Faults, FaultSettings
from jobsys.connectors.google.emulator.mailbox import StoredMessage
from jobsys.connectors.google.emulator.quota import QuotaBook
from jobsys.connectors.google.emulator.server import EmulatorServer
from jobsys.connectors.google.emulator.settings import EmulatorConfig
from jobsys.connectors.google.emulator.truth import TruthEvent, TruthMessage
from jobsys.connectors.google.emulator.world import UserCredentials, World

CLIENT_ID = "jobsys-emulator.apps.googleusercontent.com"
CLIENT_SECRET = "emulator-secret"  # the emulator accepts any client; this one is for show


class Emulator:
    """A Gmail + Calendar emulator on a loopback port.

    Parameters:
        config: sizes, seed and quota limits.
        host: the interface to bind.
        port: the port; 0 picks a free one.
    """

    def __init__(self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.world = World(config)
        self.faults = Faults(config.seed)
        limits = {
            "gmail": (config.gmail_units_per_second, config.gmail_burst_units),
            "calendar": (config.calendar_requests_per_second, config.calendar_burst),
        }
        self.quota = QuotaBook(limits)
        dispatcher = Dispatcher(self.world, self.quota, self.faults)
        self._server = EmulatorServer(
            (host, port), dispatcher, Admin(self.world, self.quota, self.faults)
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` — pass it as jobsys's Google API endpoint."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint for google-auth ``Credentials(token_uri=...)``."""
        return self.base_url + "/token"

    def start(self) -> Emulator:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() waits up to one poll
                name="google-emulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def users(self) -> list[UserCredentials]:
        """Every user's email, name, current access token and refresh token."""
        return self.world.users()

    def add_message(
        self, email: str, raw: bytes, labels: tuple[str, ...] = ("INBOX", "UNREAD")
    ) -> StoredMessage:
        """Deliver raw bytes to a mailbox (see :meth:`World.add_message`)."""
        return self.world.add_message(email, raw, labels)

    def subscribe(self, topic: str, endpoint: str) -> None:
        """A Pub/Sub push subscription: watched mailboxes' changes are POSTed to ``endpoint``."""
        self.world.push.subscribe(topic, endpoint)

    def delete_message(self, email: str, gmail_id: str) -> bool:
        """Delete a message (see :meth:`World.delete_message`)."""
        return self.world.delete_message(email, gmail_id)

    def put_event(self, email: str, event: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an event (see :meth:`World.put_event`)."""
        return self.world.put_event(email, event)

    def cancel_event(self, email: str, event_id: str) -> bool:
        """Cancel an event (see :meth:`World.cancel_event`)."""
        return self.world.cancel_event(email, event_id)

    def expire_cursors(self, email: str | None = None) -> None:
        """Expire history ids and sync tokens (see :meth:`World.expire_cursors`)."""
        self.world.expire_cursors(email)

    def revoke(self, email: str) -> None:
        """Revoke a user's tokens (see :meth:`World.revoke`)."""
        self.world.revoke(email)

    def expire_access_tokens(self, email: str) -> None:
        """Expire a user's access tokens, forcing a refresh."""
        self.world.expire_access_tokens(email)

    def set_faults(self, **settings: Any) -> None:
        """Set faults; keyword arguments are :class:`FaultSettings` fields."""
        self.faults.configure(FaultSettings(**settings))

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.faults.clear()

    def stats(self) -> dict[str, Any]:
        """Counters per user and method (requests, throttled, errors, units), limits, faults."""
        return {**self.quota.snapshot(), "faults": self.faults.describe()}

    def reset_stats(self) -> None:
        """Zero the counters and refill every quota bucket."""
        self.quota.reset()

    def truth_messages(self, email: str) -> list[TruthMessage]:
        """Ground truth of a mailbox (see :mod:`.truth`)."""
        return self.world.truth_messages(email)

    def truth_events(self, email: str) -> list[TruthEvent]:
        """Ground truth of a calendar (see :mod:`.truth`)."""
        return self.world.truth_events(email)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running(
    users: int = 2, seed: int = 0, *, port: int = 0, host: str = "127.0.0.1", **config: Any
) -> Iterator[Emulator]:
    """Run an emulator for the duration of a ``with`` block.

    Parameters:
        users: how many users to provision.
        seed: the data seed.
        port: the port; 0 picks a free one.
        host: the interface to bind.
        config: further :class:`EmulatorConfig` fields (sizes, quota rates).

    Raises:
        TypeError: an unknown config field.
        ValueError: an invalid config value.

    Returns:
        A context manager yielding the started :class:`Emulator`.
    """
    settings = replace(EmulatorConfig(), users=users, seed=seed, **config)
    with Emulator(settings, host, port) as emulator:
        yield emulator


def serve(
    port: int,
    users: int,
    seed: int,
    *,
    host: str = "127.0.0.1",
    echo: Callable[[str], None] = print,
    **config: Any,
) -> None:
    """Run an emulator in the foreground until Ctrl-C, printing how to reach it.

    Parameters:
        port: the port (0 picks a free one).
        users: how many users to provision.
        seed: the data seed.
        host: the interface to bind.
        echo: where the banner goes (``print`` by default, ``click.echo`` from the CLI).
        config: further :class:`EmulatorConfig` fields.

    Raises:
        OSError: the port cannot be bound.
    """
    with running(users, seed, port=port, host=host, **config) as emulator:
        echo(f"Google emulator at {emulator.base_url} (seed {seed})")
        echo(f"token endpoint {emulator.token_uri}  client id {CLIENT_ID}")
        for user in emulator.users():
            echo(f"  {user.email}  access={user.access_token}  refresh={user.refresh_token}")
        echo("admin API under /_emulator/ ; Ctrl-C to stop")
        stop = threading.Event()
        try:
            stop.wait()
        except KeyboardInterrupt:
            echo("stopping")
