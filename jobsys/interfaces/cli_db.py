"""``jobsys db``: the database schema."""

from __future__ import annotations

import click

from jobsys.interfaces.clictx import runtime_of


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option(
    "--revision",
    default="head",
    show_default=True,
    help="migration to stop at (an id from migrations/versions, or head)",
)
def db_upgrade(revision: str) -> None:
    """Migrate the database to the latest schema (run it first, and after each upgrade)."""
    from alembic.util import CommandError

    from jobsys.store.migrate import upgrade

    try:
        upgrade(runtime_of().urls.database, revision)
    except CommandError as e:
        # Alembic names an unknown revision; any other failure is the server's.
        raise click.BadParameter(str(e), param_hint="--revision") from e
    click.echo(f"database at revision {revision}")


@db.command("rollup")
def db_rollup() -> None:
    """Roll up, for the stats, every whole hour of attempts that ended an hour ago.

    The sweeper does it a day's worth per pass; this catches up a long history at once.
    """
    from jobsys.store import rollup

    hours = rollup.roll_up_all(runtime_of().postgres)
    click.echo(f"rolled up {hours} hour(s) of attempts")
