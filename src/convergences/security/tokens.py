"""Signed values (itsdangerous): session cookies and invitation links, each with its own salt."""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


def random_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Signer:
    def __init__(self, secret_key: str, salt: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=salt)

    def dumps(self, value: object) -> str:
        return self._serializer.dumps(value)

    def loads(self, signed: str, max_age: int | None = None) -> object | None:
        """The value, or None when the signature is wrong or expired."""
        try:
            return self._serializer.loads(signed, max_age=max_age)
        except (BadSignature, SignatureExpired):
            return None
