"""``jobsys api`` (the HTTP API under uvicorn) and ``jobsys token`` (its bearer tokens)."""

from __future__ import annotations

import click

from jobsys.interfaces.clictx import runtime_of


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port"
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="uvicorn worker processes",
)
@click.option("--access-log", is_flag=True, help="log every request (costs CPU under load)")
def api(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import logging
    import sys

    import uvicorn

    from jobsys.interfaces import obs

    rt = runtime_of()
    rt.urls  # noqa: B018 - resolve the servers (and fail on bad settings) first
    # The supervisor of several workers logs too: the same processors as each worker.
    obs.configure_logging(logging.INFO, fmt=obs.log_format(rt.settings, sys.stderr))
    uvicorn.run(
        "jobsys.interfaces.api.serve:app",
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=None,
        access_log=access_log,
    )


@click.group()
def token() -> None:
    """Bearer tokens of the HTTP API."""


@token.command("create")
@click.option("--admin", is_flag=True, help="a token that sees and acts on every user")
@click.option("--user", "user_ident", default=None, help="the user (id or e-mail) it acts for")
@click.option("--name", default=None, help="a label shown in listings and audit events")
def token_create(admin: bool, user_ident: str | None, name: str | None) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from jobsys.store.api_tokens import TokenStore
    from jobsys.store.users import UserStore

    if admin == (user_ident is not None):
        raise click.UsageError("give exactly one of --admin or --user USER")
    store = runtime_of().postgres
    user_id = UserStore(store).get(user_ident).id if user_ident is not None else None
    made, secret = TokenStore(store).create(name=name or (user_id or "admin"), user_id=user_id)
    click.echo(secret)
    scope = "admin" if made.admin else f"user {made.user_id}"
    click.echo(f"token {made.id} ({scope}): shown once, store it now", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def token_list(as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from jobsys.interfaces import render
    from jobsys.store.api_tokens import TokenStore

    found = TokenStore(runtime_of().postgres).list()
    if as_json:
        render.emit_json([t.as_dict() for t in found])
        return
    rows = [
        (t.id, t.name, "admin" if t.admin else t.user_id, t.created_at, t.revoked_at or "")
        for t in found
    ]
    render.table("API tokens", ["id", "name", "scope", "created", "revoked"], rows)


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
def token_revoke(token_id: int) -> None:
    """Revoke a token: the API refuses it once its token cache forgets it (5 s)."""
    from jobsys.store.api_tokens import TokenStore

    done = TokenStore(runtime_of().postgres).revoke(token_id)
    click.echo(f"token {done.id} ({done.name}) revoked")


@click.command("roles")
@click.option("--print", "only_print", is_flag=True, help="print the statements, run nothing")
def db_roles(only_print: bool) -> None:
    """Create the jobsys_api and jobsys_worker roles and their grants (idempotent)."""
    from jobsys.store import roles

    if only_print:
        click.echo(";\n".join(roles.statements()) + ";")
        return
    roles.create(runtime_of().postgres)
    click.echo(f"roles {roles.API_ROLE} (row-level security) and {roles.WORKER_ROLE} ready")
