"""Failed-login throttling per account+IP, per IP and per account: a growing delay, never a permanent lockout
(the lockout-proof design itself is proved in tests/integration/test_credentials_throttle.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from convergences.audit.models import AuditEvent
from convergences.db import transaction, utcnow
from convergences.runtime import Runtime
from convergences.security.models import LoginThrottle
from convergences.security.throttle import account_key, ip_key, pair_key
from tests.helpers import REFERENT, Browser, employer_id, execute, logged_in, membership_id, scalar

EMAIL = "agent@bellerive.example"
PASSWORD = "Convergences demo 2026 !"
WAIT = "Trop de tentatives de connexion infructueuses"
LOGIN_FAILED = "Adresse électronique ou mot de passe incorrect."


async def throttle_row(rt: Runtime, key: str) -> LoginThrottle | None:
    async with transaction(rt.maker) as db:
        return await db.get(LoginThrottle, key)


async def release(rt: Runtime, key: str) -> None:
    """Jump past the current delay (as if the wait were over)."""
    await execute(rt, update(LoginThrottle).where(LoginThrottle.key == key)
                  .values(blocked_until=utcnow() - timedelta(seconds=1)))


async def hold(rt: Runtime, key: str, seconds: int = 120) -> None:
    """Make the current delay long enough for the test to observe it whatever the machine's speed."""
    await execute(rt, update(LoginThrottle).where(LoginThrottle.key == key)
                  .values(blocked_until=utcnow() + timedelta(seconds=seconds)))


async def fail(browser: Browser, email: str = EMAIL):  # type: ignore[no-untyped-def]
    return await browser.post("/login", {"email": email, "password": "ce n'est pas le bon"})


async def test_account_delay_grows_then_real_user_logs_in(make_browser, runtime: Runtime) -> None:
    free = runtime.settings.throttle.account_free_failures
    attacker = await make_browser()
    # From one address, the account+address pair is what slows down.
    key = pair_key(EMAIL, "testclient")
    for _ in range(free):
        response = await fail(attacker)
        assert response.status_code == 401 and LOGIN_FAILED in response.text
    row = await throttle_row(runtime, key)
    assert row is not None and row.failures == free and row.blocked_until is None
    # One more failure: a delay starts (1 s), then doubles at each further failure.
    delays = []
    for _ in range(3):
        assert (await fail(attacker)).status_code == 401
        row = await throttle_row(runtime, key)
        assert row is not None and row.blocked_until is not None
        delays.append(round((row.blocked_until - row.last_failure_at).total_seconds()))
        await release(runtime, key)
    assert delays == [1, 2, 4]
    assert (await fail(attacker)).status_code == 401
    await hold(runtime, key)
    # During the delay even the correct password is refused, with the same French message.
    user = await make_browser()
    refused = await user.post("/login", {"email": EMAIL, "password": PASSWORD})
    assert refused.status_code == 429
    assert WAIT in refused.text and "patientez 2 minutes" in refused.text
    assert not [c for c in refused.headers.get_list("set-cookie") if c.startswith("cvg_session=")]
    wrong = await fail(attacker)
    assert wrong.status_code == 429 and WAIT in wrong.text
    # Refused attempts during the wait do not lengthen it (nothing was checked).
    row = await throttle_row(runtime, key)
    assert row is not None and row.failures == free + 4
    # Once the wait is over the real user logs in, and success clears the account counter.
    await release(runtime, key)
    await user.login(EMAIL)
    assert await throttle_row(runtime, key) is None
    ip_row = await throttle_row(runtime, ip_key("testclient"))
    assert ip_row is not None and ip_row.failures == free + 4


async def test_account_delay_is_case_insensitive(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    for n in range(runtime.settings.throttle.account_free_failures + 1):
        await fail(browser, EMAIL.upper() if n % 2 else EMAIL)
    await hold(runtime, account_key(EMAIL))
    response = await browser.post("/login", {"email": " Agent@Bellerive.EXAMPLE", "password": PASSWORD})
    assert response.status_code == 429


async def test_delay_is_per_account(make_browser, runtime: Runtime) -> None:
    browser = await make_browser()
    for _ in range(runtime.settings.throttle.account_free_failures + 1):
        await fail(browser)
    await hold(runtime, account_key(EMAIL))
    assert (await browser.post("/login", {"email": EMAIL, "password": PASSWORD})).status_code == 429
    # Another person behind the same address is not affected by one account's delay.
    colleague = await make_browser()
    await colleague.login("rh@bellerive.example")


async def test_ip_delay_across_accounts(make_browser, runtime: Runtime) -> None:
    # Credential stuffing: one failure on many accounts from one address.
    free = runtime.settings.throttle.ip_free_failures
    assert free < 60  # below the route's own rate limit
    browser = await make_browser()
    for n in range(free + 1):
        assert (await fail(browser, f"inconnu{n}@exemple.fr")).status_code == 401
    key = ip_key("testclient")
    row = await throttle_row(runtime, key)
    assert row is not None and row.failures == free + 1 and row.blocked_until is not None
    await hold(runtime, key)
    refused = await browser.post("/login", {"email": EMAIL, "password": PASSWORD})
    assert refused.status_code == 429 and WAIT in refused.text
    # No single account was penalised: each saw one failure.
    assert (await throttle_row(runtime, account_key("inconnu0@exemple.fr"))).failures == 1  # type: ignore[union-attr]
    await release(runtime, key)
    await browser.login(EMAIL)
    # Success clears the account's counter, not the address's one.
    assert await throttle_row(runtime, key) is not None


async def test_referent_unblocks_an_account(make_browser, runtime: Runtime) -> None:
    agent = await make_browser()
    for _ in range(runtime.settings.throttle.account_free_failures + 1):
        await fail(agent)
    await hold(runtime, account_key(EMAIL), seconds=900)
    assert (await agent.post("/login", {"email": EMAIL, "password": PASSWORD})).status_code == 429
    referent = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, EMAIL)
    response = await referent.post(f"/employeurs/{eid}/agents/{mid}/debloquer")
    assert response.status_code == 303
    assert await throttle_row(runtime, account_key(EMAIL)) is None
    event = await scalar(runtime, select(AuditEvent).where(AuditEvent.action == "account:throttle:clear"))
    assert event is not None and event.employer_id == eid and event.target_id == mid
    await agent.login(EMAIL)


async def test_never_a_permanent_lockout(runtime: Runtime) -> None:
    throttle = runtime.throttle
    cap = runtime.settings.throttle.max_delay_seconds
    keys = [account_key("cible@exemple.fr")]
    now = utcnow()
    for n in range(60):
        async with transaction(runtime.maker) as db:
            await throttle.failure(db, keys, now=now + timedelta(seconds=n))
    last = now + timedelta(seconds=59)
    row = await throttle_row(runtime, keys[0])
    assert row is not None and row.failures == 60
    assert row.blocked_until == last + timedelta(seconds=cap)
    async with transaction(runtime.maker) as db:
        assert await throttle.wait_seconds(db, keys, now=last) == cap + 1
        assert await throttle.wait_seconds(db, keys, now=last + timedelta(seconds=cap)) == 0
