"""Authentication, the actor of a request, and invitations."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from convergences.accounts import links
from convergences.accounts.models import Account
from convergences.audit.actions import Action
from convergences.audit.services import record
from convergences.authz import Actor
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.mfa.devices import device_key
from convergences.mfa.notify import queue_new_device_alert
from convergences.mfa.policy import login_step, pending_value
from convergences.oidc.models import RpSession
from convergences.oidc.services import ProviderService, kick_logouts
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from convergences.security.passwords import password_problems
from convergences.security.sessions import NewSession
from convergences.security.throttle import DeviceCookie, login_keys

LOGIN_FAILED = "Adresse électronique ou mot de passe incorrect."
ACCOUNT_SUSPENDED = ("Votre compte est suspendu. Contactez votre référent administrateur pour le faire "
                     "réactiver.")
INVITATION_INVALID = ("Ce lien d'invitation n'est plus valable (déjà utilisé, expiré ou incorrect). "
                      "Demandez à votre référent administrateur de vous en envoyer un nouveau.")


def normalize_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    message: str = ""
    cookie_value: str = ""
    wait_seconds: int = 0
    # The password was right but a second step follows (convergences.mfa): the signed half-authenticated
    # state (no session, no access) and which step, "factor" or "enrol".
    pending: str = ""
    next_step: str = ""
    # The browser's new *known device* cookie (convergences.security.throttle), on success.
    device_cookie: str = ""


def queue_login_alert(rt: Runtime, db: AsyncSession, account: Account, ip: str | None) -> None:
    """Once per burst of failures (password or second factor): the owner learns that someone is trying,
    and what to do. Kick the mailer after commit."""
    rt.mailer.queue(db, account.email, "login_alert", account=account,
                    failures=rt.settings.throttle.alert_after_failures,
                    base_url=rt.settings.base_url, cig_name=rt.settings.cig_name)
    record(db, None, Action.LOGIN_ALERT, target_type="account", target_id=account.id,
           target_label=account.full_name, ip=ip)


async def build_actor(db: AsyncSession, session: LoginSession, account: Account) -> Actor:
    rows = (await db.execute(select(Membership.employer_id, Membership.is_referent, Membership.is_authority)
                             .where(Membership.account_id == account.id,
                                    Membership.suspended_at.is_(None)))).all()
    memberships = {
        employer_id: frozenset({"agent"} | ({"referent"} if ref else set()) | ({"authority"} if auth else set()))
        for employer_id, ref, auth in rows
    }
    portfolio: frozenset[int] = frozenset()
    if account.is_correspondent:
        portfolio = frozenset((await db.scalars(select(PortfolioEntry.employer_id).where(
            PortfolioEntry.correspondent_id == account.id))).all())
    return Actor(account_id=account.id, label=f"{account.full_name} <{account.email}>", email=account.email,
                 is_cig_admin=account.is_cig_admin, is_correspondent=account.is_correspondent,
                 memberships=memberships, portfolio=portfolio, ip=session.ip, user_agent=session.user_agent,
                 session_id=session.id)


class AuthService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def current(self, cookie_value: str | None, ip: str | None, user_agent: str | None
                      ) -> tuple[Actor, Account] | None:
        """The actor behind a session cookie, or None (no cookie, expired, or account gone)."""
        if not cookie_value:
            return None
        async with transaction(self.rt.maker) as db:
            session = await self.rt.sessions.load(db, cookie_value)
            if session is None:
                return None
            account = await db.get(Account, session.account_id)
            if account is None:
                return None
            actor = await build_actor(db, session, account)
        return replace(actor, ip=ip, user_agent=user_agent), account

    async def login(self, email: str, password: str, ip: str | None, user_agent: str | None,
                    previous_cookie: str | None = None, device_cookie: str | None = None) -> LoginResult:
        """Check the password under throttling; on success open a brand-new session.

        The browser's previous session, if any, is ended: a login never keeps an older session id.
        """
        email = normalize_email(email)
        devices = DeviceCookie(self.rt.settings.secret_key)
        keys = login_keys(email, ip, known_device=devices.knows(device_cookie, email))
        async with transaction(self.rt.maker) as db:
            wait = await self.rt.throttle.wait_seconds(db, keys.checked)
        if wait:
            # Same message whatever the password: a wait tells nothing about its correctness.
            return LoginResult(False, _wait_message(wait), wait_seconds=wait)
        async with transaction(self.rt.maker) as db:
            account = await db.scalar(select(Account).options(undefer(Account.password_hash))
                                      .where(Account.email == email))
            stored = account.password_hash if account else None
        valid, new_hash = await self.rt.passwords.verify(stored, password)
        if not valid or account is None:
            async with transaction(self.rt.maker) as db:
                alert = await self.rt.throttle.failure(db, keys.counted)
                record(db, None, Action.LOGIN_FAILURE, target_type="account",
                       target_id=account.id if account else None,
                       target_label=email if account else "", ip=ip,
                       after={"factor": "password", "user_agent": (user_agent or "")[:300]})
                if alert and account is not None:
                    queue_login_alert(self.rt, db, account, ip)
            if alert:
                self.rt.mailer.kick()
            return LoginResult(False, LOGIN_FAILED)
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account.id)
            assert account is not None
            if not account.is_staff and not await db.scalar(select(Membership.id).where(
                    Membership.account_id == account.id, Membership.suspended_at.is_(None)).limit(1)):
                # The password was right: saying why is safe, and saves a call to the helpdesk.
                record(db, None, Action.LOGIN_FAILURE, target_type="account", target_id=account.id,
                       target_label=email, after={"reason": "suspended", "factor": "password",
                                                  "user_agent": (user_agent or "")[:300]}, ip=ip)
                return LoginResult(False, ACCOUNT_SUSPENDED)
            if new_hash:
                account.password_hash = new_hash
            step = await login_step(db, account)
            if step:
                # Half-authenticated: no session, and the throttle counters are NOT cleared (a known
                # password must not reset the count of wrong second-factor codes).
                return LoginResult(True, pending=pending_value(self.rt, account.id, step), next_step=step)
            new, ended_applications, alerted = await self.open_session(db, account, ip, user_agent, previous_cookie,
                                                                       amr=["pwd"], factor="password")
        if ended_applications:
            kick_logouts(self.rt)
        if alerted:
            self.rt.mailer.kick()
        return LoginResult(True, cookie_value=new.cookie_value, device_cookie=devices.add(device_cookie, email))

    async def open_session(self, db: AsyncSession, account: Account, ip: str | None, user_agent: str | None,
                           previous_cookie: str | None, *, amr: list[str], factor: str) -> tuple[NewSession, int, bool]:
        """Complete a login (every factor checked): a brand-new session, journaled with its factor and device.

        Returns the session, how many application sessions were ended (kick_logouts after commit) and
        whether a new-device alert was queued (kick the mailer after commit)."""
        account.last_login_at = utcnow()
        await self.rt.throttle.success(db, account.email, ip)
        previous = await self.rt.sessions.load(db, previous_cookie)
        new = self.rt.sessions.create(db, account.id, ip, user_agent)
        new.row.amr = " ".join(amr)
        ended_applications = 0
        if previous is not None:
            # The applications' sessions opened from the previous portal session must not be
            # orphaned: the same person keeps them (re-authentication, prompt=login / max_age),
            # anyone else ends them (back-channel logout, tokens revoked).
            if previous.account_id == account.id:
                await db.execute(update(RpSession).where(
                    RpSession.login_session_id == previous.id, RpSession.ended_at.is_(None))
                    .values(login_session_id=new.row.id, amr=new.row.amr))
            else:
                ended_applications = await ProviderService(self.rt).end_rp_sessions(
                    db, account_id=previous.account_id, login_session_id=previous.id)
            await self.rt.sessions.end(db, previous.id)
        alerted = await queue_new_device_alert(self.rt, db, account, ip, user_agent)
        record(db, None, Action.LOGIN_SUCCESS, target_type="account", target_id=account.id,
               target_label=account.full_name, ip=ip,
               after={"factor": factor, "amr": amr, "user_agent": (user_agent or "")[:300],
                      "device": device_key(user_agent, ip)})
        return new, ended_applications, alerted

    async def logout(self, actor: Actor) -> None:
        """End the portal session and the applications' sessions opened from it (back-channel logout)."""
        if actor.session_id is None:
            return
        async with transaction(self.rt.maker) as db:
            await ProviderService(self.rt).end_rp_sessions(db, account_id=actor.account_id,
                                                           login_session_id=actor.session_id)
            await self.rt.sessions.end(db, actor.session_id)
            record(db, actor, Action.LOGOUT, target_type="account", target_id=actor.account_id)
        kick_logouts(self.rt)

    # -- invitations -------------------------------------------------------------------------

    async def invitation_account(self, token: str) -> Account | None:
        async with transaction(self.rt.maker) as db:
            invitation = await links.find(self.rt, db, token, links.INVITATION)
            return await db.get(Account, invitation.account_id) if invitation else None

    async def accept_invitation(self, token: str, password: str, confirmation: str,
                                ip: str | None) -> dict[str, str]:
        """Set the password from an invitation; return per-field French errors (empty on success)."""
        return await use_password_link(self.rt, token, links.INVITATION, password, confirmation, ip,
                                       invalid=INVITATION_INVALID)


