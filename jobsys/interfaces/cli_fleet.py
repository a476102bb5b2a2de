"""``jobsys workers``, ``sweep`` and ``breakers``: the fleet's state."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import click

from jobsys.config import mask_url
from jobsys.interfaces.cli_jobs import JSON_HELP
from jobsys.interfaces.clictx import runtime_of


@click.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def workers(as_json: bool) -> None:
    """List registered worker nodes and their heartbeats."""
    from jobsys.interfaces import render

    found = runtime_of().store.list_workers()
    if as_json:
        render.emit_json([w.as_dict() for w in found])
        return
    rows = [(w.name, w.status, w.pid, ",".join(w.queues), w.heartbeat_at) for w in found]
    render.table("workers", ["name", "status", "pid", "queues", "heartbeat"], rows)


@click.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def sweep(as_json: bool) -> None:
    """Run one sweeper pass now (expired leases, dead workers, lost messages)."""
    from jobsys.engine.sweeper import Sweeper

    done = Sweeper(runtime_of()).run()
    click.echo(json.dumps(done.as_dict()) if as_json else done.describe())


@click.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def breakers(as_json: bool) -> None:
    """Show every circuit breaker's shared state and its last transitions."""
    import redis

    from jobsys.guards.breaker import breaker_states
    from jobsys.interfaces import render

    url = runtime_of().urls.broker
    try:
        found = breaker_states(redis.Redis.from_url(url, socket_connect_timeout=5))
    except redis.RedisError as e:
        raise click.ClickException(
            f"cannot read breakers from Redis at {mask_url(url)}: {e}"
        ) from e
    if as_json:
        render.emit_json([dataclasses.asdict(b) for b in found])
        return
    rows = [(b.name, b.state, b.failures, b.opened_at, _last_change(b.history)) for b in found]
    render.table("breakers", ["name", "state", "failures", "opened at", "last change"], rows)


def _last_change(history: tuple[dict[str, Any], ...]) -> str:
    if not history:
        return ""
    last = history[0]
    at = datetime.fromtimestamp(float(last["at"]), UTC).isoformat(timespec="seconds")
    return f"{last['state']} at {at} by {last['by']}"
