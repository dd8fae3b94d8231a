"""TOTP (RFC 6238, 30 s steps, 6 digits, ±1 step) and recovery codes: no web-framework imports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import datetime

import pyotp
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

STEP_SECONDS = 30
TOLERANCE = 1  # steps accepted on either side of now (clock drift)
RECOVERY_CODES = 10
# 24 characters of a 31-letter alphabet: about 119 bits, so a SHA-256 digest is an acceptable store for a
# lookup secret (ASVS 5.0 6.5.2: 112 bits or more; below that a salted slow hash would be needed).
RECOVERY_LENGTH = 24
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read back without doubt


def new_secret() -> str:
    """160 random bits, base32 (what authenticator apps expect)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The QR code as inline SVG markup (no data: URL, nothing to load)."""
    return segno.make(uri, error="m").svg_inline(scale=4, title="Code QR à scanner avec l'application "
                                                "d'authentification", omitsize=False)


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def clean_code(code: str) -> str:
    return "".join(c for c in code if not c.isspace())


def matching_step(secret: str, code: str, last_step: int | None, now: datetime) -> int | None:
    """The time step whose code this is, within ±1 step of now and after ``last_step``; else None."""
    code = clean_code(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = step_at(now)
    for step in range(current - TOLERANCE, current + TOLERANCE + 1):
        if last_step is not None and step <= last_step:
            continue  # already used (or older than a used one): a code is accepted once
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _aead(secret_key: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"convergences.mfa.totp-secrets").derive(secret_key.encode())
    return AESGCM(key)


def encrypt_secret(secret_key: str, secret: str) -> str:
    nonce = os.urandom(12)
    return base64.urlsafe_b64encode(nonce + _aead(secret_key).encrypt(nonce, secret.encode(), b"totp")).decode()


def decrypt_secret(secret_key: str, blob: str) -> str:
    raw = base64.urlsafe_b64decode(blob.encode())
    return _aead(secret_key).decrypt(raw[:12], raw[12:], b"totp").decode()


def new_recovery_codes() -> list[str]:
    """Ten codes of 24 characters (≈ 119 bits each), shown as six groups of four: xxxx-xxxx-…-xxxx."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append("-".join(raw[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4)))
    return codes


def normalize_recovery_code(code: str) -> str:
    return "".join(c for c in code.lower() if c.isalnum())


def recovery_digest(code: str) -> str:
    return hashlib.sha256(normalize_recovery_code(code).encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    return len(normalize_recovery_code(code)) == RECOVERY_LENGTH
