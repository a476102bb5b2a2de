from __future__ import annotations

import pytest

from jobsys import ConfigError
from jobsys.config import Settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBSYS_DATABASE_URL", "mysql://x/y"),
        ("JOBSYS_DATABASE_URL", "not a url"),
        ("JOBSYS_BROKER_URL", "amqp://guest@localhost//"),
        ("JOBSYS_DEFAULT_MAX_ATTEMPTS", "zero"),
    ],
)
def test_malformed_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Given a malformed environment variable
    monkeypatch.setenv(variable, value)
    # When settings are read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    # Then the error names the variable and the value
    assert variable in str(caught.value)
    assert value in str(caught.value)


def test_settings_are_frozen_and_parse_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSYS_IMPORTS", "a.b, c")
    settings = Settings()
    assert settings.imports == ("a.b", "c")
    with pytest.raises(Exception, match="frozen"):
        settings.retry_cap = 1  # type: ignore[misc]


def test_a_redis_broker_uses_jobsys_redis_transport() -> None:
    # The transport that survives kombu's restore on a collected connection
    # (jobsys.engine.transport); other brokers keep their own.
    from jobsys.engine.celeryconf import _redis_transport
    from jobsys.engine.transport import TRANSPORT, Transport

    assert _redis_transport("redis://127.0.0.1:6379/0") == {"broker_transport": TRANSPORT}
    assert _redis_transport("rediss://cache.example:6380/1") == {"broker_transport": TRANSPORT}
    assert _redis_transport("amqp://guest@localhost//") == {}
    assert TRANSPORT == "jobsys.engine.transport:Transport"
    assert Transport.Channel.QoS.__module__ == "jobsys.engine.transport"
