"""The person's own login history (last 90 days), read from the journal: logins, failed passwords and
failed second factors, with the device and the factor used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from convergences.audit.actions import Action
from convergences.audit.models import AuditEvent
from convergences.authz import Actor
from convergences.db import transaction, utcnow
from convergences.mfa.devices import describe
from convergences.runtime import Runtime

HISTORY_DAYS = 90
HISTORY_ACTIONS = (Action.LOGIN_SUCCESS.value, Action.LOGIN_FAILURE.value, Action.MFA_FAILURE.value)
FACTOR_LABELS = {"password": "Mot de passe", "totp": "Mot de passe + application d'authentification",
                 "recovery_code": "Mot de passe + code de secours", "passkey": "Mot de passe + clé d'accès",
                 "passkey_passwordless": "Clé d'accès (sans mot de passe)"}


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    ip: str
    device: str
    success: bool
    factor: str


async def login_history(rt: Runtime, actor: Actor) -> list[HistoryRow]:
    """The actor's own logins and failed attempts of the last 90 days, newest first."""
    since = utcnow() - timedelta(days=HISTORY_DAYS)
    async with transaction(rt.maker) as db:
        events = (await db.scalars(select(AuditEvent).where(
            AuditEvent.target_type == "account", AuditEvent.target_id == actor.account_id,
            AuditEvent.action.in_(HISTORY_ACTIONS), AuditEvent.at >= since)
            .order_by(AuditEvent.id.desc()).limit(300))).all()
    return [HistoryRow(at=e.at, ip=e.ip or "", device=describe(_after(e).get("user_agent")),
                       success=e.action == Action.LOGIN_SUCCESS.value,
                       factor=FACTOR_LABELS.get(str(_after(e).get("factor", "password")), "Mot de passe"))
            for e in events]


def _after(event: AuditEvent) -> dict[str, Any]:
    return event.after if isinstance(event.after, dict) else {}
