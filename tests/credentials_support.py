"""Helpers shared by the credentials tests (reset, change, email, sessions, throttling, outbox)."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import func, select, update

from convergences.accounts.models import Account
from convergences.audit.models import AuditEvent
from convergences.db import utcnow
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from tests.helpers import execute, scalar
from tests.mailbox import Mailbox, text_body

NEW_PASSWORD = "quatre girafes traversent la Loire"  # noqa: S105 - a test password


def link_path(message: EmailMessage, prefix: str) -> str:
    match = re.search(r"https?://[^/\s]+(" + re.escape(prefix) + r"[^\s]+)", text_body(message))
    assert match, f"no {prefix} link in the mail"
    return match.group(1)


async def new_mails(mailbox: Mailbox, recipient: str, before: int, count: int = 1) -> list[EmailMessage]:
    """The mails received by ``recipient`` since there were ``before`` of them."""
    return (await mailbox.wait_for(recipient, before + count))[before:]


async def age_authentication(rt: Runtime, email: str, minutes: int = 11) -> None:
    """Make every session of the account look authenticated ``minutes`` ago (step-up no longer recent)."""
    account_id = await scalar(rt, select(Account.id).where(Account.email == email))
    await execute(rt, update(LoginSession).where(LoginSession.account_id == account_id)
                  .values(authenticated_at=utcnow() - timedelta(minutes=minutes)))


async def session_count(rt: Runtime, email: str) -> int:
    account_id = await scalar(rt, select(Account.id).where(Account.email == email))
    return int(await scalar(rt, select(func.count()).select_from(LoginSession)
                            .where(LoginSession.account_id == account_id)))


async def events(rt: Runtime, action: str) -> list[AuditEvent]:
    from tests.helpers import rows

    return await rows(rt, select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
