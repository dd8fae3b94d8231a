"""The mail outbox is durable and delivers exactly once across processes (real SMTP server).

SMTP down → the mail stays pending → a restarted server delivers it once; two deliverers racing → one
delivery; a deliverer that died holding a lease → another takes over after the lease; a delivered mail is
never sent again; retries wait longer and longer; a periodic pass delivers what becomes due."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import replace
from datetime import timedelta

from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

from convergences.accounts.models import Account
from convergences.app import create_app
from convergences.db import transaction, utcnow
from convergences.mail.models import OutboxMail
from convergences.runtime import Runtime
from convergences.settings import Settings
from tests.helpers import execute, scalar
from tests.mailbox import Mailbox


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def smtp_down(settings: Settings) -> Settings:
    return replace(settings, mail=replace(settings.mail, smtp_port=closed_port()))


async def queue(rt: Runtime, recipient: str) -> int:
    async with transaction(rt.maker) as db:
        account = await db.scalar(select(Account).where(Account.email == "agent@bellerive.example"))
        mail = rt.mailer.queue(db, recipient, "password_changed", account=account, reset=False,
                               base_url="http://testserver.local", cig_name="CIG")
        await db.flush()
        return mail.id


async def row(rt: Runtime, mail_id: int) -> OutboxMail:
    async with transaction(rt.maker) as db:
        found = await db.get(OutboxMail, mail_id)
        assert found is not None
        return found


def recipient() -> str:
    return f"outbox.{uuid.uuid4().hex[:10]}@bellerive.example"


async def test_smtp_down_then_a_restarted_server_delivers_once(settings: Settings, runtime: Runtime,
                                                               mailbox: Mailbox) -> None:
    to = recipient()
    down = Runtime.build(smtp_down(settings))
    try:
        mail_id = await queue(down, to)
        assert await down.mailer.deliver_pending() == 0
    finally:
        await down.close()
    pending = await row(runtime, mail_id)
    assert pending.sent_at is None and pending.attempts == 1 and pending.last_error
    assert pending.lease_token is None and pending.next_attempt_at is not None
    assert pending.next_attempt_at > utcnow()  # retried later, not hammered
    await asyncio.sleep((pending.next_attempt_at - utcnow()).total_seconds() + 0.1)
    # A new process starts (the app's lifespan delivers pending mail at start-up).
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local"):
        await mailbox.wait_for(to)
        for _ in range(100):
            if (await row(runtime, mail_id)).sent_at is not None:
                break
            await asyncio.sleep(0.05)
    delivered = await row(runtime, mail_id)
    assert delivered.sent_at is not None and delivered.attempts == 2 and delivered.body_text == ""
    # Delivered is final: later passes (another process, maintenance) send nothing again.
    again = Runtime.build(settings)
    try:
        assert await again.mailer.deliver_pending() == 0
    finally:
        await again.close()
    await asyncio.sleep(0.2)
    assert len(mailbox.to(to)) == 1


async def test_two_concurrent_deliverers_send_each_mail_once(settings: Settings, runtime: Runtime,
                                                             mailbox: Mailbox) -> None:
    recipients = [recipient() for _ in range(6)]
    for to in recipients:
        await queue(runtime, to)
    first, second = Runtime.build(settings), Runtime.build(settings)
    try:
        counts = await asyncio.gather(first.mailer.deliver_pending(), second.mailer.deliver_pending())
    finally:
        await first.close()
        await second.close()
    assert sum(counts) == len(recipients)
    await asyncio.sleep(0.2)
    for to in recipients:
        assert len(mailbox.to(to)) == 1, to


async def test_a_dead_deliverers_lease_expires_and_only_the_new_holder_records(settings: Settings,
                                                                               runtime: Runtime,
                                                                               mailbox: Mailbox) -> None:
    to = recipient()
    mail_id = await queue(runtime, to)
    # A process leased the mail, then died before sending it.
    await execute(runtime, update(OutboxMail).where(OutboxMail.id == mail_id)
                  .values(lease_token="dead", next_attempt_at=utcnow() + timedelta(seconds=60)))
    assert await runtime.mailer.deliver_pending() == 0  # leased: nobody else sends it
    await execute(runtime, update(OutboxMail).where(OutboxMail.id == mail_id)
                  .values(next_attempt_at=utcnow() - timedelta(seconds=1)))  # the lease ran out
    assert await runtime.mailer.deliver_pending() == 1
    await mailbox.wait_for(to)
    done = await row(runtime, mail_id)
    assert done.sent_at is not None and done.lease_token is None


async def test_retries_back_off_and_stop_after_the_maximum(settings: Settings, runtime: Runtime) -> None:
    from convergences.mail.services import MAX_ATTEMPTS

    down = Runtime.build(smtp_down(settings))
    try:
        mail_id = await queue(down, recipient())
        waits = []
        for _ in range(3):
            await execute(down, update(OutboxMail).where(OutboxMail.id == mail_id)
                          .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
            before = utcnow()
            await down.mailer.deliver_pending()
            waits.append(((await row(down, mail_id)).next_attempt_at - before).total_seconds())
        # The delay doubles from the failed attempt (which itself takes a moment under load).
        assert all(expected <= wait < expected + 2 for expected, wait in zip([2, 4, 8], waits, strict=True)), waits
        await execute(down, update(OutboxMail).where(OutboxMail.id == mail_id)
                      .values(attempts=MAX_ATTEMPTS, next_attempt_at=None))
        assert await down.mailer.deliver_pending() == 0
        assert (await row(down, mail_id)).attempts == MAX_ATTEMPTS
    finally:
        await down.close()


async def test_a_periodic_pass_delivers_what_becomes_due(settings: Settings, runtime: Runtime,
                                                         mailbox: Mailbox) -> None:
    to = recipient()
    mail_id = await queue(runtime, to)
    await execute(runtime, update(OutboxMail).where(OutboxMail.id == mail_id)
                  .values(next_attempt_at=utcnow() + timedelta(seconds=0.4)))
    server = Runtime.build(settings)
    try:
        server.mailer.start_periodic(0.2)  # no kick: only the periodic pass can send it
        await mailbox.wait_for(to, timeout=5)
    finally:
        await server.close()
    assert await scalar(runtime, select(OutboxMail.sent_at).where(OutboxMail.id == mail_id)) is not None
