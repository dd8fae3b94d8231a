"""The core loop end to end: référent creates an agent and grants a right; the agent accepts the
invitation from the real SMTP server, logs in and sees the tile."""

from __future__ import annotations

from sqlalchemy import select

from convergences.accounts.models import Account
from convergences.audit.models import AuditEvent
from convergences.db import transaction
from convergences.runtime import Runtime
from tests.helpers import REFERENT, employer_id, logged_in
from tests.mailbox import Mailbox, invitation_path


async def test_referent_creates_agent_who_logs_in_and_sees_tile(make_browser, runtime: Runtime,
                                                                mailbox: Mailbox) -> None:
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    email = f"nouvel.agent.{id(referent)}@bellerive.example"
    response = await referent.post(f"/employeurs/{eid}/agents",
                                   {"given_name": "Nora", "family_name": "Lefèvre", "email": email})
    assert response.status_code == 303
    async with transaction(runtime.maker) as db:
        account = await db.scalar(select(Account).where(Account.email == email))
        assert account is not None and account.activated_at is None
    from convergences.employers.models import Membership

    async with transaction(runtime.maker) as db:
        membership_id = await db.scalar(select(Membership.id).where(Membership.account_id == account.id))
    from convergences.applications.models import Application

    async with transaction(runtime.maker) as db:
        bip = await db.scalar(select(Application.id).where(Application.slug == "bip"))
    response = await referent.post(f"/employeurs/{eid}/agents/{membership_id}/droits/{bip}",
                                   {"enabled": "1"}, htmx=True)
    assert response.status_code == 200
    assert f'id="agent-{membership_id}"' in response.text and "checked" in response.text

    mails = await mailbox.wait_for(email)
    path = invitation_path(mails[-1])
    agent = await make_browser()
    page = await agent.get(path)
    assert page.status_code == 200 and "Nora" in page.text
    password = "lune pivoine escalier 42"
    response = await agent.post(path, {"password": password, "confirmation": password})
    assert response.status_code == 303
    # single use
    again = await agent.get(path)
    assert again.status_code == 410
    await agent.login(email, password)
    services = await agent.get("/services")
    assert "BIP" in services.text and 'data-app="bip"' in services.text
    async with transaction(runtime.maker) as db:
        actions = set((await db.scalars(select(AuditEvent.action))).all())
    assert {"account:create", "grant:add", "account:invitation:send", "account:password:set"} <= actions