async def password_context(db: AsyncSession, account: Account) -> list[str]:
    """The words a password must not contain: the person's names, email, and their employers' names."""
    employer_names = (await db.scalars(select(Employer.name).join(Membership).where(
        Membership.account_id == account.id))).all()
    return [account.given_name, account.family_name, account.email, *employer_names]


def check_new_password(rt: Runtime, password: str, confirmation: str, context: list[str]) -> dict[str, str]:
    """Per-field French errors for a new password and its confirmation (empty when acceptable)."""
    problems = password_problems(password, rt.settings.passwords, context=context)
    if problems:
        return {"password": " ".join(problems)}
    if password != confirmation:
        return {"confirmation": "Les deux mots de passe saisis ne sont pas identiques."}
    return {}


async def set_password(rt: Runtime, db: AsyncSession, account: Account, password_hash: str, *,
                       keep_session_id: str | None = None, end_sessions: bool = True) -> int:
    """Store a new password hash (caller's transaction). Outstanding invitation and reset links become
    useless; unless ``end_sessions`` is False, every session ends — the portal's (but ``keep_session_id``)
    and the applications' (tokens revoked, back-channel logout queued). Return how many logouts were queued."""
    account.password_hash = password_hash
    account.activated_at = account.activated_at or utcnow()
    await links.revoke(db, account.id, links.INVITATION, links.RESET)
    if not end_sessions:
        return 0
    ended = 0
    for session_id in (await db.scalars(select(LoginSession.id).where(
            LoginSession.account_id == account.id))).all():
        if session_id != keep_session_id:
            ended += await ProviderService(rt).end_rp_sessions(db, account_id=account.id,
                                                               login_session_id=session_id)
            await rt.sessions.end(db, session_id)
    # Applications' sessions not tied to a live portal session (expired portal session) end too.
    if keep_session_id is None:
        ended += await ProviderService(rt).end_rp_sessions(db, account_id=account.id)
    return ended


