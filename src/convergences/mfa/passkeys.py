"""WebAuthn passkeys (py_webauthn): registered from the account page, used as a second factor after the
password, or alone ("Se connecter avec une clé d'accès": discoverable credential, user verification)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidJSONStructure, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from convergences.accounts.models import Account
from convergences.audit.actions import Action
from convergences.audit.services import record
from convergences.authz import Actor
from convergences.db import transaction, utcnow
from convergences.mfa.models import RecoveryCode, SecondFactor
from convergences.runtime import Runtime
from convergences.security.tokens import Signer

CHALLENGE_SECONDS = 300
PASSKEY_FAILED = "La clé d'accès n'a pas pu être vérifiée. Réessayez, ou utilisez un autre moyen."
# RFC 8176: a hardware-protected key; with user verification (PIN, biometrics) on the device, "user".
AMR_SECOND_FACTOR = ["pwd", "hwk", "mfa"]
AMR_PASSWORDLESS = ["hwk", "user", "mfa"]


@dataclass(frozen=True)
class Verified:
    account_id: int
    passwordless: bool


class PasskeyService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.signer = Signer(rt.settings.secret_key, "convergences.mfa.webauthn")
        parts = urlsplit(rt.settings.base_url)
        self.rp_id = parts.hostname or "localhost"
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def user_handle(self, account_id: int) -> bytes:
        """A stable, opaque WebAuthn user id (no personal data on the authenticator)."""
        return hmac.new(self.rt.settings.secret_key.encode(), b"webauthn-user:%d" % account_id,
                        hashlib.sha256).digest()[:16]

    def _challenge(self, purpose: str, account_id: int, challenge: bytes) -> str:
        return self.signer.dumps([purpose, account_id, bytes_to_base64url(challenge)])

    def _read(self, value: str | None, purpose: str) -> tuple[int, bytes] | None:
        data = self.signer.loads(value or "", max_age=CHALLENGE_SECONDS) if value else None
        if not (isinstance(data, list) and len(data) == 3 and data[0] == purpose and isinstance(data[1], int)):
            return None
        return data[1], base64url_to_bytes(data[2])

    # -- registration ----------------------------------------------------------------------------

    async def registration_options(self, actor: Actor) -> tuple[str, str]:
        """The options for navigator.credentials.create() (JSON) and the signed challenge cookie."""
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            assert account is not None
            existing = (await db.scalars(select(SecondFactor.credential_id).where(
                SecondFactor.account_id == account.id, SecondFactor.kind == "webauthn"))).all()
        options = generate_registration_options(
            rp_id=self.rp_id, rp_name="Convergences", user_name=account.email,
            user_id=self.user_handle(account.id), user_display_name=account.full_name,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in existing if c])
        return options_to_json(options), self._challenge("register", account.id, options.challenge)

    async def register(self, actor: Actor, cookie: str | None, credential: dict[str, Any],
                       label: str) -> tuple[str | None, list[str]]:
        """Verify and store a new passkey; (French error or None, recovery codes to show once)."""
        from convergences.mfa.services import MfaService

        found = self._read(cookie, "register")
        if found is None or found[0] != actor.account_id:
            return "Le délai est dépassé : recommencez l'ajout de la clé d'accès.", []
        try:
            verified = verify_registration_response(
                credential=json.dumps(credential), expected_challenge=found[1], expected_rp_id=self.rp_id,
                expected_origin=self.origin, require_user_verification=True)
        except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError, KeyError, TypeError):
            return PASSKEY_FAILED, []
        label = label or "Clé d'accès"
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            assert account is not None
            db.add(SecondFactor(account_id=account.id, kind="webauthn", label=label,
                                credential_id=bytes_to_base64url(verified.credential_id),
                                public_key=bytes_to_base64url(verified.credential_public_key),
                                sign_count=verified.sign_count))
            account.mfa_enrolment_required = False
            codes: list[str] = []
            if not await db.scalar(select(func.count()).select_from(RecoveryCode).where(
                    RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))):
                codes = await MfaService._new_recovery_codes(db, account.id)
            record(db, actor, Action.MFA_PASSKEY_ADD, target_type="account", target_id=account.id,
                   target_label=account.full_name, after={"label": label})
            self.rt.mailer.queue(db, account.email, "mfa_factor_added", account=account, label=label,
                                 cig_name=self.rt.settings.cig_name)
        self.rt.mailer.kick()
        return None, codes

    # -- authentication --------------------------------------------------------------------------

    async def authentication_options(self, account_id: int | None, *, require_uv: bool = False) -> tuple[str, str]:
        """Options for navigator.credentials.get(): the account's own passkeys (second factor), or any
        discoverable one with user verification required (passwordless, ``account_id`` None). ``require_uv``:
        the device must verify the person too (re-authentication with the passkey alone)."""
        allow: list[PublicKeyCredentialDescriptor] = []
        if account_id is not None:
            async with transaction(self.rt.maker) as db:
                allow = [PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in (await db.scalars(
                    select(SecondFactor.credential_id).where(SecondFactor.account_id == account_id,
                                                             SecondFactor.kind == "webauthn"))).all() if c]
        options = generate_authentication_options(
            rp_id=self.rp_id, allow_credentials=allow,
            user_verification=UserVerificationRequirement.REQUIRED if account_id is None or require_uv
            else UserVerificationRequirement.PREFERRED)
        return options_to_json(options), self._challenge("login", account_id or 0, options.challenge)

    async def verify(self, db: AsyncSession, cookie: str | None, credential: dict[str, Any],
                     *, require_uv: bool = False) -> Verified | None:
        """Check an assertion against its challenge (caller's transaction; updates the signature counter).
        User verification is required for a passwordless login and when ``require_uv``."""
        found = self._read(cookie, "login")
        if found is None:
            return None
        expected_account, challenge = found
        try:
            parsed = parse_authentication_credential_json(json.dumps(credential))
        except (InvalidJSONStructure, ValueError, KeyError, TypeError):
            return None
        factor = await db.scalar(select(SecondFactor).where(
            SecondFactor.credential_id == bytes_to_base64url(parsed.raw_id), SecondFactor.kind == "webauthn"))
        if factor is None or (expected_account and factor.account_id != expected_account):
            return None
        passwordless = expected_account == 0
        if passwordless and parsed.response.user_handle not in (None, self.user_handle(factor.account_id)):
            return None
        try:
            result = verify_authentication_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=self.rp_id,
                expected_origin=self.origin, credential_public_key=base64url_to_bytes(factor.public_key or ""),
                credential_current_sign_count=factor.sign_count,
                require_user_verification=passwordless or require_uv)
        except (InvalidAuthenticationResponse, ValueError):
            return None
        factor.sign_count = result.new_sign_count
        factor.last_used_at = utcnow()
        return Verified(account_id=factor.account_id, passwordless=passwordless)
