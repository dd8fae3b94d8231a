"""Second factors: the login's second step, enrolment, recovery codes, removal, reset, step-up, history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from convergences.accounts.models import Account
from convergences.accounts.services import (
    ACCOUNT_SUSPENDED,
    AuthService,
    LoginResult,
    _wait_message,
    queue_login_alert,
)
from convergences.audit.actions import Action
from convergences.audit.services import record
from convergences.authz import Actor, NotAuthorized, Permission, require
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership
from convergences.errors import NotFound
from convergences.mfa import totp
from convergences.mfa.models import RecoveryCode, SecondFactor
from convergences.mfa.passkeys import AMR_PASSWORDLESS, AMR_SECOND_FACTOR, PASSKEY_FAILED, PasskeyService
from convergences.mfa.policy import ENROL, FACTOR, is_required, read_pending
from convergences.oidc.services import kick_logouts
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from convergences.security.throttle import DeviceCookie, LoginKeys, ip_key, login_keys
from convergences.security.tokens import Signer

CODE_FAILED = "Code incorrect ou déjà utilisé. Saisissez le code affiché maintenant par votre application."
REAUTH_FAILED = "Mot de passe ou code incorrect."
PENDING_EXPIRED = "Votre connexion a expiré (5 minutes). Saisissez à nouveau votre mot de passe."
ENROL_SECONDS = 900
ISSUER = "Convergences"
# RFC 8176 authentication method references of each way to pass the second step.
AMR = {"totp": ["pwd", "otp", "mfa"], "recovery_code": ["pwd", "otp", "mfa"]}


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows once: the secret (also as a QR code) and its signed carrier."""

    secret: str
    token: str
    uri: str
    svg: str


@dataclass(frozen=True)
class Overview:
    factors: list[SecondFactor]
    recovery_left: int
    required: bool
    # The person's other live sessions: after a factor change they are offered to end them (ASVS 7.4.3).
    other_sessions: int = 0


