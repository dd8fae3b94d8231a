"""The person's own credentials and sessions, and the help an administrator may give with them.

Self-service: forgotten password (reset link by email), password change, email change (confirmed from the
new address), sessions (see, end one, end the others). Administrators (a référent for the agents of their
employer, a correspondant or CIG administrator for anyone of it): send a reset link — never set a
password —, clear a login throttle, end every session. Every change is journaled in its transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from convergences.accounts import links
from convergences.accounts.models import Account, Invitation
from convergences.accounts.services import (
    check_new_password,
    normalize_email,
    password_context,
    set_password,
    use_password_link,
)
from convergences.audit.actions import Action
from convergences.audit.services import record
from convergences.authz import Actor, NotAuthorized, Permission, require
from convergences.db import transaction, utcnow
from convergences.employers.models import Membership
from convergences.errors import NotFound, ServiceError
from convergences.forms import EMAIL_RE
from convergences.oidc.services import ProviderService, kick_logouts
from convergences.runtime import Runtime
from convergences.security import stepup
from convergences.security.models import LoginSession
from convergences.security.throttle import pair_key
from convergences.security.useragent import short_label

RESET_INVALID = ("Ce lien de réinitialisation n'est plus valable (déjà utilisé, expiré ou incorrect). "
                 "Demandez-en un nouveau depuis « Mot de passe oublié ? ».")
EMAIL_INVALID = ("Ce lien de confirmation n'est plus valable (déjà utilisé, expiré ou incorrect). "
                 "Recommencez le changement d'adresse depuis votre compte.")
EMAIL_TAKEN = ("Cette adresse ne peut pas être utilisée pour votre compte. Si elle vous appartient déjà, "
               "contactez votre référent administrateur.")
# Reset mails one address may receive per hour (no mail bombing through the public form).
RESETS_PER_HOUR = 3


class StepUpRequired(Exception):
    """The session's authentication is too old for this change: re-authenticate first."""


@dataclass(frozen=True)
class SessionRow:
    handle: str
    device: str
    ip: str
    started_at: datetime
    last_seen_at: datetime
    current: bool


def session_handle(session_id: str) -> str:
    """What the sessions page names a session by: never the session id itself (a cookie digest)."""
    return hashlib.sha256(b"handle:" + session_id.encode()).hexdigest()[:24]


