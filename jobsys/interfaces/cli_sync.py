"""``jobsys sync`` and ``report``: a user's Gmail and Calendar sync, and what it found."""

from __future__ import annotations

import json

import click

from jobsys.interfaces.cli_jobs import JSON_HELP
from jobsys.interfaces.clictx import runtime_of, users_of


@click.command("sync")
@click.argument("user_ident", metavar="USER")
@click.option("--full", is_flag=True, help="ignore stored cursors and list everything")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def sync_cmd(user_ident: str, full: bool, as_json: bool) -> None:
    """Start a Gmail and Calendar sync for USER (id or email)."""
    from jobsys.tasks import sync_user

    found = users_of().get(user_ident)
    if found.paused:
        raise click.ClickException(f"user {found.email} is paused: {found.paused_reason}")
    result = sync_user.delay(found.id, full=full)
    click.echo(json.dumps({"job_id": result.id}) if as_json else f"sync job {result.id}")


@click.command()
@click.argument("user_ident", metavar="USER")
@click.option(
    "--top", type=click.IntRange(1, 1000), default=10, show_default=True, help="contacts shown"
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def report(user_ident: str, top: int, as_json: bool) -> None:
    """Show USER's top contacts (relationship score) and digest."""
    from jobsys.interfaces import render
    from jobsys.store.sync import SyncStore

    found = users_of().get(user_ident)
    data = SyncStore(runtime_of().postgres).report(found.id, top=top)
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
        render.record("digest", dict(data["digest"].items()))
