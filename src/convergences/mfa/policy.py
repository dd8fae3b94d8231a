"""Who must have a second factor, and the signed half-authenticated state between the two login steps.

Mandatory for CIG staff (administrators, correspondents), référents and autorités; for agents when
their employer asks for it ("2FA obligatoire pour tous les agents") or after a reset of their factors.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.employers.models import Employer, Membership
from convergences.mfa.models import SecondFactor
from convergences.runtime import Runtime
from convergences.security.tokens import Signer

PENDING_COOKIE = "cvg_mfa_pending"
PENDING_SECONDS = 300  # the half-authenticated state lives 5 minutes
FACTOR, ENROL = "factor", "enrol"


async def is_required(db: AsyncSession, account: Account) -> bool:
    """Whether this person must have a second factor (role, employer setting, or a reset)."""
    if account.is_staff or account.mfa_enrolment_required:
        return True
    found = await db.scalar(select(Membership.id).join(Employer, Employer.id == Membership.employer_id).where(
        Membership.account_id == account.id, Membership.suspended_at.is_(None),
        or_(Membership.is_referent.is_(True), Membership.is_authority.is_(True),
            Employer.mfa_required_for_agents.is_(True))).limit(1))
    return found is not None


async def has_factor(db: AsyncSession, account_id: int) -> bool:
    return await db.scalar(select(SecondFactor.id).where(SecondFactor.account_id == account_id).limit(1)) is not None


async def login_step(db: AsyncSession, account: Account) -> str:
    """What follows a correct password: FACTOR, ENROL, or "" (the login is complete)."""
    if await has_factor(db, account.id):
        return FACTOR
    if await is_required(db, account):
        return ENROL
    return ""


def _signer(rt: Runtime) -> Signer:
    return Signer(rt.settings.secret_key, "convergences.mfa.pending")


def pending_value(rt: Runtime, account_id: int, step: str) -> str:
    """The cookie value of the half-authenticated state: the password was right, nothing more."""
    return _signer(rt).dumps([account_id, step])


def read_pending(rt: Runtime, value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    data = _signer(rt).loads(value, max_age=PENDING_SECONDS)
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], int) and data[1] in (FACTOR, ENROL)):
        return None
    return data[0], data[1]
