"""OAuth tokens encrypted at rest with Fernet; MultiFernet for key rotation.

``APP_ENCRYPTION_KEY`` holds one or more comma-separated Fernet keys: the first
encrypts, every one decrypts, so a new key goes first and the old one stays
until :meth:`TokenCipher.rotate` has re-encrypted every token.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from jobsys.errors import ConfigError


class TokenCipher:
    """Encrypts and decrypts tokens; never logs or returns them in the clear by accident."""

    def __init__(self, keys: str | None) -> None:
        if not keys or not keys.strip():
            raise ConfigError(
                "APP_ENCRYPTION_KEY is not set: generate one with `jobsys keys generate`"
            )
        try:
            fernets = [Fernet(k.strip()) for k in keys.split(",") if k.strip()]
            self._newest = fernets[0]
            self._fernet = MultiFernet(fernets)
        except (ValueError, TypeError) as e:
            raise ConfigError(
                "APP_ENCRYPTION_KEY is malformed: each comma-separated key must be 32 url-safe "
                "base64-encoded bytes (as `jobsys keys generate` prints)"
            ) from e

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str:
        """Raises ConfigError when no configured key can decrypt the token."""
        try:
            return self._fernet.decrypt(bytes(blob)).decode()
        except InvalidToken as e:
            raise ConfigError(
                "APP_ENCRYPTION_KEY cannot decrypt a stored token: the key that encrypted it "
                "is missing (keep old keys after the new one while rotating)"
            ) from e

    def rotate(self, blob: bytes) -> bytes:
        """Re-encrypt under the first (newest) key."""
        return self._fernet.rotate(bytes(blob))

    def rotate_if_stale(self, blob: bytes) -> bytes | None:
        """The token re-encrypted under the newest key, or None when it already is.

        Raises:
            ConfigError: no configured key can decrypt it.
        """
        try:
            self._newest.decrypt(bytes(blob))
        except InvalidToken:
            pass
        else:
            return None
        try:
            return self._fernet.rotate(bytes(blob))
        except InvalidToken as e:
            raise ConfigError(
                "APP_ENCRYPTION_KEY cannot decrypt a stored token: the key that encrypted it "
                "is missing (keep old keys after the new one while rotating)"
            ) from e


def generate_key() -> str:
    return Fernet.generate_key().decode()
