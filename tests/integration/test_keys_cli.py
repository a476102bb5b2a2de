"""``jobsys keys rotate``: every stored token re-encrypted under the newest key."""

from __future__ import annotations

import pytest

from jobsys.store.tokens import TokenCipher, generate_key
from jobsys.store.users import UserStore
from tests.conftest import Env
from tests.support.cli import jobsys, one_error_line

pytestmark = pytest.mark.integration


def test_keys_rotate_reencrypts_every_token_under_the_newest_key(jobsys_env: Env) -> None:
    # Given tokens stored under key A
    key_a, key_b = generate_key(), generate_key()
    users = UserStore(jobsys_env.store)
    ann, bob = users.add("ann@example.com"), users.add("bob@example.com")
    old = TokenCipher(key_a)
    users.save_credential(
        ann.id, "google", token=old.encrypt("ann-t"), refresh_token=old.encrypt("ann-r")
    )
    users.save_credential(bob.id, "google", token=old.encrypt("bob-t"), refresh_token=None)

    # When the keys are rotated with B first and A still listed
    done = jobsys(jobsys_env, "keys", "rotate", APP_ENCRYPTION_KEY=f"{key_b},{key_a}")

    # Then every token was re-encrypted, and B alone reads them back
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "re-encrypted 3 tokens under the newest key",
    ), done.stderr
    only_b = TokenCipher(key_b)
    ann_cred, bob_cred = users.credential(ann.id, "google"), users.credential(bob.id, "google")
    assert only_b.decrypt(ann_cred.token) == "ann-t"
    assert ann_cred.refresh_token is not None
    assert only_b.decrypt(ann_cred.refresh_token) == "ann-r"
    assert only_b.decrypt(bob_cred.token) == "bob-t"
    assert bob_cred.refresh_token is None

    # And a second rotation has nothing left to do
    again = jobsys(jobsys_env, "keys", "rotate", APP_ENCRYPTION_KEY=f"{key_b},{key_a}")
    assert again.stdout.strip() == "re-encrypted 0 tokens under the newest key"
    assert users.credential(ann.id, "google").token == ann_cred.token


def test_keys_rotate_without_the_old_key_changes_nothing(jobsys_env: Env) -> None:
    key_a, key_b = generate_key(), generate_key()
    users = UserStore(jobsys_env.store)
    ann = users.add("ann@example.com")
    stored = TokenCipher(key_a).encrypt("ann-t")
    users.save_credential(ann.id, "google", token=stored, refresh_token=None)

    line = one_error_line(jobsys(jobsys_env, "keys", "rotate", APP_ENCRYPTION_KEY=key_b))

    assert f"google token of user {ann.id}" in line and "nothing was changed" in line
    assert key_b not in line
    assert users.credential(ann.id, "google").token == stored
