"""Queue mail in the outbox (same transaction as the change) and deliver it over SMTP afterwards.

Delivery is durable and safe across processes: each row is leased before it is sent
(:mod:`convergences.leasing`), so two deliverers never send the same mail, a crashed one's rows come
back when the lease expires, and a failure is retried with a growing delay. Pending mail is delivered
after each queuing transaction (``kick``), at start-up, every ``PERIOD`` while the server runs, and by
``convergences maintenance``. A mail recorded as delivered is never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import aiosmtplib
from jinja2 import Environment
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convergences.db import transaction, utcnow
from convergences.leasing import backoff, claim_due
from convergences.mail.models import OutboxMail
from convergences.settings import MailSettings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 12
PERIOD = 60.0


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
        self._again = False
        self._periodic: asyncio.Task[None] | None = None

    def render(self, template: str, **context: Any) -> tuple[str, str, str]:
        """(subject, text, html) of ``email/<template>``."""
        subject = self.templates.get_template(f"email/{template}.subject.txt").render(**context).strip()
        text = self.templates.get_template(f"email/{template}.txt").render(**context)
        html = self.templates.get_template(f"email/{template}.html").render(**context)
        return subject, text, html

    def queue(self, db: AsyncSession, recipient: str, template: str, **context: Any) -> OutboxMail:
        """Render ``email/<template>.{txt,html}`` and add it to the outbox in the caller's transaction."""
        subject, text, html = self.render(template, **context)
        mail = OutboxMail(recipient=_clean_header(recipient), subject=_clean_header(subject),
                          body_text=text, body_html=html)
        db.add(mail)
        return mail

    def kick(self) -> None:
        """Deliver pending mail in the background (after the queuing transaction committed)."""
        if not self.settings.smtp_host:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._deliver_loop())
        else:
            # A delivery is running and may already have read the pending rows: go round once more.
            self._again = True

    async def _deliver_loop(self) -> None:
        while True:
            self._again = False
            try:
                await self.deliver_pending()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill later kicks
                log.exception("mail delivery failed")
            if not self._again:
                return

    def start_periodic(self, period: float = PERIOD) -> None:
        """Deliver what is due every ``period`` seconds (retries, and mail left by a restarted server)."""
        if not self.settings.smtp_host or (self._periodic is not None and not self._periodic.done()):
            return

        async def run() -> None:
            while True:
                await asyncio.sleep(period)
                self.kick()

        self._periodic = asyncio.get_running_loop().create_task(run())

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def wait_quietly(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    def _message(self, mail: OutboxMail) -> EmailMessage:
        msg = EmailMessage()
        name, addr = parseaddr(self.settings.sender)
        msg["From"] = str(Address(display_name=name, addr_spec=addr)) if name else addr
        msg["To"] = mail.recipient
        msg["Subject"] = mail.subject
        # Stable per outbox row: a resend after a crash between SMTP and the database is recognisable.
        msg["Message-ID"] = f"<outbox-{mail.id}@convergences>"
        msg.set_content(mail.body_text)
        msg.add_alternative(mail.body_html, subtype="html")
        return msg

    async def _send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message, hostname=self.settings.smtp_host, port=self.settings.smtp_port,
            username=self.settings.smtp_username or None, password=self.settings.smtp_password or None,
            start_tls=self.settings.smtp_starttls, use_tls=self.settings.smtp_tls, timeout=20)

    async def deliver_pending(self) -> int:
        """Send every due mail this process could lease; return how many were delivered."""
        if not self.settings.smtp_host:
            return 0
        delivered = 0
        for mail_id, token in await claim_due(self.maker, OutboxMail, OutboxMail.sent_at, max_attempts=MAX_ATTEMPTS):
            async with transaction(self.maker) as db:
                mail = await db.get(OutboxMail, mail_id)
                if mail is None or mail.sent_at is not None or mail.lease_token != token:
                    continue
                message = self._message(mail)
                attempts = mail.attempts + 1
            error: str | None = None
            try:
                await self._send(message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                error = str(exc)[:500] or type(exc).__name__
                log.warning("mail %s not delivered (attempt %s): %s", mail_id, attempts, type(exc).__name__)
            values: dict[str, Any] = {"attempts": attempts, "lease_token": None}
            if error is None:
                values.update(sent_at=utcnow(), next_attempt_at=None, last_error=None)
                if not self.keep_bodies:
                    values.update(body_text="", body_html="")
            else:
                values.update(last_error=error, next_attempt_at=utcnow() + backoff(attempts))
            async with transaction(self.maker) as db:
                done = (await db.execute(update(OutboxMail).where(
                    OutboxMail.id == mail_id, OutboxMail.lease_token == token).values(**values))).rowcount
            if error is None and done:
                delivered += 1
        return delivered
