"""Inactive accounts: warned after ``inactivity_warning_months`` without login (the person and the
référents of each of their employers), suspended per membership after ``inactivity_suspension_months``.

The reference date is the last login; for a person who never logged in, the activation (password set),
or else the account's creation: an invited person who never came is as inactive as one who stopped.
A membership younger than the threshold counts from its own creation (a person just attached to a new
employer is not suspended there at once). CIG staff are never concerned: their access is not a
membership, and locking out the CIG's administrators or correspondents by a timer would leave the
employers without support (their accounts are reviewed by the CIG itself).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.db import utcnow
from convergences.employers.models import Employer, Membership
from convergences.errors import ServiceError
from convergences.maintenance.clock import months_after, months_before
from convergences.maintenance.models import InactivityWarning
from convergences.runtime import Runtime
from convergences.settings import Settings

PARIS = ZoneInfo("Europe/Paris")

# Even when a person is found already past the suspension threshold (e.g. the first run after deployment),
# the warning comes first and gives them at least this long to log in.
MIN_NOTICE = timedelta(days=30)


def reference_date(account: Account) -> datetime:
    """The start of the person's current inactivity: last login, else activation, else creation."""
    return account.last_login_at or account.activated_at or account.created_at


def _reference_sql():  # type: ignore[no-untyped-def]
    return func.coalesce(Account.last_login_at, Account.activated_at, Account.created_at)


async def _candidates(db: AsyncSession, cutoff: datetime) -> list[tuple[Membership, Employer]]:
    """Unsuspended memberships of non-staff accounts, inactive since before ``cutoff``."""
    rows = (await db.execute(
        select(Membership, Employer).join(Account, Membership.account_id == Account.id)
        .join(Employer, Employer.id == Membership.employer_id)
        .where(Membership.suspended_at.is_(None), Account.is_cig_admin.is_(False),
               Account.is_correspondent.is_(False), _reference_sql() < cutoff, Membership.created_at < cutoff)
        .order_by(Membership.account_id, Membership.id))).all()
    return [(m, e) for m, e in rows]


async def _warnings(db: AsyncSession, account_ids: set[int]) -> dict[int, InactivityWarning]:
    if not account_ids:
        return {}
    found = await db.scalars(select(InactivityWarning).where(InactivityWarning.account_id.in_(account_ids)))
    return {w.account_id: w for w in found}


async def warn_inactive(db: AsyncSession, now: datetime, rt: Runtime) -> int:
    """Mail each person inactive past the warning threshold, once per inactivity period, and the
    référents of each of their employers. Return how many persons were warned."""
    retention = rt.settings.retention
    cutoff = months_before(now, retention.inactivity_warning_months)
    by_account: dict[int, list[tuple[Membership, Employer]]] = defaultdict(list)
    for membership, employer in await _candidates(db, cutoff):
        by_account[membership.account_id].append((membership, employer))
    warnings = await _warnings(db, set(by_account))
    to_warn = {account_id: rows for account_id, rows in by_account.items()
               if account_id not in warnings or warnings[account_id].warned_at < reference_date(rows[0][0].account)}
    if not to_warn:
        return 0
    employer_ids = {e.id for rows in to_warn.values() for _, e in rows}
    referents: dict[int, list[Account]] = defaultdict(list)
    for membership in (await db.scalars(select(Membership).where(
            Membership.employer_id.in_(employer_ids), Membership.is_referent.is_(True),
            Membership.suspended_at.is_(None)))).all():
        referents[membership.employer_id].append(membership.account)
    cig_name = rt.settings.cig_name
    for account_id, rows in to_warn.items():
        account = rows[0][0].account
        since = reference_date(account)
        suspension = max(months_after(since, retention.inactivity_suspension_months), now + MIN_NOTICE)
        employers = [e for _, e in rows]
        rt.mailer.queue(db, account.email, "inactive_account", account=account, since=since,
                        never=account.last_login_at is None, suspension=suspension, employers=employers,
                        login_url=f"{rt.settings.base_url}/login", cig_name=cig_name)
        for employer in employers:
            for referent in referents[employer.id]:
                if referent.id == account.id:
                    continue
                rt.mailer.queue(db, referent.email, "inactive_account_referent", referent=referent,
                                account=account, employer=employer, since=since,
                                never=account.last_login_at is None, suspension=suspension,
                                grid_url=f"{rt.settings.base_url}/employeurs/{employer.id}/agents",
                                cig_name=cig_name)
        warning = warnings.get(account_id)
        if warning is None:
            db.add(InactivityWarning(account_id=account_id, warned_at=now))
        else:
            warning.warned_at = now
    return len(to_warn)


async def suspend_inactive(db: AsyncSession, now: datetime, rt: Runtime) -> int:
    """Suspend every membership inactive past the suspension threshold whose holder was warned at least
    ``MIN_NOTICE`` ago in this period, through the référents' own suspension path (sessions ended,
    back-channel logout, journal entry by "système"). The employer's last active référent is left for
    the autorité to replace (an employer never stays without one). Return how many were suspended."""
    from convergences.employers.services import EmployerService

    cutoff = months_before(now, rt.settings.retention.inactivity_suspension_months)
    candidates = await _candidates(db, cutoff)
    warnings = await _warnings(db, {m.account_id for m, _ in candidates})
    service = EmployerService(rt)
    suspended = 0
    for membership, _employer in candidates:
        since = reference_date(membership.account)
        warning = warnings.get(membership.account_id)
        if warning is None or warning.warned_at < since or warning.warned_at > now - MIN_NOTICE:
            continue
        try:
            await service.suspend_in(db, None, membership, now=now, after={
                "motif": "inactivité", "inactif_depuis": since.date().isoformat()})
        except ServiceError:
            continue
        suspended += 1
    return suspended


def inactivity_label(settings: Settings) -> Callable[[Account], str]:
    """For the agents grid: "inactif depuis le …" once past the warning threshold, else ""."""
    months = settings.retention.inactivity_warning_months

    def label(account: Account) -> str:
        since = reference_date(account)
        if account.is_staff or since is None or since >= months_before(utcnow(), months):
            return ""
        return f"inactif depuis le {since.astimezone(PARIS):%d/%m/%Y}"

    return label
