"""Second factors of an account and its single-use recovery codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from convergences.db import Base, CreatedAtMixin


class SecondFactor(CreatedAtMixin, Base):
    """A TOTP authenticator (``kind='totp'``; its secret encrypted with the server secret) or a WebAuthn
    passkey (``kind='webauthn'``: credential id, public key, signature counter)."""

    __tablename__ = "mfa_factor"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(100), default="")
    # Loaded only when a code is checked: no page that lists factors carries it.
    secret_encrypted: Mapped[str | None] = deferred(mapped_column(Text, default=None))
    # The last TOTP time step accepted: a code is never accepted twice (replay within its window).
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    # WebAuthn: base64url credential id, COSE public key (base64url), last signature counter.
    credential_id: Mapped[str | None] = mapped_column(String(512), default=None, unique=True)
    public_key: Mapped[str | None] = mapped_column(Text, default=None)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)


class RecoveryCode(CreatedAtMixin, Base):
    """One single-use recovery code, stored as a SHA-256 digest (about 119 random bits: ASVS 6.5.2 needs no
    slow hash from 112 bits)."""

    __tablename__ = "mfa_recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(default=None)
