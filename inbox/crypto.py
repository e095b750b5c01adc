"""Encryption at rest for access tokens (Fernet, keyed by TOKEN_ENCRYPTION_KEY)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


class TokenDecryptError(RuntimeError):
    """A stored token cannot be read with the configured key(s)."""


def _fernet() -> MultiFernet:
    # Several comma-separated keys allow rotation: the first encrypts, all decrypt.
    keys = [k.strip() for k in current_app.config["TOKEN_ENCRYPTION_KEY"].split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt_token(token: str) -> str:
    return _fernet().encrypt(token.encode()).decode()


def decrypt_token(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise TokenDecryptError("the access token cannot be decrypted with TOKEN_ENCRYPTION_KEY") from exc
