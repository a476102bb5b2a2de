"""``jobsys dlq``: the dead-letter queue."""

from __future__ import annotations

import json
import sys

import click

from jobsys.interfaces.cli_jobs import JSON_HELP
from jobsys.interfaces.clictx import runtime_of
from jobsys.interfaces.clitypes import Duration


@click.group()
def dlq() -> None:
    """The dead-letter queue."""


@dlq.command("list")
@click.option("--kind", default=None, help="only letters of this kind")
@click.option("--user", "user_id", default=None, help="only this user's letters")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="most shown"
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def dlq_list(kind: str | None, user_id: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    from jobsys.interfaces import render

    letters = runtime_of().store.list_dead_letters(kind=kind, user_id=user_id, limit=limit)
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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def dlq_show(letter_id: int, as_json: bool) -> None:
    """Show a dead letter's whole context."""
    from jobsys.interfaces import render

    letter = runtime_of().store.get_dead_letter(letter_id).as_dict()
    if as_json:
        render.emit_json(letter)
    else:
        render.record(f"dead letter {letter_id}", letter)


@dlq.command("retry")
@click.argument("letter_id", type=int)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def dlq_retry(letter_id: int, as_json: bool) -> None:
    """Run a dead-lettered job again with a fresh set of attempts (once per letter)."""
    import kombu.exceptions
    import redis

    from jobsys.engine.operations import retry_dead_letter

    rt = runtime_of()
    try:
        job_id = retry_dead_letter(rt, letter_id, actor="cli")
    except (redis.RedisError, kombu.exceptions.OperationalError) as e:
        # The job was revived in PostgreSQL before its publish failed: it is not
        # lost, the sweeper publishes a due job whose message is missing.
        job = rt.store.get_dead_letter(letter_id).job_id
        raise click.ClickException(
            f"job {job} is queued again but not published (cannot reach Redis: {e}); "
            "the sweeper publishes it once Redis is back"
        ) from e
    click.echo(json.dumps({"job_id": str(job_id)}) if as_json else f"requeued job {job_id}")


@dlq.command("purge")
@click.option(
    "--older-than",
    "older_than",
    type=Duration(unit_required=True),
    required=True,
    help="age of the letters to delete, with its unit: 7d, 12h, 30m",
)
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def dlq_purge(older_than: float, yes: bool, as_json: bool) -> None:
    """Delete dead letters older than a duration (asks first, unless --yes)."""
    if not yes and not _confirmed(f"Delete every dead letter older than {older_than:g} seconds?"):
        raise click.ClickException("nothing purged: not confirmed (--yes purges without asking)")
    count = runtime_of().store.purge_dead_letters(older_than, actor="cli")
    click.echo(json.dumps({"purged": count}) if as_json else f"purged {count} dead letters")


def _confirmed(question: str) -> bool:
    try:
        answer = click.confirm(question, err=True)
    except click.Abort:  # no answer: stdin closed (a script without --yes) or Ctrl-C
        answer = False
    if not sys.stdin.isatty():
        click.echo(err=True)  # an answer read from a pipe was not echoed with its newline
    return answer
