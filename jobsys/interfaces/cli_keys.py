"""``jobsys keys``: the keys that encrypt stored OAuth tokens (``APP_ENCRYPTION_KEY``)."""

from __future__ import annotations

import json

import click

from jobsys.errors import ConfigError
from jobsys.interfaces.cli_jobs import JSON_HELP
from jobsys.interfaces.clictx import runtime_of, users_of


@click.group()
def keys() -> None:
    """Encryption keys for stored tokens (APP_ENCRYPTION_KEY)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key. To rotate, put it first: APP_ENCRYPTION_KEY=new,old."""
    from jobsys.store.tokens import generate_key

    click.echo(generate_key())


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def keys_rotate(as_json: bool) -> None:
    """Re-encrypt every stored token under the first (newest) key of APP_ENCRYPTION_KEY.

    Afterwards the older keys can be dropped from the list. Tokens already under
    the newest key are left as they are, so running it again changes nothing.
    """
    from jobsys.store.tokens import TokenCipher

    key = runtime_of().settings.encryption_key
    cipher = TokenCipher(key.get_secret_value() if key else None)

    def rewrap(user_id: str, provider: str, token: bytes) -> bytes | None:
        try:
            return cipher.rotate_if_stale(token)
        except ConfigError as e:
            raise ConfigError(
                f"{provider} token of user {user_id}: {e}; nothing was changed"
            ) from e

    count = users_of().rewrap_credentials(rewrap)
    if as_json:
        click.echo(json.dumps({"reencrypted": count}))
    else:
        click.echo(f"re-encrypted {count} tokens under the newest key")