class MfaService:
    def __init__(self, rt: Runtime, device_cookie: str | None = None) -> None:
        self.rt = rt
        self.enrol_signer = Signer(rt.settings.secret_key, "convergences.mfa.enrol")
        # The browser's signed *known device* cookie: as for passwords, a flood of failures from elsewhere
        # never slows a browser the person already logged in from (security/throttle.py).
        self.device_cookie = device_cookie
        self.devices = DeviceCookie(rt.settings.secret_key)
        self.alerted = False  # a failure queued the owner's alert mail (kick the mailer after commit)

    def _keys(self, email: str, ip: str | None) -> LoginKeys:
        return login_keys(email, ip, known_device=self.devices.knows(self.device_cookie, email))

    def _success(self, cookie_value: str, email: str) -> LoginResult:
        return LoginResult(True, cookie_value=cookie_value, device_cookie=self.devices.add(self.device_cookie, email))

    # -- the login's second step -----------------------------------------------------------------

    async def pending_account(self, cookie: str | None, step: str) -> Account | None:
        """The account of a live half-authenticated state for this step, or None (expired, forged)."""
        found = read_pending(self.rt, cookie)
        if found is None or found[1] != step:
            return None
        async with transaction(self.rt.maker) as db:
            return await db.get(Account, found[0])

    async def _check_code(self, db: AsyncSession, account_id: int, code: str) -> str | None:
        """Accept a TOTP code (once) or an unused recovery code (once); return which, or None."""
        if totp.looks_like_recovery_code(code):
            used = await db.execute(update(RecoveryCode).where(
                RecoveryCode.account_id == account_id, RecoveryCode.code_hash == totp.recovery_digest(code),
                RecoveryCode.used_at.is_(None)).values(used_at=utcnow()))
            return "recovery_code" if used.rowcount == 1 else None  # type: ignore[attr-defined]
        now = utcnow()
        factors = (await db.scalars(select(SecondFactor).options(undefer(SecondFactor.secret_encrypted)).where(
            SecondFactor.account_id == account_id, SecondFactor.kind == "totp"))).all()
        for factor in factors:
            secret = totp.decrypt_secret(self.rt.settings.secret_key, factor.secret_encrypted or "")
            step = totp.matching_step(secret, code, factor.last_step, now)
            if step is None:
                continue
            # Conditional UPDATE: two requests racing with the same code cannot both win.
            won = await db.execute(update(SecondFactor).where(
                SecondFactor.id == factor.id,
                (SecondFactor.last_step.is_(None)) | (SecondFactor.last_step < step))
                .values(last_step=step, last_used_at=now))
            return "totp" if won.rowcount == 1 else None  # type: ignore[attr-defined]
        return None

    async def _attempt(self, db: AsyncSession, account: Account, code: str, ip: str | None,
                       user_agent: str | None) -> str | None:
        """A throttled, journaled check of a second-factor code (caller checked the wait first)."""
        method = await self._check_code(db, account.id, code) if code else None
        if method is None:
            if await self.rt.throttle.failure(db, self._keys(account.email, ip).counted):
                queue_login_alert(self.rt, db, account, ip)
                self.alerted = True  # the caller kicks the mailer after commit
            record(db, None, Action.MFA_FAILURE, target_type="account", target_id=account.id,
                   target_label=account.full_name, ip=ip,
                   after={"factor": "totp", "user_agent": (user_agent or "")[:300]})
        elif method == "recovery_code":
            record(db, None, Action.MFA_RECOVERY_USED, target_type="account", target_id=account.id,
                   target_label=account.full_name, ip=ip)
        return method

    async def _wait(self, account: Account, ip: str | None) -> int:
        async with transaction(self.rt.maker) as db:
            return await self.rt.throttle.wait_seconds(db, self._keys(account.email, ip).checked)

    async def second_step(self, cookie: str | None, code: str, ip: str | None, user_agent: str | None,
                          previous_cookie: str | None) -> LoginResult:
        """Check the second factor of a half-authenticated login; on success open the real session."""
        account = await self.pending_account(cookie, FACTOR)
        if account is None:
            return LoginResult(False, PENDING_EXPIRED)
        wait = await self._wait(account, ip)
        if wait:
            return LoginResult(False, _wait_message(wait), wait_seconds=wait)
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account.id)
            assert account is not None
            method = await self._attempt(db, account, totp.clean_code(code)[:40], ip, user_agent)
            if method is not None:
                new, ended, alerted = await AuthService(self.rt).open_session(
                    db, account, ip, user_agent, previous_cookie, amr=AMR[method], factor=method)
        if method is None:
            self._after_commit(0, self.alerted)
            return LoginResult(False, CODE_FAILED)
        self._after_commit(ended, alerted)
        return self._success(new.cookie_value, account.email)

    async def passkey_login(self, pending_cookie: str | None, challenge_cookie: str | None,
                            credential: dict[str, Any], ip: str | None, user_agent: str | None,
                            previous_cookie: str | None) -> LoginResult:
        """A passkey as the second step of a half-authenticated login, or alone (passwordless: the
        discoverable credential names the account, user verification required). Throttled like codes."""
        pending = read_pending(self.rt, pending_cookie)
        async with transaction(self.rt.maker) as db:
            pending_account = await db.get(Account, pending[0]) if pending and pending[1] == FACTOR else None
            keys = self._keys(pending_account.email, ip) if pending_account else LoginKeys([ip_key(ip)], [ip_key(ip)])
            wait = await self.rt.throttle.wait_seconds(db, keys.checked)
        if wait:
            return LoginResult(False, _wait_message(wait), wait_seconds=wait)
        passkeys = PasskeyService(self.rt)
        async with transaction(self.rt.maker) as db:
            verified = await passkeys.verify(db, challenge_cookie, credential)
            account = await db.get(Account, verified.account_id) if verified else None
            if verified is None or account is None or (
                    pending_account is not None and not verified.passwordless and account.id != pending_account.id):
                await self.rt.throttle.failure(db, keys.counted)
                record(db, None, Action.MFA_FAILURE, target_type="account",
                       target_id=pending_account.id if pending_account else None,
                       target_label=pending_account.full_name if pending_account else "", ip=ip,
                       after={"factor": "passkey", "user_agent": (user_agent or "")[:300]})
                return LoginResult(False, PASSKEY_FAILED)
            if not account.is_staff and not await db.scalar(select(Membership.id).where(
                    Membership.account_id == account.id, Membership.suspended_at.is_(None)).limit(1)):
                return LoginResult(False, ACCOUNT_SUSPENDED)
            amr = AMR_PASSWORDLESS if verified.passwordless else AMR_SECOND_FACTOR
            new, ended, alerted = await AuthService(self.rt).open_session(
                db, account, ip, user_agent, previous_cookie, amr=amr,
                factor="passkey_passwordless" if verified.passwordless else "passkey")
        self._after_commit(ended, alerted)
        return self._success(new.cookie_value, account.email)

    def _after_commit(self, ended_applications: int, mailed: bool) -> None:
        if ended_applications:
            kick_logouts(self.rt)
        if mailed:
            self.rt.mailer.kick()

    # -- enrolment -------------------------------------------------------------------------------

    def start_enrolment(self, account: Account) -> Enrolment:
        secret = totp.new_secret()
        uri = totp.provisioning_uri(secret, account.email, ISSUER)
        return Enrolment(secret=secret, token=self.enrol_signer.dumps([account.id, secret]), uri=uri,
                         svg=totp.qr_svg(uri))

    def enrolment_from_token(self, account: Account, token: str) -> Enrolment | None:
        data = self.enrol_signer.loads(token, max_age=ENROL_SECONDS)
        if not (isinstance(data, list) and len(data) == 2 and data[0] == account.id and isinstance(data[1], str)):
            return None
        uri = totp.provisioning_uri(data[1], account.email, ISSUER)
        return Enrolment(secret=data[1], token=token, uri=uri, svg=totp.qr_svg(uri))

    async def _add_totp(self, db: AsyncSession, actor: Actor | None, account: Account, secret: str, step: int,
                        label: str, ip: str | None) -> list[str]:
        """Store the factor (its first code counts as used) and, when none are left, recovery codes."""
        db.add(SecondFactor(account_id=account.id, kind="totp", label=label or "Application d'authentification",
                            secret_encrypted=totp.encrypt_secret(self.rt.settings.secret_key, secret),
                            last_step=step, last_used_at=utcnow()))
        account.mfa_enrolment_required = False
        codes: list[str] = []
        if not await db.scalar(select(func.count()).select_from(RecoveryCode).where(
                RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))):
            codes = await self._new_recovery_codes(db, account.id)
        record(db, actor, Action.MFA_TOTP_ADD, target_type="account", target_id=account.id,
               target_label=account.full_name, after={"label": label}, ip=ip)
        self.rt.mailer.queue(db, account.email, "mfa_factor_added", account=account, label=label,
                             cig_name=self.rt.settings.cig_name)
        return codes

    @staticmethod
    async def _new_recovery_codes(db: AsyncSession, account_id: int) -> list[str]:
        await db.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account_id))
        codes = totp.new_recovery_codes()
        for code in codes:
            db.add(RecoveryCode(account_id=account_id, code_hash=totp.recovery_digest(code)))
        return codes

    def _enrol_errors(self, enrolment: Enrolment | None, code: str) -> tuple[dict[str, str], int | None]:
        if enrolment is None:
            return {"code": "Le délai d'enrôlement a expiré : recommencez avec le nouveau code QR."}, None
        step = totp.matching_step(enrolment.secret, code, None, utcnow())
        if step is None:
            return {"code": "Ce code ne correspond pas. Vérifiez l'heure de votre téléphone et saisissez le "
                            "code à 6 chiffres affiché maintenant."}, None
        return {}, step

    async def enrol_at_login(self, cookie: str | None, token: str, code: str, label: str, ip: str | None,
                             user_agent: str | None, previous_cookie: str | None
                             ) -> tuple[dict[str, str], LoginResult | None, list[str]]:
        """Forced enrolment of a half-authenticated person: on success the factor is stored and the
        login completes (errors, result, recovery codes to show once)."""
        account = await self.pending_account(cookie, ENROL)
        if account is None:
            return {}, LoginResult(False, PENDING_EXPIRED), []
        enrolment = self.enrolment_from_token(account, token)
        errors, step = self._enrol_errors(enrolment, code)
        if errors or step is None or enrolment is None:
            return errors, None, []
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account.id)
            assert account is not None
            codes = await self._add_totp(db, None, account, enrolment.secret, step, label, ip)
            new, ended, alerted = await AuthService(self.rt).open_session(
                db, account, ip, user_agent, previous_cookie, amr=AMR["totp"], factor="totp")
        self._after_commit(ended, True)
        return {}, self._success(new.cookie_value, account.email), codes

    async def enrol(self, actor: Actor, token: str, code: str, label: str) -> tuple[dict[str, str], list[str]]:
        """Add a TOTP factor from the account page (the caller checked step-up)."""
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            assert account is not None
            enrolment = self.enrolment_from_token(account, token)
            errors, step = self._enrol_errors(enrolment, code)
            if errors or step is None or enrolment is None:
                return errors, []
            if await db.scalar(select(SecondFactor.id).where(SecondFactor.account_id == account.id,
                                                             SecondFactor.kind == "totp").limit(1)):
                return {"code": "Une application d'authentification est déjà enregistrée : supprimez-la "
                                "d'abord pour en enregistrer une autre."}, []
            codes = await self._add_totp(db, actor, account, enrolment.secret, step, label, None)
        self.rt.mailer.kick()
        return {}, codes

    # -- the account page ------------------------------------------------------------------------

    async def overview(self, account_id: int, session_id: str | None = None) -> Overview:
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account_id)
            assert account is not None
            factors = list((await db.scalars(select(SecondFactor).where(SecondFactor.account_id == account_id)
                                             .order_by(SecondFactor.id))).all())
            left = await db.scalar(select(func.count()).select_from(RecoveryCode).where(
                RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None)))
            others = await db.scalar(select(func.count()).select_from(LoginSession).where(
                LoginSession.account_id == account_id, LoginSession.id != (session_id or ""),
                LoginSession.expires_at > utcnow(), LoginSession.last_seen_at > utcnow() - self.rt.sessions.idle))
            return Overview(factors=factors, recovery_left=int(left or 0), required=await is_required(db, account),
                            other_sessions=int(others or 0))

    async def regenerate_recovery_codes(self, actor: Actor) -> list[str]:
        """New recovery codes (the old ones stop working); needs a factor. Raises NotFound without one."""
        async with transaction(self.rt.maker) as db:
            if not await db.scalar(select(SecondFactor.id).where(SecondFactor.account_id == actor.account_id)
                                   .limit(1)):
                raise NotFound()
            codes = await self._new_recovery_codes(db, actor.account_id)
            record(db, actor, Action.MFA_RECOVERY_REGENERATE, target_type="account", target_id=actor.account_id)
            account = await db.get(Account, actor.account_id)
            assert account is not None
            self.rt.mailer.queue(db, account.email, "mfa_recovery_regenerated", account=account,
                                 cig_name=self.rt.settings.cig_name)
        self.rt.mailer.kick()
        return codes

    async def remove_factor(self, actor: Actor, factor_id: int) -> str | None:
        """Remove one of the actor's own factors; a French refusal when it is the last and 2FA is mandatory."""
        async with transaction(self.rt.maker) as db:
            factor = await db.scalar(select(SecondFactor).where(SecondFactor.id == factor_id,
                                                                SecondFactor.account_id == actor.account_id))
            if factor is None:
                raise NotFound()
            account = await db.get(Account, actor.account_id)
            assert account is not None
            others = await db.scalar(select(func.count()).select_from(SecondFactor).where(
                SecondFactor.account_id == actor.account_id, SecondFactor.id != factor_id))
            if not others and await is_required(db, account):
                return ("La double authentification est obligatoire pour votre compte : enregistrez un autre "
                        "moyen avant de supprimer celui-ci.")
            await db.delete(factor)
            if not others:
                await db.execute(delete(RecoveryCode).where(RecoveryCode.account_id == actor.account_id))
            record(db, actor, Action.MFA_FACTOR_REMOVE, target_type="account", target_id=actor.account_id,
                   target_label=account.full_name, before={"kind": factor.kind, "label": factor.label})
            self.rt.mailer.queue(db, account.email, "mfa_factor_removed", account=account, label=factor.label,
                                 cig_name=self.rt.settings.cig_name)
        self.rt.mailer.kick()
        return None

    # -- reset by a référent, a correspondent or a CIG administrator ------------------------------

    async def reset(self, actor: Actor, employer_id: int, membership_id: int) -> Account:
        """Delete every factor of a member of this employer and force re-enrolment at next login.

        An agent's factors are reset by the employer's référents (and CIG staff in scope); a référent's
        or an autorité's (or a CIG staff member's) only by the correspondent or a CIG administrator.
        Raises NotAuthorized / NotFound."""
        require(actor, Permission.MFA_RESET, employer_id)
        async with transaction(self.rt.maker) as db:
            membership = await db.scalar(select(Membership).where(Membership.id == membership_id,
                                                                  Membership.employer_id == employer_id))
            if membership is None:
                raise NotFound()
            account = await db.get(Account, membership.account_id)
            assert account is not None
            administrator = account.is_staff or await db.scalar(select(Membership.id).where(
                Membership.account_id == account.id,
                (Membership.is_referent.is_(True)) | (Membership.is_authority.is_(True))).limit(1)) is not None
            if administrator:
                require(actor, Permission.MFA_RESET_ADMINS, employer_id)
            if account.id == actor.account_id:
                raise NotAuthorized("own factors are managed from the account page")
            await self._reset(db, actor, account, employer_id)
        self.rt.mailer.kick()
        return account

    async def _reset(self, db: AsyncSession, actor: Actor | None, account: Account, employer_id: int | None) -> None:
        removed = (await db.scalars(select(SecondFactor.kind).where(SecondFactor.account_id == account.id))).all()
        await db.execute(delete(SecondFactor).where(SecondFactor.account_id == account.id))
        await db.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
        account.mfa_enrolment_required = True
        record(db, actor, Action.MFA_RESET, employer_id=employer_id, target_type="account",
               target_id=account.id, target_label=account.full_name, before={"factors": list(removed)})
        self.rt.mailer.queue(db, account.email, "mfa_reset", account=account,
                             by=actor.label.split(" <")[0] if actor else self.rt.settings.cig_name,
                             cig_name=self.rt.settings.cig_name)

    async def reset_by_operator(self, email: str) -> Account | None:
        """The server operator's reset (``convergences mfa-reset``), e.g. for CIG staff, who belong to no
        employer. Journaled as "système"; None when no such account."""
        async with transaction(self.rt.maker) as db:
            account = await db.scalar(select(Account).where(Account.email == email.strip().lower()))
            if account is None:
                return None
            await self._reset(db, None, account, None)
        return account

    async def member_factor_count(self, actor: Actor, employer_id: int, membership_id: int) -> int:
        """How many factors the member has (shown next to the reset button). Raises NotAuthorized."""
        require(actor, Permission.ACCOUNTS_VIEW, employer_id)
        async with transaction(self.rt.maker) as db:
            return int(await db.scalar(select(func.count()).select_from(SecondFactor).join(
                Membership, Membership.account_id == SecondFactor.account_id).where(
                Membership.id == membership_id, Membership.employer_id == employer_id)) or 0)

    # -- the employer's policy -------------------------------------------------------------------

    async def employer_policy(self, actor: Actor, employer_id: int) -> Employer:
        require(actor, Permission.MFA_POLICY, employer_id)
        async with transaction(self.rt.maker) as db:
            employer = await db.get(Employer, employer_id)
            if employer is None:
                raise NotFound()
            return employer

    async def set_employer_policy(self, actor: Actor, employer_id: int, required: bool) -> None:
        """Turn "2FA obligatoire pour tous les agents" on or off (journaled). Raises NotAuthorized."""
        require(actor, Permission.MFA_POLICY, employer_id)
        async with transaction(self.rt.maker) as db:
            employer = await db.get(Employer, employer_id)
            if employer is None:
                raise NotFound()
            if employer.mfa_required_for_agents == required:
                return
            record(db, actor, Action.EMPLOYER_MFA_POLICY, employer_id=employer_id, target_type="employer",
                   target_id=employer_id, target_label=employer.name,
                   before={"mfa_required_for_agents": employer.mfa_required_for_agents},
                   after={"mfa_required_for_agents": required})
            employer.mfa_required_for_agents = required

    # -- step-up ---------------------------------------------------------------------------------

    async def factor_kinds(self, account_id: int) -> set[str]:
        """The kinds of factor the account has ("totp", "webauthn"): what re-authentication asks for."""
        async with transaction(self.rt.maker) as db:
            return set((await db.scalars(select(SecondFactor.kind).where(
                SecondFactor.account_id == account_id))).all())

    async def reauthenticate(self, actor: Actor, password: str, code: str) -> str | None:
        """Check the password (and the second factor when there is one) again; on success the session's
        authenticated_at becomes now. Returns a French error, or None. Throttled like the login."""
        async with transaction(self.rt.maker) as db:
            account = await db.scalar(select(Account).options(undefer(Account.password_hash))
                                      .where(Account.id == actor.account_id))
            assert account is not None
            wait = await self.rt.throttle.wait_seconds(db, self._keys(account.email, actor.ip).checked)
        if wait:
            return _wait_message(wait)
        valid, _ = await self.rt.passwords.verify(account.password_hash, password)
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            assert account is not None
            factor_needed = await db.scalar(select(SecondFactor.id).where(
                SecondFactor.account_id == account.id).limit(1)) is not None
            method = None
            if valid and factor_needed:
                method = await self._attempt(db, account, totp.clean_code(code)[:40], actor.ip, actor.user_agent)
            if not valid or (factor_needed and method is None):
                if not valid:
                    await self.rt.throttle.failure(db, self._keys(account.email, actor.ip).counted)
                record(db, actor, Action.REAUTH_FAILURE, target_type="account", target_id=account.id,
                       target_label=account.full_name)
                return REAUTH_FAILED
            session = await db.get(LoginSession, actor.session_id)
            if session is None:
                return REAUTH_FAILED
            session.authenticated_at = utcnow()
            session.amr = " ".join(AMR[method] if method else ["pwd"])
            await self.rt.throttle.success(db, account.email, actor.ip)
            record(db, actor, Action.REAUTH_SUCCESS, target_type="account", target_id=account.id,
                   target_label=account.full_name, after={"factor": method or "password"})
        return None

    async def reauthenticate_with_passkey(self, actor: Actor, challenge_cookie: str | None,
                                          credential: dict[str, Any]) -> bool:
        """Step-up with one of the actor's own passkeys alone: possession, and the person verified by the
        device (PIN or biometrics: user verification required), so two factors without the password."""
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            assert account is not None
            keys = self._keys(account.email, actor.ip)
            if await self.rt.throttle.wait_seconds(db, keys.checked):
                return False
        async with transaction(self.rt.maker) as db:
            verified = await PasskeyService(self.rt).verify(db, challenge_cookie, credential, require_uv=True)
            session = await db.get(LoginSession, actor.session_id)
            if verified is None or verified.account_id != actor.account_id or session is None:
                await self.rt.throttle.failure(db, keys.counted)
                record(db, actor, Action.REAUTH_FAILURE, target_type="account", target_id=actor.account_id,
                       after={"factor": "passkey"})
                return False
            session.authenticated_at = utcnow()
            session.amr = " ".join(AMR_PASSWORDLESS)  # no password was typed: the passkey, verified on the device
            record(db, actor, Action.REAUTH_SUCCESS, target_type="account", target_id=actor.account_id,
                   after={"factor": "passkey"})
        return True
