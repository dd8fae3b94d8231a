"""One-time links sent by email: invitations, password resets, email-address confirmations.

The link signs (itsdangerous, one salt per purpose) the row id and a 256-bit nonce whose SHA-256 only
is stored. A link is valid once (``used_at`` set by a conditional UPDATE, so even two concurrent uses
cannot both succeed), until its ``expires_at``, and only for its own purpose.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account, Invitation
from convergences.db import utcnow
from convergences.runtime import Runtime
from convergences.security.tokens import Signer, digest, random_token

INVITATION, RESET, EMAIL = "invitation", "reset", "email"
RESET_MINUTES = 15
EMAIL_MINUTES = 60
# Where each purpose's link points (the token is appended).
PATHS = {INVITATION: "/invitation/", RESET: "/mot-de-passe/reinitialiser/", EMAIL: "/compte/adresse/confirmer/"}


def lifetime(rt: Runtime, purpose: str) -> timedelta:
    if purpose == INVITATION:
        return timedelta(days=rt.settings.invitation_days)
    return timedelta(minutes=RESET_MINUTES if purpose == RESET else EMAIL_MINUTES)


def _signer(rt: Runtime, purpose: str) -> Signer:
    # The invitation keeps its historical salt: links already sent stay valid.
    return rt.invitations if purpose == INVITATION else Signer(rt.settings.secret_key, f"convergences.{purpose}")


async def revoke(db: AsyncSession, account_id: int, *purposes: str) -> None:
    """Revoke every outstanding link of these purposes for the account."""
    await db.execute(update(Invitation).where(Invitation.account_id == account_id, Invitation.used_at.is_(None),
                                              Invitation.revoked_at.is_(None), Invitation.purpose.in_(purposes))
                     .values(revoked_at=utcnow()))


async def create(rt: Runtime, db: AsyncSession, account: Account, purpose: str, *, employer_id: int | None = None,
                 created_by_id: int | None = None, new_email: str | None = None) -> str:
    """Revoke the account's older links of this purpose, create a new one, return its full URL."""
    await revoke(db, account.id, purpose)
    nonce = random_token()
    link = Invitation(account_id=account.id, employer_id=employer_id, nonce_hash=digest(nonce), purpose=purpose,
                      expires_at=utcnow() + lifetime(rt, purpose), created_by_id=created_by_id, new_email=new_email)
    db.add(link)
    await db.flush()
    return f"{rt.settings.base_url}{PATHS[purpose]}{_signer(rt, purpose).dumps([link.id, nonce])}"


async def find(rt: Runtime, db: AsyncSession, token: str, purpose: str) -> Invitation | None:
    """The live link behind this token, or None (bad signature, other purpose, used, revoked, expired)."""
    value = _signer(rt, purpose).loads(token, max_age=int(lifetime(rt, purpose).total_seconds()))
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], str)):
        return None
    link = await db.get(Invitation, value[0])
    if (link is None or link.purpose != purpose or link.nonce_hash != digest(value[1]) or link.used_at
            or link.revoked_at or link.expires_at <= utcnow()):
        return None
    return link


async def consume(db: AsyncSession, link: Invitation) -> bool:
    """Mark the link used; False when someone else used it first (single use even under a race)."""
    used = await db.execute(update(Invitation).where(Invitation.id == link.id, Invitation.used_at.is_(None),
                                                     Invitation.revoked_at.is_(None)).values(used_at=utcnow()))
    return used.rowcount == 1  # type: ignore[attr-defined]
