"""``jobsys keys``: the keys that encrypt stored OAuth tokens (``APP_ENCRYPTION_KEY``)."""

from __future__ import annotations

import click


@click.group()
def keys() -> None:
    """Encryption keys for stored tokens (APP_ENCRYPTION_KEY)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key. To rotate, put it first: APP_ENCRYPTION_KEY=new,old."""
    from jobsys.store.tokens import generate_key

    click.echo(generate_key())
