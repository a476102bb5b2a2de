"""Where incidents go: a structured log line, and a JSON POST to ``JOBSYS_ALERT_WEBHOOK_URL``.

The webhook is retried with exponential backoff within one evaluation (urllib3's
``Retry``: connection errors, 429 and 5xx, ``JOBSYS_ALERT_WEBHOOK_TRIES`` tries,
``JOBSYS_ALERT_WEBHOOK_TIMEOUT`` each); a notification still unsent stays in the
outbox (``alerts.*_sent_at``) and is tried again at the next evaluation, and the
rest wait behind it, so a receiver that is down costs one delivery's tries per
evaluation and gets every notification, in order, once it is back. Delivery is
at least once: a receiver dedupes on ``(id, state)``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
import structlog
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from jobsys.alerts.signals import CATALOGUE
from jobsys.config import Settings
from jobsys.store.alerts import Alert, AlertStore, Notice

log = structlog.get_logger("jobsys.alerts")
RETRY_STATUSES = (429, 500, 502, 503, 504)


def payload(alert: Alert, notice: Notice) -> dict[str, Any]:
    """The webhook's JSON body (and the log line's fields)."""
    body = alert.as_dict()
    for private in ("fired_sent_at", "resolved_sent_at", "send_attempts", "send_error"):
        del body[private]
    signal = CATALOGUE.get(alert.signal)
    body.update(state=notice, unit=signal.unit if signal else None)
    return {"alert": body}


def log_notice(alert: Alert, notice: Notice) -> None:
    """The incident's log line (``alert.firing`` or ``alert.resolved``)."""
    fields = payload(alert, notice)["alert"]
    fields["alert_id"] = fields.pop("id")
    if notice == "firing":
        log.warning("alert.firing", **fields)
    else:
        log.info("alert.resolved", **fields)


class Webhook:
    """POSTs notifications to one URL with bounded retries."""

    def __init__(self, url: str, *, timeout: float, tries: int, backoff: float = 0.5) -> None:
        self.url, self.timeout = url, timeout
        parts = urlsplit(url)
        # Webhook URLs often carry a secret in their path: logs name only the host.
        self.shown = f"{parts.scheme}://{parts.hostname}"
        retry = Retry(
            total=tries - 1,
            backoff_factor=backoff,
            backoff_max=4.0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # POST too: receivers dedupe on (id, state)
            raise_on_status=False,
            respect_retry_after_header=False,  # keep an evaluation's wait bounded
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def send(self, alert: Alert, notice: Notice) -> str | None:
        """POST the notification; None once answered 2xx, else what went wrong."""
        try:
            reply = self.session.post(
                self.url, json=payload(alert, notice), timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as e:
            error = f"{type(e).__name__}: {e}".replace(self.url, self.shown)
        else:
            if 200 <= reply.status_code < 300:
                return None
            error = f"HTTP {reply.status_code}"
        log.warning(
            "alert.webhook_failed", alert_id=alert.id, state=notice, url=self.shown, error=error
        )
        return error

    def close(self) -> None:
        self.session.close()


def deliver(store: AlertStore, settings: Settings) -> tuple[int, int]:
    """Send every unsent notification, oldest first; ``(sent, left unsent)``."""
    if settings.alert_webhook_url is None:
        # The log line was the notification: nothing else is owed.
        return _drain(store, lambda alert, notice: None)
    hook = Webhook(
        settings.alert_webhook_url,
        timeout=settings.alert_webhook_timeout,
        tries=settings.alert_webhook_tries,
    )
    try:
        return _drain(store, hook.send)
    finally:
        hook.close()


def _drain(store: AlertStore, send: Any) -> tuple[int, int]:
    sent = 0
    pending = store.unsent()
    for position, alert_id in enumerate(pending):
        # An incident that fired and resolved before delivery owes two notices.
        for _ in range(2):
            outcome = store.send(alert_id, send)
            if outcome is False:
                return sent, len(pending) - position
            if outcome is None:
                break
            sent += 1
    return sent, 0
