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