async def use_password_link(rt: Runtime, token: str, purpose: str, password: str, confirmation: str,
                            ip: str | None, *, invalid: str) -> dict[str, str]:
    """Set the password through an invitation or reset link; per-field French errors (``token``: the link is
    no longer valid). Never opens a session: the person then logs in normally (second factor included)."""
    async with transaction(rt.maker) as db:
        link = await links.find(rt, db, token, purpose)
        if link is None:
            return {"token": invalid}
        account = await db.get(Account, link.account_id)
        assert account is not None
        context = await password_context(db, account)
    errors = check_new_password(rt, password, confirmation, context)
    if errors:
        return errors
    password_hash = await rt.passwords.hash(password)
    async with transaction(rt.maker) as db:
        if not await links.consume(db, link):
            return {"token": invalid}
        account = await db.get(Account, link.account_id)
        assert account is not None
        # A new password (an invitation, or a reset of a forgotten or compromised one) ends every
        # session: the portal's and the applications' (tokens revoked, back-channel logout).
        ended_applications = await set_password(rt, db, account, password_hash)
        await rt.throttle.clear(db, account.email)
        record(db, None, Action.PASSWORD_SET if purpose == links.INVITATION else Action.PASSWORD_RESET,
               employer_id=link.employer_id, target_type="account", target_id=account.id,
               target_label=account.full_name, ip=ip)
        if purpose == links.RESET:
            rt.mailer.queue(db, account.email, "password_changed", account=account, reset=True,
                            base_url=rt.settings.base_url, cig_name=rt.settings.cig_name)
    if purpose == links.RESET:
        rt.mailer.kick()
    if ended_applications:
        kick_logouts(rt)
    return {}


def _wait_message(seconds: int) -> str:
    if seconds < 60:
        delay = f"{seconds} seconde{'s' if seconds > 1 else ''}"
    else:
        minutes = (seconds + 59) // 60
        delay = f"{minutes} minute{'s' if minutes > 1 else ''}"
    return (f"Trop de tentatives de connexion infructueuses. Par sécurité, patientez {delay} avant "
            "de réessayer. Si vous avez oublié votre mot de passe, utilisez « Mot de passe oublié ? ».")


async def send_invitation(rt: Runtime, db: AsyncSession, actor: Actor | None, account: Account,
                          employer: Employer | None) -> None:
    """Revoke older invitations, create a fresh one and queue its mail (caller's transaction)."""
    link = await links.create(rt, db, account, links.INVITATION, employer_id=employer.id if employer else None,
                              created_by_id=actor.account_id if actor else None)
    rt.mailer.queue(db, account.email, "invitation", account=account, employer=employer,
                    inviter=actor.label.split(" <")[0] if actor else rt.settings.cig_name, link=link,
                    days=rt.settings.invitation_days, cig_name=rt.settings.cig_name)
    record(db, actor, Action.INVITATION_SEND, employer_id=employer.id if employer else None,
           target_type="account", target_id=account.id, target_label=account.full_name)
