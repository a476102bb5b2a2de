"""Each watched signal under its default policy: an hour of plausible steady noise fires
nothing, a burst fires once and resolves once; the settings and the webhook's payload."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from jobsys.alerts import signals
from jobsys.alerts.detector import Event, step
from jobsys.alerts.sinks import Webhook, payload
from jobsys.config import Settings
from jobsys.errors import ConfigError
from jobsys.store.alerts import Alert

Noise = Callable[[random.Random], float]


def counts(rate: float, n: int = 20) -> Noise:
    """A count of n independent chances of ``rate`` each (about Poisson for small rates)."""
    return lambda rng: float(sum(rng.random() < rate for _ in range(n)))


# signal -> (steady noise, a value during an incident)
CASES: dict[str, tuple[Noise, float]] = {
    "error_rate": (lambda rng: counts(0.05, 60)(rng) / 60, 0.5),
    "start_latency_p95": (lambda rng: rng.lognormvariate(0.5, 0.3), 40.0),
    "duration_p95": (lambda rng: rng.lognormvariate(-1.5, 0.3), 5.0),
    "oldest_queued": (lambda rng: rng.uniform(0.0, 3.0), 600.0),
    "dead_letters": (counts(0.02), 12.0),
    "stale_users": (counts(0.03), 40.0),
    "breaker_openings": (counts(0.01), 8.0),
}


def run(signal: str, values: list[float]) -> list[tuple[int, Event]]:
    settings = Settings()
    spec = signals.CATALOGUE[signal]
    series, policy = signals.fresh(spec, settings), signals.policy(spec, settings)
    events = []
    for minute, value in enumerate(values):
        done = step(series, value, policy)
        series = done.series
        if done.event is not None:
            events.append((minute, done.event))
    return events


def test_every_signal_has_a_case() -> None:
    assert set(CASES) == set(signals.CATALOGUE)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("signal", sorted(CASES))
def test_an_hour_of_steady_noise_fires_nothing(signal: str, seed: int) -> None:
    # Given an hour of a signal's steady noise, one value a minute
    noise, _ = CASES[signal]
    rng = random.Random(seed)
    # Then its default policy opens no incident
    assert run(signal, [noise(rng) for _ in range(60)]) == []


@pytest.mark.parametrize("signal", sorted(CASES))
def test_a_burst_fires_once_and_resolves_once(signal: str) -> None:
    # Given 30 minutes of noise, 5 minutes of incident, 10 minutes of noise again
    noise, hot = CASES[signal]
    rng = random.Random(11)
    values = [noise(rng) for _ in range(30)] + [hot] * 5 + [noise(rng) for _ in range(10)]
    # Then it fires on the incident's second minute and resolves on the third calm one
    assert run(signal, values) == [(31, Event.FIRE), (37, Event.RESOLVE)]


def test_counts_start_warm_from_zero_and_rates_learn_first() -> None:
    settings = Settings(alert_min_samples=7)
    dead = signals.fresh(signals.CATALOGUE["dead_letters"], settings)
    assert (dead.n, dead.level, dead.recent) == (7, 0.0, (0.0,) * 7)
    assert signals.fresh(signals.CATALOGUE["error_rate"], settings).n == 0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("banana", "'banana'"),
        ("ftp://hooks.example.com/x", "'ftp://hooks.example.com/x'"),
        ("https://user:secret@/x", "'https://user:***@/x'"),
    ],
)
def test_a_malformed_webhook_url_is_one_line_naming_setting_value_and_rule(
    value: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(alert_webhook_url=value)
    assert str(caught.value) == (
        f"JOBSYS_ALERT_WEBHOOK_URL={shown} is not a valid URL: "
        "it must be http:// or https:// followed by a host"
    )


def test_webhook_url_accepts_http_and_https_and_empty_means_none() -> None:
    url = "https://hooks.example.com/services/T0/B0/x"
    assert Settings.from_env(alert_webhook_url=url).alert_webhook_url == url
    assert Settings.from_env(alert_webhook_url="").alert_webhook_url is None


def test_an_out_of_range_alert_setting_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="JOBSYS_ALERT_SENSITIVITY"):
        Settings.from_env(alert_sensitivity="0")


def test_the_webhook_payload() -> None:
    at = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    alert = Alert(7, "error_rate", "test.kind", 0.4, 0.02, 0.2, 0.5, at, None, None, None, None,
                  2, "HTTP 503")  # fmt: skip
    assert payload(alert, "firing") == {
        "alert": {
            "id": 7,
            "signal": "error_rate",
            "subject": "test.kind",
            "state": "firing",
            "value": 0.4,
            "baseline": 0.02,
            "threshold": 0.2,
            "peak": 0.5,
            "unit": "ratio",
            "opened_at": "2026-12-03T10:00:00+00:00",
            "resolved_at": None,
            "resolved_value": None,
        }
    }


def test_a_webhook_that_cannot_be_reached_is_an_error_that_keeps_its_path_secret() -> None:
    # Given a port nothing listens on, and a URL whose path is a secret
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = Webhook(f"http://127.0.0.1:{port}/T0/B0/s3cret", timeout=2, tries=2, backoff=0.01)
    at = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    alert = Alert(1, "dead_letters", "*", 9.0, 0.0, 3.0, 9.0, at, None, None, None, None, 0, None)

    # When a notification is sent
    try:
        error = hook.send(alert, "firing")
    finally:
        hook.close()

    # Then it failed, saying why without the path
    assert error is not None and error.startswith("ConnectionError")
    assert "s3cret" not in error