class CredentialService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- step-up -------------------------------------------------------------------------------

    async def _fresh_session(self, db: AsyncSession, actor: Actor) -> LoginSession:
        session = await db.get(LoginSession, actor.session_id) if actor.session_id else None
        if session is None or session.account_id != actor.account_id or not stepup.is_recent(session):
            raise StepUpRequired()
        return session

    async def ensure_recent(self, actor: Actor) -> None:
        """Raise StepUpRequired unless the actor authenticated within the step-up window."""
        async with transaction(self.rt.maker) as db:
            await self._fresh_session(db, actor)

    # -- forgotten password --------------------------------------------------------------------

    async def request_reset(self, email: str, ip: str | None) -> None:
        """Send a reset link when the address is an active account's; the caller answers the same either way.

        Both paths read the account, count recent links and render the mail, so neither answer nor its
        timing tells whether the address exists."""
        email = normalize_email(email)[:254]
        async with transaction(self.rt.maker) as db:
            account = await db.scalar(select(Account).where(Account.email == email))
            eligible = account is not None and account.activated_at is not None and (
                account.is_staff or await db.scalar(select(Membership.id).where(
                    Membership.account_id == account.id, Membership.suspended_at.is_(None)).limit(1)) is not None)
            recent = await db.scalar(select(func.count()).select_from(Invitation).where(
                Invitation.account_id == (account.id if account else -1), Invitation.purpose == links.RESET,
                Invitation.created_at > utcnow() - timedelta(hours=1))) or 0
            if not eligible or recent >= RESETS_PER_HOUR:
                # Same rendering work as a real mail, then nothing is kept.
                self.rt.mailer.render("password_reset", account=Account(email=email, given_name="", family_name=""),
                                      link="", minutes=links.RESET_MINUTES, by=None, cig_name=self.rt.settings.cig_name)
                return
            assert account is not None
            link = await links.create(self.rt, db, account, links.RESET)
            self.rt.mailer.queue(db, account.email, "password_reset", account=account, link=link,
                                 minutes=links.RESET_MINUTES, by=None, cig_name=self.rt.settings.cig_name)
            record(db, None, Action.PASSWORD_RESET_REQUEST, target_type="account", target_id=account.id,
                   target_label=account.full_name, ip=ip)
        self.rt.mailer.kick()

    async def reset_account(self, token: str) -> Account | None:
        async with transaction(self.rt.maker) as db:
            link = await links.find(self.rt, db, token, links.RESET)
            return await db.get(Account, link.account_id) if link else None

    async def reset(self, token: str, password: str, confirmation: str, ip: str | None) -> dict[str, str]:
        """Set a new password from a reset link; ends every session; opens none (the login that follows
        goes through the normal login, second factor included). Per-field French errors."""
        return await use_password_link(self.rt, token, links.RESET, password, confirmation, ip,
                                       invalid=RESET_INVALID)

    async def context_for_token(self, token: str) -> list[str]:
        """Words the password must not contain, for the person behind an invitation or reset link."""
        async with transaction(self.rt.maker) as db:
            for purpose in (links.INVITATION, links.RESET):
                link = await links.find(self.rt, db, token, purpose)
                if link is not None:
                    account = await db.get(Account, link.account_id)
                    assert account is not None
                    return await password_context(db, account)
        return []

    async def context_for(self, account_id: int) -> list[str]:
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, account_id)
            return await password_context(db, account) if account else []

    # -- password change -----------------------------------------------------------------------

    async def change_password(self, actor: Actor, current: str, password: str, confirmation: str,
                              end_others: bool) -> dict[str, str]:
        """Change one's password (current one required, recent authentication required: StepUpRequired).
        Return per-field French errors; on success notify the person by email."""
        async with transaction(self.rt.maker) as db:
            await self._fresh_session(db, actor)
            account = await db.scalar(select(Account).options(undefer(Account.password_hash))
                                      .where(Account.id == actor.account_id))
            assert account is not None
            stored, context = account.password_hash, await password_context(db, account)
            if await self.rt.throttle.wait_seconds(db, [pair_key(actor.email, actor.ip)]):
                return {"current": "Trop de tentatives infructueuses : patientez quelques minutes avant de réessayer."}
        valid, _ = await self.rt.passwords.verify(stored, current)
        if not valid:
            async with transaction(self.rt.maker) as db:
                # Guessing through this form is throttled like the login form, from this address.
                await self.rt.throttle.failure(db, [pair_key(actor.email, actor.ip)])
            return {"current": "Le mot de passe actuel est incorrect."}
        errors = check_new_password(self.rt, password, confirmation, context)
        if not errors and password == current:
            errors = {"password": "Le nouveau mot de passe doit être différent de l'actuel."}
        if errors:
            return errors
        password_hash = await self.rt.passwords.hash(password)
        async with transaction(self.rt.maker) as db:
            account = await db.get(Account, actor.account_id)
            assert account is not None
            ended = await set_password(self.rt, db, account, password_hash, keep_session_id=actor.session_id,
                                       end_sessions=end_others)
            record(db, actor, Action.PASSWORD_CHANGE, target_type="account", target_id=account.id,
                   target_label=account.full_name, after={"other_sessions_ended": end_others})
            self.rt.mailer.queue(db, account.email, "password_changed", account=account, reset=False,
                                 base_url=self.rt.settings.base_url, cig_name=self.rt.settings.cig_name)
        self.rt.mailer.kick()
        if ended:
            kick_logouts(self.rt)
        return {}

    # -- email change --------------------------------------------------------------------------

    async def request_email_change(self, actor: Actor, new_email: str) -> dict[str, str]:
        """Send a confirmation link to the new address (StepUpRequired when authentication is old)."""
        new_email = normalize_email(new_email)
        if not new_email or len(new_email) > 254 or not EMAIL_RE.match(new_email):
            return {"email": "Saisissez une adresse électronique valide, par exemple prenom.nom@mairie.fr."}
        async with transaction(self.rt.maker) as db:
            await self._fresh_session(db, actor)
            account = await db.get(Account, actor.account_id)
            assert account is not None
            if new_email == account.email:
                return {"email": "C'est déjà l'adresse de votre compte."}
            if await db.scalar(select(Account.id).where(Account.email == new_email)):
                return {"email": EMAIL_TAKEN}
            link = await links.create(self.rt, db, account, links.EMAIL, new_email=new_email)
            self.rt.mailer.queue(db, new_email, "email_confirm", account=account, link=link, new_email=new_email,
                                 minutes=links.EMAIL_MINUTES, cig_name=self.rt.settings.cig_name)
            record(db, actor, Action.EMAIL_CHANGE_REQUEST, target_type="account", target_id=account.id,
                   target_label=account.full_name, after={"email": new_email})
        self.rt.mailer.kick()
        return {}

    async def email_link(self, token: str) -> tuple[Account, str] | None:
        async with transaction(self.rt.maker) as db:
            link = await links.find(self.rt, db, token, links.EMAIL)
            if link is None or link.new_email is None:
                return None
            account = await db.get(Account, link.account_id)
            return (account, link.new_email) if account else None

    async def confirm_email(self, token: str, ip: str | None) -> str | None:
        """Apply a confirmed email change; return a French error, or None when done. Notifies the old address."""
        async with transaction(self.rt.maker) as db:
            link = await links.find(self.rt, db, token, links.EMAIL)
            if link is None or link.new_email is None:
                return EMAIL_INVALID
            if await db.scalar(select(Account.id).where(Account.email == link.new_email)):
                return EMAIL_TAKEN
            if not await links.consume(db, link):
                return EMAIL_INVALID
            account = await db.get(Account, link.account_id)
            assert account is not None
            old = account.email
            account.email = link.new_email
            # Old invitation/reset links were addressed to the old mailbox.
            await links.revoke(db, account.id, links.INVITATION, links.RESET)
            await self.rt.throttle.clear(db, old)
            record(db, None, Action.EMAIL_CHANGE, target_type="account", target_id=account.id,
                   target_label=account.full_name, before={"email": old}, after={"email": account.email}, ip=ip)
            self.rt.mailer.queue(db, old, "email_changed", account=account, old_email=old,
                                 cig_name=self.rt.settings.cig_name)
        self.rt.mailer.kick()
        return None

    # -- sessions ------------------------------------------------------------------------------

    async def sessions(self, actor: Actor) -> list[SessionRow]:
        """The actor's live sessions, this one first."""
        now = utcnow()
        async with transaction(self.rt.maker) as db:
            found = (await db.scalars(select(LoginSession).where(
                LoginSession.account_id == actor.account_id, LoginSession.expires_at > now,
                LoginSession.last_seen_at > now - self.rt.sessions.idle).order_by(
                LoginSession.last_seen_at.desc()))).all()
        rows = [SessionRow(session_handle(s.id), short_label(s.user_agent), s.ip or "inconnue", s.created_at,
                           s.last_seen_at, s.id == actor.session_id) for s in found]
        return sorted(rows, key=lambda r: not r.current)

    async def _end(self, db: AsyncSession, account_id: int, session_ids: list[str]) -> int:
        queued = 0
        for session_id in session_ids:
            queued += await ProviderService(self.rt).end_rp_sessions(db, account_id=account_id,
                                                                     login_session_id=session_id)
            await self.rt.sessions.end(db, session_id)
        return queued

    async def end_session(self, actor: Actor, handle: str) -> bool:
        """End one of the actor's own sessions (by its handle); False when there is no such session."""
        async with transaction(self.rt.maker) as db:
            ids = [i for i in (await db.scalars(select(LoginSession.id).where(
                LoginSession.account_id == actor.account_id))).all() if session_handle(i) == handle]
            if not ids:
                return False
            queued = await self._end(db, actor.account_id, ids)
            record(db, actor, Action.SESSION_END, target_type="account", target_id=actor.account_id,
                   target_label=actor.label.split(" <")[0], after={"current": ids[0] == actor.session_id})
        if queued:
            kick_logouts(self.rt)
        return True

    async def end_other_sessions(self, actor: Actor) -> int:
        """End every session of the actor but this one; return how many."""
        async with transaction(self.rt.maker) as db:
            ids = [i for i in (await db.scalars(select(LoginSession.id).where(
                LoginSession.account_id == actor.account_id))).all() if i != actor.session_id]
            queued = await self._end(db, actor.account_id, ids)
            record(db, actor, Action.SESSIONS_END_OTHERS, target_type="account", target_id=actor.account_id,
                   target_label=actor.label.split(" <")[0], after={"sessions": len(ids)})
        if queued:
            kick_logouts(self.rt)
        return len(ids)

    # -- administrators' help ------------------------------------------------------------------

    async def _target(self, db: AsyncSession, actor: Actor, employer_id: int, membership_id: int) -> Membership:
        """The member an administrator may help. A référent helps the agents of their employer; a référent or
        an autorité is helped by CIG staff (correspondant of the portfolio, CIG administrator) only."""
        require(actor, Permission.ACCOUNTS_SECURITY, employer_id)
        membership = await db.scalar(select(Membership).where(Membership.id == membership_id,
                                                              Membership.employer_id == employer_id))
        if membership is None:
            raise NotFound()
        staff = actor.roles_at(employer_id) & {"correspondent", "cig_admin"}
        if (membership.is_referent or membership.is_authority) and not staff:
            raise NotAuthorized(Permission.ACCOUNTS_SECURITY.value)
        return membership

    async def send_reset(self, actor: Actor, employer_id: int, membership_id: int) -> None:
        """Send the member a reset link (the administrator never sees nor sets the password)."""
        async with transaction(self.rt.maker) as db:
            membership = await self._target(db, actor, employer_id, membership_id)
            account = membership.account
            if account.activated_at is None:
                raise ServiceError("Ce compte n'est pas encore activé : renvoyez plutôt l'invitation.")
            if membership.suspended_at is not None:
                raise ServiceError("Ce compte est suspendu : réactivez-le d'abord.")
            link = await links.create(self.rt, db, account, links.RESET, employer_id=employer_id,
                                      created_by_id=actor.account_id)
            self.rt.mailer.queue(db, account.email, "password_reset", account=account, link=link,
                                 minutes=links.RESET_MINUTES, by=actor.label.split(" <")[0],
                                 cig_name=self.rt.settings.cig_name)
            record(db, actor, Action.PASSWORD_RESET_SEND, employer_id=employer_id, target_type="membership",
                   target_id=membership.id, target_label=account.full_name)
        self.rt.mailer.kick()

    async def clear_throttle(self, actor: Actor, employer_id: int, membership_id: int) -> None:
        """Clear the member's failed-login counters from every address."""
        async with transaction(self.rt.maker) as db:
            membership = await self._target(db, actor, employer_id, membership_id)
            await self.rt.throttle.clear(db, membership.account.email)
            record(db, actor, Action.THROTTLE_CLEAR, employer_id=employer_id, target_type="membership",
                   target_id=membership.id, target_label=membership.account.full_name)

    async def end_all_sessions(self, actor: Actor, employer_id: int, membership_id: int) -> int:
        """End every portal and application session of the member (back-channel logout); return how many."""
        async with transaction(self.rt.maker) as db:
            membership = await self._target(db, actor, employer_id, membership_id)
            if membership.account_id == actor.account_id:
                raise ServiceError("Pour vos propres sessions, utilisez la page « Mes sessions ».")
            ids = list((await db.scalars(select(LoginSession.id).where(
                LoginSession.account_id == membership.account_id))).all())
            await self._end(db, membership.account_id, ids)
            # Applications' sessions whose portal session already expired end too.
            await ProviderService(self.rt).end_rp_sessions(db, account_id=membership.account_id)
            record(db, actor, Action.SESSIONS_END_ALL, employer_id=employer_id, target_type="membership",
                   target_id=membership.id, target_label=membership.account.full_name,
                   after={"sessions": len(ids)})
        kick_logouts(self.rt)
        return len(ids)
