"""The ``jobsys`` command line.

Configuration comes from ``JOBSYS_*`` environment variables (see ``--help``).
User mistakes end with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from jobsys.errors import JobsysError
from jobsys.interfaces.cli_api import api as api_command
from jobsys.interfaces.cli_api import db_roles
from jobsys.interfaces.cli_api import token as token_group
from jobsys.interfaces.cli_google import google as google_group
from jobsys.interfaces.cli_schedule import schedule as schedule_group
from jobsys.interfaces.cli_users import user as user_group
from jobsys.interfaces.clictx import runtime_of, users_of
from jobsys.store import Status

ENV_HELP = """
\b
Configuration (environment):
  JOBSYS_DATABASE_URL   PostgreSQL URL (postgresql://...)
  JOBSYS_BROKER_URL     Redis broker URL (redis://...)
  JOBSYS_RESULT_BACKEND Redis result backend (defaults to the broker)
  JOBSYS_IMPORTS        comma-separated modules that define job kinds
When the URLs are unset, the embedded servers recorded in .jobsys/ are used
(`jobsys services up` starts them; `jobsys demo` starts its own).
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90"``, ``"45s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` -> seconds.

    Raises:
        ValueError: the text is not such a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"duration {text!r} must be a number with an optional unit s, m, h, d, w")
    return float(match.group(1)) * _UNITS[match.group(2)]


_rt = runtime_of


def _store() -> Any:
    return _rt().store


def _import_kinds(extra: tuple[str, ...] = ()) -> None:
    # As `celery -I` does: a module in the current directory is found.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        _rt().load_imports(extra)
    except ImportError as e:
        raise click.ClickException(f"cannot import job module: {e}") from e


@click.group(epilog=ENV_HELP, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """jobsys: durable per-user jobs on Celery, with PostgreSQL as the source of truth."""


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database to the latest schema."""
    from jobsys.store.migrate import upgrade

    upgrade(_rt().urls.database, revision)
    click.echo(f"database at revision {revision}")


@cli.command()
@click.argument("kind")
@click.option("--user", "user_id", required=True, help="user the job works for")
@click.option("--payload", default="{}", help="payload as a JSON object")
@click.option("--priority", type=click.IntRange(0, 9), default=None, help="0 normal .. 9 urgent")
@click.option("--delay", type=float, default=0.0, help="seconds before it may run")
@click.option("--unique-key", default=None, help="at most one live job holds this key")
@click.option("--import", "imports", multiple=True, help="module defining job kinds")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def enqueue(
    kind: str,
    user_id: str,
    payload: str,
    priority: int | None,
    delay: float,
    unique_key: str | None,
    imports: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a job of KIND and publish it."""
    from jobsys.engine.enqueue import enqueue as do_enqueue

    try:
        data = json.loads(payload)
    except ValueError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--payload") from e
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    _import_kinds(imports)
    result = do_enqueue(
        kind,
        user_id=user_id,
        payload=data,
        priority=priority,
        unique_key=unique_key,
        delay=delay,
        runtime=_rt(),
    )
    click.echo(json.dumps({"id": result.id}) if as_json else result.id)


@cli.command()
@click.option("--user", "user_id", default=None)
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--kind", default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def jobs(
    user_id: str | None, status: str | None, kind: str | None, limit: int, as_json: bool
) -> None:
    """List recent jobs, newest first."""
    from jobsys.interfaces import render

    found = _store().list_jobs(
        user_id=user_id, status=Status(status) if status else None, kind=kind, limit=limit
    )
    if as_json:
        render.emit_json([j.as_dict() for j in found])
        return
    rows = [(j.id, j.kind, j.user_id, j.status.value, j.attempt, j.created_at) for j in found]
    render.table("jobs", ["id", "kind", "user", "status", "attempt", "created"], rows)


@cli.command("job")
@click.argument("job_id", type=click.UUID)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def job_cmd(job_id: uuid.UUID, as_json: bool) -> None:
    """Show one job."""
    from jobsys.interfaces import render

    found = _store().get_job(job_id).as_dict()
    if as_json:
        render.emit_json(found)
    else:
        render.record(f"job {job_id}", found)


@cli.command()
@click.argument("job_id", type=click.UUID)
def cancel(job_id: uuid.UUID) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    from jobsys.engine.operations import cancel as do_cancel

    status = do_cancel(_rt(), job_id, actor="cli")
    click.echo(f"job {job_id}: {'cancelled' if status is Status.CANCELLED else 'cancel requested'}")


@cli.group()
def dlq() -> None:
    """The dead-letter queue."""


@dlq.command("list")
@click.option("--kind", default=None)
@click.option("--user", "user_id", default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def dlq_list(kind: str | None, user_id: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    from jobsys.interfaces import render

    letters = _store().list_dead_letters(kind=kind, user_id=user_id, limit=limit)
    if as_json:
        render.emit_json([d.as_dict() for d in letters])
        return
    rows = [
        (d.id, d.job_id, d.kind, d.user_id, d.reason, len(d.attempts), d.message[:60], d.retried_at)
        for d in letters
    ]
    cols = ["id", "job", "kind", "user", "reason", "attempts", "error", "retried"]
    render.table("dead letters", cols, rows)


@dlq.command("show")
@click.argument("letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def dlq_show(letter_id: int, as_json: bool) -> None:
    """Show a dead letter's whole context."""
    from jobsys.interfaces import render

    letter = _store().get_dead_letter(letter_id).as_dict()
    if as_json:
        render.emit_json(letter)
    else:
        render.record(f"dead letter {letter_id}", letter)


@dlq.command("retry")
@click.argument("letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def dlq_retry(letter_id: int, as_json: bool) -> None:
    """Run a dead-lettered job again with a fresh set of attempts."""
    from jobsys.engine.operations import retry_dead_letter

    job_id = retry_dead_letter(_rt(), letter_id, actor="cli")
    click.echo(json.dumps({"job_id": str(job_id)}) if as_json else f"requeued job {job_id}")


@dlq.command("purge")
@click.option("--older-than", "older_than", required=True, help="e.g. 7d, 12h, 30m")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def dlq_purge(older_than: str, as_json: bool) -> None:
    """Delete dead letters older than a duration."""
    try:
        seconds = parse_duration(older_than)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from e
    count = _store().purge_dead_letters(seconds, actor="cli")
    click.echo(json.dumps({"purged": count}) if as_json else f"purged {count} dead letters")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def workers(as_json: bool) -> None:
    """List registered worker nodes and their heartbeats."""
    from jobsys.interfaces import render

    found = _store().list_workers()
    if as_json:
        render.emit_json([w.as_dict() for w in found])
        return
    rows = [(w.name, w.status, w.pid, ",".join(w.queues), w.heartbeat_at) for w in found]
    render.table("workers", ["name", "status", "pid", "queues", "heartbeat"], rows)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sweep(as_json: bool) -> None:
    """Run one sweeper pass now (expired leases, dead workers, lost messages)."""
    from jobsys.engine.sweeper import Sweeper

    report = Sweeper(_rt()).run()
    click.echo(json.dumps(report.as_dict()) if as_json else report.describe())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def breakers(as_json: bool) -> None:
    """Show every circuit breaker's shared state and its last transitions."""
    import redis

    from jobsys.guards.breaker import breaker_states
    from jobsys.interfaces import render

    url = _rt().urls.broker
    try:
        found = breaker_states(redis.Redis.from_url(url, socket_connect_timeout=5))
    except redis.RedisError as e:
        raise click.ClickException(f"cannot read breakers from Redis at {url}: {e}") from e
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


_users = users_of


@cli.command("sync")
@click.argument("user_ident", metavar="USER")
@click.option("--full", is_flag=True, help="ignore stored cursors and list everything")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sync_cmd(user_ident: str, full: bool, as_json: bool) -> None:
    """Start a Gmail and Calendar sync for USER (id or email)."""
    from jobsys.tasks import sync_user

    found = _users().get(user_ident)
    if found.paused:
        raise click.ClickException(f"user {found.email} is paused: {found.paused_reason}")
    result = sync_user.delay(found.id, full=full)
    click.echo(json.dumps({"job_id": result.id}) if as_json else f"sync job {result.id}")


@cli.command()
@click.argument("user_ident", metavar="USER")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def report(user_ident: str, top: int, as_json: bool) -> None:
    """Show USER's top contacts (relationship score) and digest."""
    from jobsys.interfaces import render
    from jobsys.store.sync import SyncStore

    found = _users().get(user_ident)
    data = SyncStore(_rt().postgres).report(found.id, top=top)
    if as_json:
        render.emit_json({"user": found.as_dict(), **data})
        return
    rows = [
        (
            c["rank"],
            c["addr"],
            c.get("display_name") or "",
            f"{c['score']:.3g}",
            c["messages_out"],
            c["messages_in"],
            c["meetings"],
            c["last_at"],
        )
        for c in data["top_contacts"]
    ]
    cols = ["rank", "address", "name", "score", "sent", "received", "meetings", "last"]
    render.table(f"top contacts of {found.email}", cols, rows)
    if data["digest"]:
        render.record("digest", {k: v for k, v in data["digest"].items()})


@cli.group()
def keys() -> None:
    """Encryption keys for stored tokens (APP_ENCRYPTION_KEY)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key. To rotate, put it first: APP_ENCRYPTION_KEY=new,old."""
    from jobsys.store.tokens import generate_key

    click.echo(generate_key())


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8085, show_default=True)
@click.option("--users", "count", type=click.IntRange(1, 10_000), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def emulator(port: int, count: int, seed: int) -> None:
    """Serve the bundled Google emulator (Gmail v1, Calendar v3) on loopback."""
    from jobsys.connectors.google.emulator import serve

    serve(port, count, seed)


def _settings() -> Any:
    from jobsys.config import Settings

    return Settings.from_env()


@cli.group()
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


@cli.command()
@click.option("--users", type=click.IntRange(1, 1000), default=20, show_default=True)
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
    type=click.FloatRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="share of Google calls answered 5xx",
)
@click.option("--workers", "nodes", type=click.IntRange(1, 8), default=2, show_default=True)
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


cli.add_command(user_group)
cli.add_command(schedule_group)
cli.add_command(api_command)
cli.add_command(token_group)
db.add_command(db_roles)
cli.add_command(google_group)


def main() -> None:
    """Entry point: click errors as click prints them, jobsys errors as one line."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except (JobsysError, ValueError, LookupError) as e:
        click.echo(f"jobsys: error: {e}", err=True)
        sys.exit(1)
