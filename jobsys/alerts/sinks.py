"""Where incidents go: a structured log line, and a JSON POST to ``JOBSYS_ALERT_WEBHOOK_URL``.

The webhook is retried with exponential backoff within one evaluation (connection
errors, timeouts, 408, 429 and 5xx; ``JOBSYS_ALERT_WEBHOOK_TRIES`` tries of at most
``JOBSYS_ALERT_WEBHOOK_TIMEOUT`` each; Retry-After is not waited for, which would
hold up the detector); a notification still unsent stays in the
outbox (``alerts.*_sent_at``) and is tried again at the next evaluation, and the
rest wait behind it, so a receiver that is down costs one delivery's tries per
evaluation and gets every notification, in order, once it is back. Delivery is
at least once: a receiver dedupes on ``(id, state)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog

from jobsys.alerts.signals import CATALOGUE
from jobsys.config import Settings
from jobsys.store.alerts import Alert, AlertStore, Notice

log = structlog.get_logger("jobsys.alerts")
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
MAX_BACKOFF = 4.0  # s between tries: an evaluation must not wait long on a receiver


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
    """POSTs notifications to one URL, retrying with exponential backoff, bounded."""

    def __init__(self, url: str, *, timeout: float, tries: int, backoff: float = 0.5) -> None:
        self.url, self.timeout, self.tries, self.backoff = url, timeout, tries, backoff
        parts = urlsplit(url)
        # Webhook URLs often carry a secret in their path: logs and errors name the host only.
        self.shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.secret = url[len(f"{parts.scheme}://{parts.netloc}") :]
        self.session = requests.Session()

    def send(self, alert: Alert, notice: Notice) -> str | None:
        """POST the notification; None once answered 2xx, else what went wrong last."""
        error = ""
        for attempt in range(self.tries):
            if attempt:
                time.sleep(min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)))
            error, retry = self._post(alert, notice)
            if not error:
                return None
            if not retry:
                break
        log.warning(
            "alert.webhook_failed", alert_id=alert.id, state=notice, url=self.shown, error=error
        )
        return error

    def _post(self, alert: Alert, notice: Notice) -> tuple[str, bool]:
        """One request: ``("", _)`` when delivered, else (why, whether to try again)."""
        try:
            reply = self.session.post(
                self.url, json=payload(alert, notice), timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as e:
            text = f"{type(e).__name__}: {e}"
            return (text.replace(self.secret, "/***") if len(self.secret) > 1 else text), True
        if 200 <= reply.status_code < 300:
            return "", False
        return f"HTTP {reply.status_code}", reply.status_code in RETRY_STATUSES

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


def _drain(store: AlertStore, send: Callable[[Alert, Notice], str | None]) -> tuple[int, int]:
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
