"""``jobsys enqueue``, ``jobs``, ``job`` and ``cancel``: jobs one at a time."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from jobsys.errors import JobNotFoundError, OptionError
from jobsys.interfaces.clictx import runtime_of
from jobsys.interfaces.clitypes import Seconds
from jobsys.store import Status

JSON_HELP = "machine-readable output"
# Deeper JSON is no payload a person types; pydantic refuses to serialize far less
# deep than json.loads accepts, with a message that names no flag.
MAX_PAYLOAD_DEPTH = 100
# The API's option names, as the flags that carry them are spelled.
_FLAGS = {"delay": "--delay", "priority": "--priority", "user_id": "--user"}


def _import_kinds(extra: tuple[str, ...] = ()) -> None:
    # Modules of the current directory are found: `jobsys` puts it on sys.path.
    runtime_of().load_imports(extra)


def _payload(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--payload") from e
    except RecursionError as e:
        raise click.BadParameter("JSON nested too deeply", param_hint="--payload") from e
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    if _depth(data) > MAX_PAYLOAD_DEPTH:
        raise click.BadParameter(
            f"JSON nested more than {MAX_PAYLOAD_DEPTH} levels deep", param_hint="--payload"
        )
    return data


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iteratively: no recursion limit)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children)
    return deepest


@click.command()
@click.argument("kind")
@click.option("--user", "user_id", required=True, help="user the job works for")
@click.option("--payload", default="{}", show_default=True, help="payload as a JSON object")
@click.option("--priority", type=click.IntRange(0, 9), default=None, help="0 normal .. 9 urgent")
@click.option("--delay", type=Seconds(), default=0.0, help="seconds before it may run")
@click.option("--unique-key", default=None, help="at most one live job holds this key")
@click.option("--import", "imports", multiple=True, help="module defining job kinds")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
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
    """Create a job of KIND (it runs when a worker admits it)."""
    import kombu.exceptions
    import redis

    from jobsys.engine.enqueue import enqueue as do_enqueue

    data = _payload(payload)
    _import_kinds(imports)
    try:
        result = do_enqueue(
            kind,
            user_id=user_id,
            payload=data,
            priority=priority,
            unique_key=unique_key,
            delay=delay,
            runtime=runtime_of(),
        )
    except OptionError as e:
        flag = _FLAGS.get(e.field, f"--{e.field.replace('_', '-')}")
        raise click.BadParameter(f"{e.rule}, got {e.value!r}", param_hint=flag) from e
    except (redis.RedisError, kombu.exceptions.OperationalError) as e:
        # Only a publish needs Redis, and it comes after the row was committed.
        raise click.ClickException(
            f"the job is stored but not yet published (cannot reach Redis: {e}); "
            "the sweeper publishes it once Redis is back"
        ) from e
    click.echo(json.dumps({"id": result.id}) if as_json else result.id)


@click.command()
@click.option("--user", "user_id", default=None, help="only this user's jobs")
@click.option(
    "--status",
    type=click.Choice([s.value for s in Status]),
    default=None,
    help="only jobs in this status",
)
@click.option("--kind", default=None, help="only jobs of this kind")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="most shown"
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def jobs(
    user_id: str | None, status: str | None, kind: str | None, limit: int, as_json: bool
) -> None:
    """List recent jobs, newest first."""
    from jobsys.interfaces import render

    found = runtime_of().store.list_jobs(
        user_id=user_id, status=Status(status) if status else None, kind=kind, limit=limit
    )
    if as_json:
        render.emit_json([j.as_dict() for j in found])
        return
    rows = [(j.id, j.kind, j.user_id, j.status.value, j.attempt, j.created_at) for j in found]
    render.table("jobs", ["id", "kind", "user", "status", "attempt", "created"], rows)


def resolve_job(text: str) -> uuid.UUID:
    """A job id from its full form or a unique prefix of it (as tables show it cut short).

    Raises:
        click.BadParameter: not an id, or a prefix that several jobs share.
        JobNotFoundError: no job id starts so.
    """
    from jobsys.store.lookup import IdLookup, id_prefix

    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    if id_prefix(text) is None:
        raise click.BadParameter(
            f"{text!r} is not a job id nor the start of one (hex digits)", param_hint="JOB_ID"
        )
    ids, count = IdLookup(runtime_of().postgres).jobs(text)
    if count == 0:
        raise JobNotFoundError("job", f"starting with {text!r}")
    if count > 1:
        raise click.BadParameter(
            f"{count} jobs have an id starting with {text!r}: give more of it",
            param_hint="JOB_ID",
        )
    return ids[0]


@click.command("job")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def job_cmd(job_id: str, as_json: bool) -> None:
    """Show one job: JOB_ID is its id or the start of it."""
    from jobsys.interfaces import render

    found = runtime_of().store.get_job(resolve_job(job_id)).as_dict()
    if as_json:
        render.emit_json(found)
    else:
        render.record(f"job {found['id']}", found)


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a queued job, or ask a running one to stop (JOB_ID: its id or the start of it)."""
    from jobsys.engine.operations import cancel as do_cancel

    found = resolve_job(job_id)
    status = do_cancel(runtime_of(), found, actor="cli")
    click.echo(f"job {found}: {'cancelled' if status is Status.CANCELLED else 'cancel requested'}")
