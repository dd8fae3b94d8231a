"""OIDC provider tables: signing keys, clients, authorization codes, tokens, RP sessions, logout outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from convergences.db import Base, CreatedAtMixin


class SigningKey(CreatedAtMixin, Base):
    """A JWS key. Published in the JWKS from creation, used for signing from ``activated_at``,
    and kept published after ``retired_at`` until ``remove_after`` (tokens it signed may still live)."""

    __tablename__ = "oidc_signing_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(10))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The private JWK, AES-GCM encrypted with a key derived from the server secret.
    private_encrypted: Mapped[str] = mapped_column(Text)
    activated_at: Mapped[datetime]
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
    remove_after: Mapped[datetime | None] = mapped_column(default=None)


class SubjectSalt(Base):
    """The key of the ``sub`` pseudonyms: random, created once, never rotated (unlike the server secret),
    so that every application keeps the same ``sub`` for a person forever."""

    __tablename__ = "oidc_subject_salt"

    id: Mapped[int] = mapped_column(primary_key=True)
    salt: Mapped[str] = mapped_column(String(100))


class Client(CreatedAtMixin, Base):
    """The protocol side of an application (one application, one or more clients)."""

    __tablename__ = "oidc_client"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    # argon2id hash of the secret; None for public clients.
    secret_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500), default=None)
    is_public: Mapped[bool] = mapped_column(default=False)
    allow_refresh: Mapped[bool] = mapped_column(default=False)
    id_token_alg: Mapped[str] = mapped_column(String(10), default="ES256")
    # Convergences claims this application receives: "employer", "roles".
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)
    pairwise_sub: Mapped[bool] = mapped_column(default=False)


class AuthorizationCode(CreatedAtMixin, Base):
    __tablename__ = "oidc_authorization_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oidc_client.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(500), default=None)
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    auth_time: Mapped[datetime]
    sid: Mapped[str] = mapped_column(String(64))
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthToken(CreatedAtMixin, Base):
    """Access and refresh tokens (only their SHA-256 is stored)."""

    __tablename__ = "oidc_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # access / refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oidc_client.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(500))
    auth_time: Mapped[datetime]
    sid: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The code it came from (replay revokes) and its refresh family (reuse revokes the family).
    code_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    family: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    family_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # The "claims" request parameter, applied again at userinfo.
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class RpSession(CreatedAtMixin, Base):
    """An application holding a session for a person (for back-channel logout)."""

    __tablename__ = "oidc_rp_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oidc_client.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    login_session_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    employer_id: Mapped[int | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    # The login's authentication methods (RFC 8176), copied into the ID tokens as ``amr``.
    amr: Mapped[str | None] = mapped_column(String(40), default=None)


class LogoutDelivery(CreatedAtMixin, Base):
    """Durable outbox of back-channel logout tokens: a restart loses none."""

    __tablename__ = "oidc_logout_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oidc_client.id", ondelete="CASCADE"), index=True)
    uri: Mapped[str] = mapped_column(String(500))
    logout_token: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
