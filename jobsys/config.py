"""One frozen settings object, read once from the environment (prefix ``JOBSYS_``).

The edge of a process (CLI command, worker start, test fixture) builds one with
:meth:`Settings.from_env` into its :class:`~jobsys.engine.runtime.Runtime`, which
passes it down.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from jobsys.errors import ConfigError

_DB_SCHEMES = ("postgresql", "postgresql+psycopg2")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
# ``scheme://user:password@`` (the user may be empty, as in ``redis://:pw@host``).
_USERINFO_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s@/]*@")


def mask_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***``."""
    return mask_secrets(url)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``
    (``postgresql://u:***@host/db``): for messages that quote configuration."""
    return _USERINFO_PASSWORD.sub(r"\1***@", text)


class Settings(BaseSettings):
    """Runtime configuration; every field maps to ``JOBSYS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="JOBSYS_", frozen=True, extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(None, description="PostgreSQL URL; embedded when unset")
    broker_url: str | None = Field(None, description="Redis broker URL; embedded when unset")
    result_backend: str | None = Field(None, description="Redis result backend; broker's if unset")
    imports: Annotated[tuple[str, ...], NoDecode] = Field(
        ("jobsys.tasks",),
        description="modules defining job kinds (jobsys.tasks: the Gmail and Calendar sync)",
    )
    home: Path = Field(Path(".jobsys"), description="folder for embedded servers' data")

    encryption_key: SecretStr | None = Field(
        None,
        validation_alias="APP_ENCRYPTION_KEY",
        description="Fernet key(s) for OAuth tokens; comma-separated, newest first",
    )
    pipeline_repair_after: float = Field(
        15.0, gt=0, description="quiet seconds before a stalled pipeline run is resumed"
    )
    google_api_endpoint: str | None = Field(None, description="Google API base URL (emulator)")
    google_token_uri: str = Field("https://oauth2.googleapis.com/token")
    google_client_id: str = Field("jobsys")
    google_client_secret: SecretStr = Field(SecretStr("jobsys"))
    gmail_push_topic: str | None = Field(
        None,
        pattern=r"^projects/[^/]+/topics/[^/]+$",
        description="Pub/Sub topic `jobsys google watch` asks Gmail to publish changes to",
    )
    push_token: SecretStr | None = Field(
        None, description="shared secret of the push endpoint (its URL's ?token=), 16+ characters"
    )
    api_database_url: str | None = Field(
        None,
        description="PostgreSQL URL for user tokens' reads and own-row writes: a login in role"
        " jobsys_api",
    )
    api_token_cache: float = Field(
        5.0, ge=0, le=3600, description="seconds the API trusts a token it checked (0: always ask)"
    )
    api_threads: int = Field(
        8, ge=1, le=200, description="request threads per API worker (each holds a connection)"
    )
    push_delay: float = Field(
        1.0, ge=0, le=3600, description="seconds a pushed sync waits, so a burst makes one"
    )

    # Guards around Google (README "Guards"). Limits are per user and per project, in
    # Google's quota units for Gmail (messages.get 5, messages.list 5, history.list 2,
    # getProfile 1) and in requests for Calendar.
    guards: bool = Field(True, description="rate limits, breakers, adaptive batches, throttling")
    gmail_user_units_per_second: float = Field(250.0, gt=0, description="15,000 units/min/user")
    gmail_user_burst_units: float = Field(500.0, ge=5, description="units a user may spend at once")
    gmail_project_units_per_second: float = Field(20_000.0, gt=0, description="1.2M units/min")
    gmail_project_burst_units: float = Field(40_000.0, ge=5)
    calendar_user_requests_per_second: float = Field(10.0, gt=0, description="600 requests/min")
    calendar_user_burst: float = Field(10.0, ge=1)
    calendar_project_requests_per_second: float = Field(500.0, gt=0)
    calendar_project_burst: float = Field(1_000.0, ge=1)
    quota_max_wait: float = Field(
        10.0, ge=0, description="seconds a call waits for quota before its job is postponed"
    )
    google_transient_tries: int = Field(
        5, ge=1, description="tries of a request (or batch part) answered 5xx before it fails"
    )
    breaker_fail_max: int = Field(5, ge=1, description="provider failures in a row that open it")
    breaker_reset_timeout: float = Field(30.0, gt=0, description="seconds open before one trial")
    user_breaker_fail_max: int = Field(1, ge=1, description="auth failures that open a user's")
    user_breaker_reset_timeout: float = Field(300.0, gt=0)
    batch_min: int = Field(10, ge=1, le=100, description="smallest messages.get batch")
    batch_max: int = Field(100, ge=1, le=100, description="largest messages.get batch")
    batch_step: int = Field(10, ge=1, description="additive increase after a clean batch")
    batch_latency_target: float = Field(
        2.0, gt=0, description="a batch slower than this (s) stops the batch size growing"
    )
    throttle_error_rate: float = Field(
        0.15, gt=0, lt=1, description="error share over the window that halves concurrency"
    )
    throttle_window: float = Field(60.0, gt=0, description="seconds of outcomes considered")
    throttle_min_samples: int = Field(20, ge=1, description="outcomes needed before adjusting")
    ingest_user_concurrency: int = Field(2, ge=1, description="ingestion jobs per user at once")
    ingest_provider_concurrency: int = Field(32, ge=1, description="ingestion jobs at once")

    visibility_timeout: int = Field(3600, ge=60, description="Redis redelivery timeout, s")
    default_timeout: int = Field(180, ge=1, description="hard time limit of a job, s")
    default_soft_timeout: int = Field(150, ge=1, description="soft time limit of a job, s")
    default_max_attempts: int = Field(5, ge=1, le=100)
    retry_base: float = Field(1.0, gt=0, description="first retry backoff ceiling, s")
    retry_cap: float = Field(300.0, gt=0, description="largest retry backoff, s")
    lease_grace: int = Field(15, ge=1, description="lease beyond the hard time limit, s")
    max_postpone: float = Field(
        86_400.0,
        gt=0,
        description="s a job may go on being postponed, from its first postponement, before"
        " it is dead-lettered (postponed_too_long); a kind may set its own",
    )
    freshness_slo: float = Field(
        900.0,
        gt=0,
        description="s since a user's last successful sync beyond which `jobsys stats` calls"
        " their data stale and the alert detector counts them",
    )
    max_payload_bytes: int = Field(
        256 * 1024, ge=1, description="largest payload an enqueue accepts, in bytes of JSON"
    )

    # Admission (README "Fair scheduling"): the backlog waits in PostgreSQL and each
    # node keeps a ready buffer of its queues' messages in the broker.
    admission: bool = Field(
        True, description="enqueue into PostgreSQL's backlog; nodes publish fairly as slots free"
    )
    ready_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="seconds of work a node publishes per refill of its ready buffer",
    )
    ready_min: int = Field(
        0, ge=0, description="fewest messages a refill publishes (0: the node's concurrency)"
    )
    ready_max: int = Field(2000, ge=1, description="most messages a node keeps ready per queue")
    priority_aging: float = Field(
        60.0, gt=0, description="s a job waits before it goes ahead of its user's other jobs"
    )
    key_recheck: float = Field(
        0.2,
        gt=0,
        le=60,
        description="s until jobs waiting for a concurrency key are looked at again when no"
        " holder's end woke them",
    )
    # Quotas (README "Quotas"): defaults for users without an override in the database.
    user_max_queued: int | None = Field(
        None, ge=1, description="queued jobs a user may hold (unset: no limit)"
    )
    user_max_per_hour: int | None = Field(
        None, ge=1, description="jobs a user may enqueue per hour (unset: no limit)"
    )
    # Periodic syncs (README "Periodic syncs"): one beat entry ticks for every user.
    sync_interval: float = Field(300.0, ge=1, description="seconds between a user's syncs")
    schedule_tick: float = Field(30.0, gt=0, description="period of the schedule's tick, s")
    schedule_batch: int = Field(1000, ge=1, le=50_000, description="users enqueued per batch")
    worker_heartbeat: float = Field(10.0, gt=0, description="worker heartbeat period, s")
    worker_dead_after: float = Field(60.0, gt=0, description="missed-heartbeat window, s")
    sweep_interval: float = Field(15.0, gt=0, description="sweeper period in every worker node, s")
    lost_after: float = Field(20.0, gt=0, description="due job unclaimed this long is lost, s")
    task_events: bool = Field(
        False, description="send task events without Flower asking (Flower enables them itself)"
    )
    db_retry_delay: float = Field(2.0, gt=0, description="wait before retrying a DB outage, s")
    log_format: Literal["json", "console"] | None = Field(
        None, description="json or console; unset: console on a terminal, else JSON lines"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="port of a worker node's /metrics; unset: no server"
    )
    metrics_dir: Path | None = Field(
        None, description="where worker nodes keep multiprocess metrics (a folder per node)"
    )
    trace_file: Path | None = Field(
        None, description="append finished spans to this file as JSON lines (turns tracing on)"
    )
    unknown_kind_deliveries: int = Field(
        3, ge=1, description="deliveries to workers that lack a job's kind before it is dead"
    )
    # Anomaly alerting (README "Alerts"): a beat task evaluates the fleet's signals.
    alert_interval: float = Field(60.0, ge=1, le=3600, description="s between evaluations")
    alert_window: float = Field(
        300.0, ge=10, le=86_400, description="s of history each signal is computed over"
    )
    alert_webhook_url: str | None = Field(
        None, description="http(s) URL that gets a JSON POST per incident fired or resolved"
    )
    alert_webhook_timeout: float = Field(
        5.0, gt=0, le=60, description="s a webhook request may take"
    )
    alert_webhook_tries: int = Field(
        3, ge=1, le=10, description="tries per delivery in one evaluation (backoff between)"
    )
    alert_min_samples: int = Field(
        10, ge=1, description="evaluations a series learns from before it may fire"
    )
    alert_fire_after: int = Field(2, ge=1, description="hot evaluations in a row that fire")
    alert_resolve_after: int = Field(3, ge=1, description="calm evaluations in a row to resolve")
    alert_sensitivity: float = Field(
        6.0, gt=0, le=100, description="fire above baseline + this many robust deviations"
    )
    alert_min_volume: int = Field(
        10, ge=1, description="attempts a kind or queue needs in the window to be judged"
    )

    @field_validator("database_url", "api_database_url")
    @classmethod
    def _check_db(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_scheme(f"JOBSYS_{str(info.field_name).upper()}", value, _DB_SCHEMES)

    @field_validator("push_token")
    @classmethod
    def _check_push_token(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty or short secret would be guessed, or matched by a request sending none.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("JOBSYS_PUSH_TOKEN: must be at least 16 characters (value not shown)")
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme, sep, rest = value.partition("://")
        host = rest.split("/", 1)[0].rpartition("@")[2]
        if not sep or scheme not in ("http", "https") or not host or host.startswith(":"):
            raise ValueError(
                f"JOBSYS_ALERT_WEBHOOK_URL={mask_url(value)!r} is not a valid URL: "
                "it must be http:// or https:// followed by a host"
            )
        return value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        return _check_scheme("JOBSYS_BROKER_URL/RESULT_BACKEND", value, _REDIS_SCHEMES)

    @field_validator("imports", mode="before")
    @classmethod
    def _split_imports(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_batches(self) -> Settings:
        if self.batch_min > self.batch_max:
            raise ValueError(
                f"JOBSYS_BATCH_MIN={self.batch_min} must not exceed "
                f"JOBSYS_BATCH_MAX={self.batch_max}"
            )
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the environment (``JOBSYS_*``); a malformed value raises :class:`ConfigError`."""
        # Not chained: pydantic's error quotes each value as given, passwords included.
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as e:
            raise ConfigError(mask_secrets(_describe(e))) from None
        except SettingsError as e:
            raise ConfigError(mask_secrets(str(e))) from None

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> Settings:
        """Settings from variables given as a mapping (``JOBSYS_*``, ``APP_ENCRYPTION_KEY``),
        over what the environment says; for a process that configures its children too.

        Raises:
            ConfigError: a value is malformed.
        """
        fields: dict[str, object] = {}
        for name, value in variables.items():
            if name == "APP_ENCRYPTION_KEY":
                fields["encryption_key"] = value
            elif name.startswith("JOBSYS_"):
                fields[name.removeprefix("JOBSYS_").lower()] = value
        return cls.from_env(**fields)

    def with_urls(self, database_url: str, broker_url: str) -> Settings:
        """Return a copy pointing at the given servers."""
        return self.model_copy(update={"database_url": database_url, "broker_url": broker_url})


def _check_scheme(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in schemes or not rest:
        allowed = ", ".join(f"{s}://" for s in schemes)
        shown = mask_url(value)
        raise ValueError(f"{name}={shown!r} is not a valid URL: it must start with {allowed}")
    return value


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        msg = str(item["msg"]).removeprefix("Value error, ")
        if not msg.startswith("JOBSYS_"):
            shown = _shown_input(field, item.get("input"))
            msg = f"JOBSYS_{field.upper()}: {msg} (got {shown})"
        parts.append(msg)
    return "; ".join(parts)


_SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
)


def _shown_input(field: str, value: object) -> str:
    # A secret's value is never quoted back, however malformed: every SecretStr field.
    if field in _SECRET_FIELDS or field == "APP_ENCRYPTION_KEY":
        return "a value that is not shown"
    return mask_secrets(repr(value))
