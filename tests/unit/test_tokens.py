from __future__ import annotations

import pytest

from jobsys import ConfigError
from jobsys.store.tokens import TokenCipher, generate_key


def test_tokens_round_trip_and_are_not_stored_in_the_clear() -> None:
    # Given a cipher on a fresh key
    cipher = TokenCipher(generate_key())
    # When a token is encrypted
    blob = cipher.encrypt("ya29.secret")
    # Then the ciphertext hides it and decrypts back
    assert b"secret" not in blob
    assert cipher.decrypt(blob) == "ya29.secret"


def test_rotation_keeps_old_tokens_readable_and_moves_them_to_the_new_key() -> None:
    # Given a token encrypted under the old key
    old, new = generate_key(), generate_key()
    blob = TokenCipher(old).encrypt("refresh-1")
    # When the new key is put first and the token rotated
    both = TokenCipher(f"{new},{old}")
    rotated = both.rotate(blob)
    # Then the old blob still reads, and the rotated one needs only the new key
    assert both.decrypt(blob) == "refresh-1"
    assert TokenCipher(new).decrypt(rotated) == "refresh-1"
    with pytest.raises(ConfigError, match="cannot decrypt"):
        TokenCipher(old).decrypt(rotated)


@pytest.mark.parametrize(
    ("keys", "message"), [(None, "not set"), ("", "not set"), ("garbage", "malformed")]
)
def test_missing_or_malformed_key_is_a_clear_error(keys: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=f"APP_ENCRYPTION_KEY is {message}"):
        TokenCipher(keys)
