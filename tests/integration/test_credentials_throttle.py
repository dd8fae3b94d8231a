"""Throttling that cannot be turned into a lockout, the owner's alert mail, and unlocking by administrators.

Floods come from other addresses through the service (the test client always has one address); the real
user logs in over HTTP from their own browser."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from convergences.accounts.services import AuthService
from convergences.runtime import Runtime
from convergences.security.models import LoginThrottle
from convergences.security.throttle import account_key, pair_key
from convergences.seed import DEMO_PASSWORD
from tests.credentials_support import events, new_mails
from tests.helpers import REFERENT, SIVOM, employer_id, logged_in, membership_id, rows
from tests.mailbox import text_body

AGENT = "agent@bellerive.example"


async def flood(rt: Runtime, email: str, attempts: int, *, first_host: int = 1) -> None:
    """Wrong passwords from many documentation addresses (TEST-NET-3), a few from each."""
    service = AuthService(rt)
    for n in range(attempts):
        await service.login(email, "mauvais mot de passe", f"203.0.113.{first_host + n // 3}", "attaquant")


async def test_a_flood_from_other_addresses_never_stops_the_owner(make_browser, runtime: Runtime) -> None:
    owner = await make_browser()
    await owner.login(AGENT)  # this browser becomes a known device of the account
    await owner.logout()
    limit = runtime.settings.throttle.account_global_free_failures
    await flood(runtime, AGENT, limit + 10)
    row = [r for r in await rows(runtime, select(LoginThrottle)) if r.key == account_key(AGENT)][0]
    # The account is under attack: past its free failures the flood is refused unchecked.
    assert row.failures == limit + 1 and row.blocked_until is not None
    # A browser that never logged in to this account is slowed down, even with the right password…
    stranger = await make_browser()
    assert (await stranger.post("/login", {"email": AGENT, "password": DEMO_PASSWORD})).status_code == 429
    # …but the owner, from their own computer and address, logs in at once.
    response = await owner.post("/login", {"email": AGENT, "password": DEMO_PASSWORD})
    assert response.status_code == 303


async def test_failures_from_one_address_slow_only_that_address(make_browser, runtime: Runtime) -> None:
    free = runtime.settings.throttle.account_free_failures
    service = AuthService(runtime)
    for _ in range(free + 1):
        await service.login(AGENT, "mauvais mot de passe", "203.0.113.7", "attaquant")
    keys = {r.key: r for r in await rows(runtime, select(LoginThrottle))}
    assert keys[pair_key(AGENT, "203.0.113.7")].blocked_until is not None
    assert keys[account_key(AGENT)].blocked_until is None
    # The real user from another address (and even a new browser) is not slowed.
    await (await make_browser()).login(AGENT)


async def test_the_owner_is_warned_once_per_burst(make_browser, runtime: Runtime, mailbox) -> None:  # type: ignore[no-untyped-def]
    threshold = runtime.settings.throttle.alert_after_failures
    before = len(mailbox.to(AGENT))
    await flood(runtime, AGENT, threshold - 1)
    await asyncio.sleep(0.3)
    assert len(mailbox.to(AGENT)) == before
    await flood(runtime, AGENT, threshold + 5, first_host=50)
    alert = (await new_mails(mailbox, AGENT, before))[0]
    assert alert["Subject"] == "Tentatives de connexion infructueuses sur votre compte"
    assert "vous pouvez toujours vous connecter" in text_body(alert)
    await asyncio.sleep(0.5)
    assert len(mailbox.to(AGENT)) == before + 1  # once per burst, not per attempt
    assert len(await events(runtime, "account:login:alert")) == 1
    # Unknown addresses get no mail, of course, and no alert entry.
    await flood(runtime, "inconnu@bellerive.example", threshold + 1)
    assert len(await events(runtime, "account:login:alert")) == 1


async def test_referent_clears_an_agent_correspondent_clears_a_referent(make_browser, runtime: Runtime) -> None:
    await flood(runtime, AGENT, runtime.settings.throttle.account_global_free_failures + 2)
    await flood(runtime, "paie@bellerive.example", runtime.settings.throttle.account_global_free_failures + 2)
    eid = await employer_id(runtime)
    agent_mid = await membership_id(runtime, AGENT)
    colleague_mid = await membership_id(runtime, "paie@bellerive.example")
    referent = await logged_in(make_browser, REFERENT)
    assert (await referent.post(f"/employeurs/{eid}/agents/{agent_mid}/debloquer")).status_code == 303
    assert not [r for r in await rows(runtime, select(LoginThrottle)) if AGENT in r.key]
    # A fellow référent is not the référent's to unlock; the portfolio's correspondent may.
    assert (await referent.post(f"/employeurs/{eid}/agents/{colleague_mid}/debloquer")).status_code == 403
    assert [r for r in await rows(runtime, select(LoginThrottle)) if "paie@" in r.key]
    correspondent = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert (await correspondent.post(f"/employeurs/{eid}/agents/{colleague_mid}/debloquer")).status_code == 303
    assert not [r for r in await rows(runtime, select(LoginThrottle)) if "paie@" in r.key]
    cleared = await events(runtime, "account:throttle:clear")
    assert [e.target_id for e in cleared] == [agent_mid, colleague_mid]
    # Another employer's agent is out of reach.
    sivom, other = await employer_id(runtime, SIVOM), await membership_id(runtime, "technique@coteaux.example", SIVOM)
    assert (await referent.post(f"/employeurs/{sivom}/agents/{other}/debloquer")).status_code == 403
    await (await make_browser()).login(AGENT)


async def test_a_flood_never_stops_the_owner_at_the_second_factor_either(make_browser, runtime: Runtime) -> None:
    """A référent (TOTP mandatory) under attack from other addresses: from their own browser the password
    step AND the second-factor step go through (the factor step follows the same known-device rule)."""
    owner = await make_browser()
    await owner.login(REFERENT)  # password + TOTP: this browser becomes a known device
    await owner.logout()
    limit = runtime.settings.throttle.account_global_free_failures
    await flood(runtime, REFERENT, limit + 10)
    row = [r for r in await rows(runtime, select(LoginThrottle)) if r.key == account_key(REFERENT)][0]
    assert row.blocked_until is not None
    stranger = await make_browser()
    assert (await stranger.post("/login", {"email": REFERENT, "password": DEMO_PASSWORD})).status_code == 429
    response = await owner.login(REFERENT)  # asserts the 303 of each step, the factor page included
    assert response.status_code == 303 and response.headers["location"] == "/"


async def test_wrong_second_factor_codes_warn_the_owner_too(runtime: Runtime, mailbox) -> None:  # type: ignore[no-untyped-def]
    """Someone who knows the password and guesses codes (from several addresses) triggers the same alert."""
    from convergences.mfa.services import MfaService

    threshold = runtime.settings.throttle.alert_after_failures
    before = len(mailbox.to(REFERENT))
    auth = AuthService(runtime)
    for n in range(threshold):
        ip = f"198.51.100.{1 + n // 3}"
        login = await auth.login(REFERENT, DEMO_PASSWORD, ip, "attaquant")
        assert login.ok and login.pending, login
        assert not (await MfaService(runtime).second_step(login.pending, "pas un code", ip, "attaquant", None)).ok
    alert = (await new_mails(mailbox, REFERENT, before))[0]
    assert alert["Subject"] == "Tentatives de connexion infructueuses sur votre compte"
    assert len(await events(runtime, "account:login:alert")) == 1
