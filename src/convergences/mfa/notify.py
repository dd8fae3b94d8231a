"""New-device alert: a successful login from a device not seen in the person's last 90 days."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent
from convergences.db import utcnow
from convergences.mfa.devices import describe, device_key
from convergences.mfa.history import HISTORY_DAYS
from convergences.runtime import Runtime


async def queue_new_device_alert(rt: Runtime, db: AsyncSession, account: Account, ip: str | None,
                                 user_agent: str | None) -> bool:
    """Queue "Nouvelle connexion à votre compte" when this device is new; return whether a mail was queued.

    The very first login of an account has nothing to compare with: no alert (the person just set
    their password)."""
    since = utcnow() - timedelta(days=HISTORY_DAYS)
    seen = (await db.scalars(select(AuditEvent.after).where(
        AuditEvent.action == Action.LOGIN_SUCCESS.value, AuditEvent.target_type == "account",
        AuditEvent.target_id == account.id, AuditEvent.at >= since).order_by(AuditEvent.id.desc())
        .limit(500))).all()
    if not seen:
        return False
    key = device_key(user_agent, ip)
    if any(isinstance(after, dict) and after.get("device") == key for after in seen):
        return False
    rt.mailer.queue(db, account.email, "new_device", account=account, device=describe(user_agent), ip=ip or "",
                    when=utcnow(), cig_name=rt.settings.cig_name, base_url=rt.settings.base_url)
    return True
