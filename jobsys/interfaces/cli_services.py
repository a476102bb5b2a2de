"""``jobsys services``, ``emulator`` and ``demo``: servers for a machine with nothing configured."""

from __future__ import annotations

import errno
from typing import Any

import click

from jobsys.interfaces.clitypes import FiniteRange


def _settings() -> Any:
    from jobsys.config import Settings

    return Settings.from_env()


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8085,
    show_default=True,
    help="loopback port (0: any free one)",
)
@click.option(
    "--users",
    "count",
    type=click.IntRange(1, 10_000),
    default=3,
    show_default=True,
    help="mailboxes and calendars to generate",
)
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the generated data")
def emulator(port: int, count: int, seed: int) -> None:
    """Serve the bundled Google emulator (Gmail v1, Calendar v3) on loopback."""
    from jobsys.connectors.google.emulator import serve

    try:
        serve(port, count, seed)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        raise click.BadParameter(
            f"port {port} on 127.0.0.1 is already in use: choose another", param_hint="--port"
        ) from e


@click.group()
def services() -> None:
    """Embedded PostgreSQL and Valkey under .jobsys/ (for machines with nothing configured)."""


@services.command("up")
def services_up() -> None:
    """Start the embedded servers (or reuse running ones) and print their URLs."""
    from jobsys import embedded

    found = embedded.up(_settings().home)
    click.echo(f"JOBSYS_DATABASE_URL={found.database_url}")
    click.echo(f"JOBSYS_BROKER_URL={found.broker_url}")


@services.command("down")
def services_down() -> None:
    """Stop the embedded servers."""
    from jobsys import embedded

    stopped = embedded.down(_settings().home)
    click.echo("stopped" if stopped else "no embedded servers recorded")


@click.command()
@click.option(
    "--users",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="users to sync",
)
@click.option(
    "--messages",
    type=click.IntRange(0, 100_000),
    default=200,
    show_default=True,
    help="messages per mailbox",
)
@click.option(
    "--events",
    type=click.IntRange(0, 10_000),
    default=60,
    show_default=True,
    help="events per calendar",
)
@click.option(
    "--fault-rate",
    type=FiniteRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="share of Google calls answered 5xx",
)
@click.option(
    "--workers",
    "nodes",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="worker nodes to start",
)
@click.option(
    "--sample",
    type=click.IntRange(0, 100_000),
    default=0,
    help="run this many sample jobs instead of the sync pipeline",
)
def demo(
    users: int, messages: int, events: int, fault_rate: float, nodes: int, sample: int
) -> None:
    """Sync users' Gmail and Calendar end to end, on embedded (or configured) servers."""
    from jobsys.interfaces.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            users=users,
            messages=messages,
            events=events,
            fault_rate=fault_rate,
            nodes=nodes,
            sample=sample,
        )
    )
