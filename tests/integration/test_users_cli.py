"""`jobsys user add|list` and `jobsys keys generate`: tokens are stored encrypted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobsys.store.tokens import TokenCipher
from jobsys.store.users import UserStore
from tests.conftest import Env

pytestmark = pytest.mark.integration


def _cli(env: Env, *args: str, key: str | None) -> tuple[int, str, str]:
    saved = os.environ.pop("APP_ENCRYPTION_KEY", None)
    try:
        if key is not None:
            env.environ["APP_ENCRYPTION_KEY"] = key
        else:
            env.environ.pop("APP_ENCRYPTION_KEY", None)
        done = env.cli(*args)
    finally:
        env.environ.pop("APP_ENCRYPTION_KEY", None)
        if saved is not None:
            os.environ["APP_ENCRYPTION_KEY"] = saved
    return done.returncode, done.stdout, done.stderr


def test_user_add_stores_tokens_encrypted_and_lists_the_user(
    jobsys_env: Env, tmp_path: Path
) -> None:
    # Given a key from `jobsys keys generate` and a token file
    code, key, _ = _cli(jobsys_env, "keys", "generate", key=None)
    key = key.strip()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"token": "ya29.access-XYZ", "refresh_token": "1//refresh-ABC"}))

    # When a user is added with it
    code, out, err = _cli(
        jobsys_env,
        "user",
        "add",
        "Ann@Example.com",
        "--token-file",
        str(tokens),
        "--json",
        key=key,
    )

    # Then the user exists, and the stored tokens are ciphertext that the key opens
    assert code == 0, err
    added = json.loads(out)
    assert added["email"] == "ann@example.com"
    stored = UserStore(jobsys_env.store).credential(added["id"], "google")
    assert b"XYZ" not in stored.token
    assert stored.refresh_token is not None and b"ABC" not in stored.refresh_token
    cipher = TokenCipher(key)
    assert cipher.decrypt(stored.token) == "ya29.access-XYZ"
    assert cipher.decrypt(stored.refresh_token) == "1//refresh-ABC"
    code, out, _ = _cli(jobsys_env, "user", "list", "--json", key=key)
    assert [u["email"] for u in json.loads(out)] == ["ann@example.com"]


def test_a_missing_or_wrong_key_is_one_clear_line_and_stores_nothing(
    jobsys_env: Env, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"token": "t", "refresh_token": "r"}))
    for key, message in ((None, "APP_ENCRYPTION_KEY is not set"), ("nope", "is malformed")):
        # When the key is missing or malformed
        code, _, err = _cli(
            jobsys_env, "user", "add", "b@example.com", "--token-file", str(tokens), key=key
        )
        # Then the command says so in one line, and no user was added
        assert code == 1
        assert message in err
        assert "Traceback" not in err
    assert UserStore(jobsys_env.store).list() == []


def test_a_duplicate_user_and_a_bad_email_are_refused(jobsys_env: Env) -> None:
    assert _cli(jobsys_env, "user", "add", "c@example.com", key=None)[0] == 0
    code, _, err = _cli(jobsys_env, "user", "add", "C@example.com", key=None)
    assert (code, "already exists" in err) == (1, True)
    code, _, err = _cli(jobsys_env, "user", "add", "not-an-email", key=None)
    assert (code, "is not an address" in err) == (1, True)


def test_reauth_stores_new_tokens_resumes_the_user_and_closes_the_breaker(
    jobsys_env: Env, tmp_path: Path
) -> None:
    import redis

    from jobsys.guards.breaker import SharedBreaker, breaker_states

    # Given a user parked after an auth failure, whose breaker is open
    _, out, _ = _cli(jobsys_env, "keys", "generate", key=None)
    key = out.strip()
    users = UserStore(jobsys_env.store)
    parked = users.add("carl@example.com")
    users.save_credential(
        parked.id,
        "google",
        token=TokenCipher(key).encrypt("old"),
        refresh_token=TokenCipher(key).encrypt("old-refresh"),
    )
    users.park(parked.id, "google", "token refresh refused: invalid_grant")
    client = redis.Redis.from_url(jobsys_env.broker_url)
    breaker = SharedBreaker(
        client, f"google:user:{parked.id}", fail_max=1, reset_timeout=300, counts=lambda e: True
    )

    def refused() -> None:
        raise RuntimeError("401")

    with pytest.raises(RuntimeError):
        breaker.call(refused)
    assert {b.name: b.state for b in breaker_states(client)}[f"google:user:{parked.id}"] == "open"

    # When an operator stores the user's new tokens
    tokens = tmp_path / "new.json"
    tokens.write_text(json.dumps({"token": "ya29.new", "refresh_token": "1//new"}))
    code, out, err = _cli(
        jobsys_env, "user", "reauth", "carl@example.com", "--token-file", str(tokens), key=key
    )

    # Then the credential is valid with the new tokens, the user runs again, the breaker is closed
    assert code == 0, err
    assert "re-authorised" in out
    stored = users.credential(parked.id, "google")
    assert stored.status == "valid"
    assert TokenCipher(key).decrypt(stored.token) == "ya29.new"
    assert stored.refresh_token is not None
    assert TokenCipher(key).decrypt(stored.refresh_token) == "1//new"
    assert not users.get(parked.id).paused
    assert {b.name: b.state for b in breaker_states(client)}[f"google:user:{parked.id}"] == "closed"

    # And an unknown user is one clear line
    code, _, err = _cli(
        jobsys_env, "user", "reauth", "nobody@example.com", "--token-file", str(tokens), key=key
    )
    assert code == 1 and "nobody@example.com" in err and "Traceback" not in err


def test_user_set_weight_is_stored_and_listed_and_bad_weights_are_refused(
    jobsys_env: Env,
) -> None:
    # Given a user
    assert _cli(jobsys_env, "user", "add", "w@example.com", key=None)[0] == 0

    # When its weight is set to 3
    code, out, err = _cli(jobsys_env, "user", "set", "w@example.com", "--weight", "3", key=None)

    # Then it is stored for admission, and listed
    assert (code, out.strip()) == (0, "w@example.com: weight 3"), err
    (listed,) = json.loads(_cli(jobsys_env, "user", "list", "--json", key=None)[1])
    assert listed["weight"] == 3.0
    assert jobsys_env.store.user_limits()[listed["id"]]["weight"] == 3.0

    # And a weight that is not positive, or a user that does not exist, is one line
    for args, message in (
        (("w@example.com", "--weight", "0"), "--weight"),
        (("w@example.com", "--weight", "abc"), "--weight"),
        (("nobody@example.com", "--weight", "2"), "nobody@example.com"),
        (("", "--weight", "2"), "no user with id ''"),
    ):
        code, _, err = _cli(jobsys_env, "user", "set", *args, key=None)
        assert code != 0 and message in err and "Traceback" not in err, err
    assert jobsys_env.store.user_limits()[listed["id"]]["weight"] == 3.0
