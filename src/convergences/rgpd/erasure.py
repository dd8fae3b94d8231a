"""Erasure of a person (RGPD art. 17), in the caller's transaction.

One function, :func:`erase_account`, used by every path that makes an account disappear: a référent
deleting the last membership of an agent, a référent confirming a self-service erasure request, a CIG
administrator erasing an account (staff included), and the deletion of an employer. It

* ends the portal sessions and the applications' sessions (tokens revoked, back-channel logout queued);
* pseudonymises the journal: the person's values in every entry where they act or are the subject are
  replaced by a stable pseudonym ("Personne effacée n°7f3a…"), then their journal key is destroyed
  (crypto-shredding: see :mod:`convergences.audit.chain`, nothing is re-sealed, ``audit verify`` stays green);
* deletes the mail addressed to them and redacts their name and address from the other mail of the outbox;
* deletes their login-throttling counters (account and the IP addresses they used);
* deletes the account, and with it (foreign keys) memberships, rights, invitations, OIDC codes, tokens and
  application sessions, erasure requests.
"""

from __future__ import annotations

import secrets
from typing import Any

from markupsafe import escape
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.audit.chain import PERSONAL_DETAIL_KEYS, erased_subject_values
from convergences.audit.models import AuditEvent, AuditPersonKey, rewriting
from convergences.authz import Actor
from convergences.db import utcnow
from convergences.mail.models import OutboxMail
from convergences.oidc.services import ProviderService
from convergences.runtime import Runtime
from convergences.security.models import LoginSession, LoginThrottle
from convergences.security.throttle import ip_key

PSEUDONYM_PREFIX = "Personne effacée n°"


def new_pseudonym() -> str:
    return PSEUDONYM_PREFIX + secrets.token_hex(4)


async def person_key(db: AsyncSession, account_id: int) -> AuditPersonKey:
    """The person's journal key (created if they never appeared in the journal)."""
    key = await db.scalar(select(AuditPersonKey).where(AuditPersonKey.account_id == account_id))
    if key is None:
        key = AuditPersonKey(account_id=account_id, secret=secrets.token_hex(32))
        db.add(key)
        await db.flush()
    return key


async def erase_account(rt: Runtime, db: AsyncSession, actor: Actor | None, account: Account, *,
                        employer_id: int | None = None, reason: str = "deletion") -> str:
    """Erase the person (see the module docstring); return their pseudonym. The caller checked the
    permission and the business rules (last référent…), and kicks the outboxes after commit."""
    now = utcnow()
    email, values = account.email, personal_values(account)
    pseudonym = new_pseudonym()
    ips = set((await db.scalars(select(LoginSession.ip).where(LoginSession.account_id == account.id,
                                                               LoginSession.ip.is_not(None)))).all())
    await ProviderService(rt).end_rp_sessions(db, account_id=account.id)
    await rt.sessions.end_all(db, account.id)
    key = await person_key(db, account.id)
    # The erasure entry itself names only the pseudonym; it is pseudonymised below like the others.
    audit.record(db, actor, Action.ACCOUNT_DELETE, employer_id=employer_id, target_type="account",
                 target_id=account.id, target_label=pseudonym, after={"erased": True, "reason": reason})
    await db.flush()
    ips |= await _pseudonymise_journal(db, key.id, pseudonym)
    key.secret, key.account_id, key.pseudonym, key.erased_at = None, None, pseudonym, now
    # Every throttle counter naming the person: the account's, each address+account pair, the addresses used.
    await rt.throttle.clear(db, email)
    await db.execute(delete(LoginThrottle).where(LoginThrottle.key.in_([ip_key(ip) for ip in ips if ip])))
    await _clean_outbox(db, email, values, pseudonym)
    await db.delete(account)
    await db.flush()
    return pseudonym


def personal_values(account: Account) -> list[str]:
    """The person's values to redact from free text, longest first (the full name before its parts)."""
    found = {account.full_name, account.email, account.family_name, account.given_name, account.phone_contact or ""}
    return sorted((v for v in found if v and len(v) > 1), key=len, reverse=True)


async def _pseudonymise_journal(db: AsyncSession, key_id: int, pseudonym: str) -> set[str]:
    """Replace the person's values by the pseudonym in their entries; return the IP addresses removed."""
    ips = set((await db.scalars(select(AuditEvent.ip).where(
        or_(AuditEvent.actor_key_id == key_id, (AuditEvent.subject_key_id == key_id)
            & AuditEvent.actor_key_id.is_(None)), AuditEvent.ip.is_not(None)))).all())
    with rewriting(db, "erasure"):
        # Where they acted: their label and the IP address are theirs.
        await db.execute(update(AuditEvent).where(AuditEvent.actor_key_id == key_id)
                         .values(actor_label=pseudonym, ip=None))
        # What was about them: label, their details, and the IP of entries without actor (logins).
        await db.execute(update(AuditEvent).where(AuditEvent.subject_key_id == key_id)
                         .values(target_label=pseudonym))
        await db.execute(update(AuditEvent).where(AuditEvent.subject_key_id == key_id,
                                                  AuditEvent.actor_key_id.is_(None)).values(ip=None))
        detailed = (await db.execute(select(AuditEvent.id, AuditEvent.before, AuditEvent.after).where(
            AuditEvent.subject_key_id == key_id,
            or_(AuditEvent.before.is_not(None), AuditEvent.after.is_not(None))))).all()
        for entry_id, before, after in detailed:
            if not (_has_personal(before) or _has_personal(after)):
                continue
            values = erased_subject_values({"before": before, "after": after}, pseudonym)
            await db.execute(update(AuditEvent).where(AuditEvent.id == entry_id)
                             .values(before=values["before"], after=values["after"]))
    return ips


def _has_personal(details: dict[str, Any] | None) -> bool:
    return bool(details) and any(k in PERSONAL_DETAIL_KEYS for k in details)  # type: ignore[union-attr]


async def _clean_outbox(db: AsyncSession, email: str, values: list[str], pseudonym: str) -> None:
    """Mail to the person goes; mail about them (to their référents…) keeps going, without their values."""
    await db.execute(delete(OutboxMail).where(OutboxMail.recipient == email))
    values = sorted({*values, *(str(escape(v)) for v in values)}, key=len, reverse=True)
    mentions = or_(*(column.contains(value, autoescape=True) for value in values
                     for column in (OutboxMail.subject, OutboxMail.body_text, OutboxMail.body_html)))
    for mail in (await db.scalars(select(OutboxMail).where(mentions))).all():
        for value in values:
            mail.subject = mail.subject.replace(value, pseudonym)
            mail.body_text = mail.body_text.replace(value, pseudonym)
            mail.body_html = mail.body_html.replace(value, pseudonym)
