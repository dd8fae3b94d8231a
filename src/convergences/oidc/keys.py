"""Signing keys: generated here, private part encrypted with the server secret, JOSE via joserfc."""

from __future__ import annotations

import base64
import json
import logging
import os
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwk, jwt
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.db import utcnow
from convergences.oidc.models import SigningKey
from convergences.settings import Settings

ALGORITHMS = ("ES256", "RS256")
log = logging.getLogger(__name__)


def _aead(secret_key: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"convergences.oidc.signing-keys").derive(secret_key.encode())
    return AESGCM(key)


def encrypt_private(secret_key: str, private_jwk: dict[str, Any]) -> str:
    nonce = os.urandom(12)
    sealed = _aead(secret_key).encrypt(nonce, json.dumps(private_jwk).encode(), b"oidc-key")
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt_private(secret_key: str, blob: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(blob.encode())
    return json.loads(_aead(secret_key).decrypt(raw[:12], raw[12:], b"oidc-key"))  # type: ignore[no-any-return]


def _generate(alg: str) -> jwk.Key:
    if alg == "ES256":
        return jwk.ECKey.generate_key("P-256", private=True)
    if alg == "RS256":
        return jwk.RSAKey.generate_key(2048, private=True)
    raise ValueError(alg)


def new_key(settings: Settings, alg: str, *, delay: timedelta = timedelta(0)) -> SigningKey:
    key = _generate(alg)
    kid = f"{alg.lower()}-{key.thumbprint()[:16]}"
    public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    return SigningKey(kid=kid, alg=alg, public_jwk=public,
                      private_encrypted=encrypt_private(settings.secret_key, key.as_dict(private=True)),
                      activated_at=utcnow() + delay)


async def published(db: AsyncSession) -> list[SigningKey]:
    now = utcnow()
    return list((await db.scalars(select(SigningKey).where(
        or_(SigningKey.remove_after.is_(None), SigningKey.remove_after > now)).order_by(SigningKey.id))).all())


async def jwks(db: AsyncSession) -> dict[str, Any]:
    return {"keys": [k.public_jwk for k in await published(db)]}


async def signing_key(db: AsyncSession, settings: Settings, alg: str) -> SigningKey:
    """The newest active key for ``alg``; the first one is created on demand."""
    now = utcnow()
    key = await db.scalar(select(SigningKey).where(
        SigningKey.alg == alg, SigningKey.activated_at <= now,
        or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now))
        .order_by(SigningKey.activated_at.desc()).limit(1))
    if key is not None and not _usable(settings, key):
        # Encrypted under a previous server secret: it cannot sign any more. Retire it (still published
        # while tokens it signed may live) and sign with a fresh key from now on.
        log.warning("signing key %s cannot be decrypted with the current secret: replaced", key.kid)
        key.retired_at = now
        key.remove_after = now + timedelta(seconds=settings.oidc.id_token_seconds)
        key = None
    if key is None:
        key = new_key(settings, alg)
        db.add(key)
        await db.flush()
    return key


def _usable(settings: Settings, key: SigningKey) -> bool:
    try:
        decrypt_private(settings.secret_key, key.private_encrypted)
    except InvalidTag:
        return False
    return True


def sign(settings: Settings, key: SigningKey, claims: dict[str, Any], typ: str = "JWT") -> str:
    private = jwk.import_key(decrypt_private(settings.secret_key, key.private_encrypted))
    return jwt.encode({"alg": key.alg, "kid": key.kid, "typ": typ}, claims, private)


async def verify(db: AsyncSession, token: str) -> dict[str, Any] | None:
    """Claims of a token signed by one of our published keys (signature only), else None."""
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==").decode())
    except (ValueError, IndexError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    key = await db.scalar(select(SigningKey).where(SigningKey.kid == str(kid))) if kid else None
    if key is None or header.get("alg") != key.alg:
        return None
    try:
        decoded = jwt.decode(token, jwk.import_key(key.public_jwk), algorithms=[key.alg])
    except Exception:  # noqa: BLE001 - any JOSE failure means "not ours"
        return None
    return dict(decoded.claims)


async def rotate(db: AsyncSession, settings: Settings) -> list[SigningKey]:
    """Add a key per algorithm, published now and used after the publish delay; the current keys
    retire when it takes over and stay published for as long again."""
    delay = timedelta(hours=settings.oidc.key_publish_hours)
    now = utcnow()
    added = []
    for alg in ALGORITHMS:
        current = (await db.scalars(select(SigningKey).where(
            SigningKey.alg == alg, SigningKey.retired_at.is_(None)))).all()
        for key in current:
            key.retired_at = max(now + delay, key.activated_at)
            key.remove_after = key.retired_at + delay + timedelta(seconds=settings.oidc.id_token_seconds)
        key = new_key(settings, alg, delay=delay)
        db.add(key)
        added.append(key)
    await db.execute(delete(SigningKey).where(SigningKey.remove_after.is_not(None), SigningKey.remove_after <= now))
    await db.flush()
    return added
