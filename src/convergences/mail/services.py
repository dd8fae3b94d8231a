"""Queue mail in the outbox (same transaction as the change) and deliver it over SMTP afterwards."""

from __future__ import annotations

import asyncio
import logging
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import aiosmtplib
from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convergences.db import utcnow
from convergences.mail.models import OutboxMail
from convergences.settings import MailSettings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


def _clean_header(value: str) -> str:
    # Header injection (ASVS 1.3.11): no line breaks in any header value.
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


class Mailer:
    def __init__(self, settings: MailSettings, maker: async_sessionmaker[AsyncSession],
                 templates: Environment, *, keep_bodies: bool) -> None:
        self.settings = settings
        self.maker = maker
        self.templates = templates
        # In demo mode the bodies stay readable in the local mailbox page; otherwise a delivered
        # mail's body (which may hold a one-time link) is erased.
        self.keep_bodies = keep_bodies
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def queue(self, db: AsyncSession, recipient: str, template: str, **context: Any) -> OutboxMail:
        """Render ``email/<template>.{txt,html}`` and add it to the outbox in the caller's transaction."""
        subject = self.templates.get_template(f"email/{template}.subject.txt").render(**context).strip()
        text = self.templates.get_template(f"email/{template}.txt").render(**context)
        html = self.templates.get_template(f"email/{template}.html").render(**context)
        mail = OutboxMail(recipient=_clean_header(recipient), subject=_clean_header(subject),
                          body_text=text, body_html=html)
        db.add(mail)
        return mail

    def kick(self) -> None:
        """Deliver pending mail in the background (after the queuing transaction committed)."""
        if not self.settings.smtp_host:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.deliver_pending())

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def wait_quietly(self) -> None:
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    def _message(self, mail: OutboxMail) -> EmailMessage:
        msg = EmailMessage()
        name, addr = parseaddr(self.settings.sender)
        msg["From"] = str(Address(display_name=name, addr_spec=addr)) if name else addr
        msg["To"] = mail.recipient
        msg["Subject"] = mail.subject
        msg["Message-ID"] = f"<outbox-{mail.id}@convergences>"
        msg.set_content(mail.body_text)
        msg.add_alternative(mail.body_html, subtype="html")
        return msg

    async def deliver_pending(self) -> int:
        """Send every pending mail; return how many were delivered. Safe to call concurrently."""
        if not self.settings.smtp_host:
            return 0
        delivered = 0
        async with self._lock:
            async with self.maker() as db:
                pending = (await db.scalars(select(OutboxMail).where(
                    OutboxMail.sent_at.is_(None), OutboxMail.attempts < MAX_ATTEMPTS)
                    .order_by(OutboxMail.id).limit(100))).all()
                for mail in pending:
                    try:
                        await aiosmtplib.send(
                            self._message(mail), hostname=self.settings.smtp_host,
                            port=self.settings.smtp_port, username=self.settings.smtp_username or None,
                            password=self.settings.smtp_password or None,
                            start_tls=self.settings.smtp_starttls, use_tls=self.settings.smtp_tls,
                            timeout=20)
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        mail.attempts += 1
                        mail.last_error = str(exc)[:500]
                        log.warning("mail %s not delivered (attempt %s): %s", mail.id, mail.attempts,
                                    type(exc).__name__)
                    else:
                        mail.attempts += 1
                        mail.sent_at = utcnow()
                        if not self.keep_bodies:
                            mail.body_text = mail.body_html = ""
                        delivered += 1
                    await db.commit()
        return delivered
