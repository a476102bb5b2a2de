"""``jobsys user``: users, their Google tokens, their share of the fleet and quotas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jobsys.interfaces.clictx import runtime_of as _rt
from jobsys.interfaces.clictx import users_of as _users
from jobsys.interfaces.clitypes import FiniteRange


def _cipher() -> Any:
    from jobsys.store.tokens import TokenCipher

    key = _rt().settings.encryption_key
    return TokenCipher(key.get_secret_value() if key else None)


@click.group()
def user() -> None:
    """Users whose Gmail and Calendar jobsys syncs."""


@user.command("add")
@click.argument("email")
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='JSON file {"token": ..., "refresh_token": ...} with Google OAuth tokens',
)
@click.option("--region", default="default", show_default=True, help="the user's data region")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def user_add(email: str, token_file: str | None, region: str, as_json: bool) -> None:
    """Add a user, with their Google tokens stored encrypted."""
    tokens = _read_token_file(token_file) if token_file else None
    cipher = _cipher() if tokens else None  # fail on a missing key before storing anything
    users = _users()
    added = users.add(email, region=region)
    if tokens and cipher:
        refresh = tokens.get("refresh_token")
        users.save_credential(
            added.id,
            "google",
            token=cipher.encrypt(tokens["token"]),
            refresh_token=cipher.encrypt(refresh) if refresh else None,
        )
    click.echo(json.dumps(added.as_dict()) if as_json else f"added {added.email} as {added.id}")


@user.command("reauth")
@click.argument("user_ident", metavar="USER")
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help='JSON file {"token": ..., "refresh_token": ...} with the new Google OAuth tokens',
)
def user_reauth(user_ident: str, token_file: str) -> None:
    """Store a parked user's new tokens, resume the user and close their breaker."""
    import redis

    from jobsys.pipeline.guarding import reset_user_breaker

    tokens = _read_token_file(token_file)
    cipher = _cipher()  # fail on a missing key before storing anything
    users = _users()
    found = users.get(user_ident)
    refresh = tokens.get("refresh_token")
    users.save_credential(
        found.id,
        "google",
        token=cipher.encrypt(tokens["token"]),
        refresh_token=cipher.encrypt(refresh) if refresh else None,
    )
    users.unpark(found.id)
    try:
        reset_user_breaker(_rt(), found.id)
    except redis.RedisError as e:
        click.echo(
            f"jobsys: warning: breaker of {found.email} not reset ({e}); "
            "it closes after its reset timeout",
            err=True,
        )
    click.echo(f"{found.email} re-authorised and resumed")


def _read_token_file(path: str) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"cannot read JSON: {e}", param_hint="--token-file") from e
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        raise click.BadParameter(
            'must hold {"token": "...", "refresh_token": "..."}', param_hint="--token-file"
        )
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


# Quotas are PostgreSQL integers.
MAX_LIMIT = 2**31 - 1
# Given for a quota or an interval: back to the settings' value (stored as NULL).
DEFAULT = "default"


class _Limit(click.ParamType[int | str]):
    """A positive whole number, or ``default`` for the settings' value."""

    name = "N|default"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, str) and value.strip().lower() == DEFAULT:
            return DEFAULT
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number < 1:
            self.fail(f"{value!r} is not a whole number >= 1 or 'default'", param, ctx)
        if number > MAX_LIMIT:
            self.fail(f"{value!r} exceeds {MAX_LIMIT}, the largest limit stored", param, ctx)
        return number


class _Interval(click.ParamType[float | str]):
    """A duration (``90``, ``30m``, ``2h``), or ``default`` for the settings' value."""

    name = "DURATION|default"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        from jobsys.interfaces.clitypes import parse_duration

        if isinstance(value, str) and value.strip().lower() == DEFAULT:
            return DEFAULT
        try:
            seconds = parse_duration(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if seconds < 1:
            self.fail(f"{value!r} is shorter than one second", param, ctx)
        return seconds


@user.command("set")
@click.argument("user_ident", metavar="USER")
@click.option(
    "--weight",
    type=FiniteRange(min=0, min_open=True, max=1000),
    default=None,
    help="USER's share of the fleet against other users waiting (default 1)",
)
@click.option("--max-queued", type=_Limit(), default=None, help="queued jobs USER may hold")
@click.option("--max-per-hour", type=_Limit(), default=None, help="jobs USER may enqueue/hour")
@click.option("--sync-interval", type=_Interval(), default=None, help="time between periodic syncs")
def user_set(
    user_ident: str, weight: float | None, max_queued: Any, max_per_hour: Any, sync_interval: Any
) -> None:
    """Set USER's (id or email) share of the fleet, quotas and sync interval.

    A quota or interval given as 'default' follows the settings again
    (JOBSYS_USER_MAX_QUEUED, JOBSYS_USER_MAX_PER_HOUR, JOBSYS_SYNC_INTERVAL).
    """
    from jobsys.store.schedule import ScheduleStore

    given = {"weight": weight, "max_queued": max_queued, "max_per_hour": max_per_hour}
    changes = {k: None if v == DEFAULT else v for k, v in given.items() if v is not None}
    if not changes and sync_interval is None:
        raise click.UsageError(
            "nothing to set: give --weight, --max-queued, --max-per-hour or --sync-interval"
        )
    found = _users().get(user_ident)
    if changes:
        _rt().store.set_limits(found.id, changes)
    if sync_interval is not None:
        every = None if sync_interval == DEFAULT else float(sync_interval)
        ScheduleStore(_rt().postgres).set_interval(found.id, every)
        changes["sync_interval"] = every
    shown = ", ".join(f"{k} {_shown(v)}" for k, v in sorted(changes.items()))
    click.echo(f"{found.email}: {shown}")


def _shown(value: Any) -> str:
    return "default" if value is None else f"{value:g}"


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def user_list(as_json: bool) -> None:
    """List users, with their share of the fleet, quotas and sync interval in effect."""
    from jobsys.interfaces import render

    found = _users().list()
    effective = {u.id: _effective(u) for u in found}
    if as_json:
        render.emit_json([{**u.as_dict(), **effective[u.id]} for u in found])
        return
    rows = [
        (
            u.id,
            u.email,
            u.region,
            f"{effective[u.id]['weight']:g}",
            _limit_text(effective[u.id]["max_queued"]),
            _limit_text(effective[u.id]["max_per_hour"]),
            f"{effective[u.id]['sync_every']:g}s",
            "paused: " + (u.paused_reason or "") if u.paused else "",
        )
        for u in found
    ]
    columns = ["id", "email", "region", "weight", "max queued", "max/hour", "sync every", "state"]
    render.table("users", columns, rows)


def _effective(found: Any) -> dict[str, Any]:
    settings = _rt().settings
    limits = _limits().get(found.id, {})
    queued, hourly = limits.get("max_queued"), limits.get("max_per_hour")
    return {
        "weight": float(limits.get("weight", 1.0)),
        "max_queued": queued if queued is not None else settings.user_max_queued,
        "max_per_hour": hourly if hourly is not None else settings.user_max_per_hour,
        "sync_every": found.sync_interval or settings.sync_interval,
    }


def _limits() -> dict[str, dict[str, Any]]:
    ctx = click.get_current_context()
    if "limits" not in ctx.meta:
        ctx.meta["limits"] = _rt().store.user_limits()
    return ctx.meta["limits"]  # type: ignore[no-any-return]


def _limit_text(value: int | None) -> str:
    return "-" if value is None else str(value)
