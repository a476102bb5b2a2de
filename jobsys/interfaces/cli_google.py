"""``jobsys google watch``: ask Gmail to push mailbox changes (renew daily: watches last 7 days)."""

from __future__ import annotations

import click

from jobsys.interfaces.clictx import runtime_of, users_of


@click.group()
def google() -> None:
    """Gmail push notifications (see README "Gmail push")."""


@google.command("watch")
@click.argument("users", nargs=-1, metavar="[USER]...")
@click.option("--all", "everyone", is_flag=True, help="every user not paused")
def google_watch(users: tuple[str, ...], everyone: bool) -> None:
    """Enqueue a users.watch for each USER (id or e-mail), or for --all."""
    from jobsys.engine.enqueue import enqueue_many

    rt = runtime_of()
    if rt.settings.gmail_push_topic is None:
        raise click.UsageError("set JOBSYS_GMAIL_PUSH_TOPIC (projects/P/topics/T) first")
    if everyone == bool(users):
        raise click.UsageError("give USER... or --all, not both or neither")
    store = users_of()
    ids = (
        [u.id for u in store.list() if not u.paused]
        if everyone
        else [store.get(u).id for u in users]
    )
    rt.load_imports()
    enqueue_many("google.watch", [(user_id, {}) for user_id in ids], runtime=rt)
    click.echo(f"{len(ids)} watches enqueued (topic {rt.settings.gmail_push_topic})")
