"""`convergences maintenance`: the job registry, each retention purge driven by the controllable clock (a
row just past its rule is deleted, one just inside is kept), idempotency (a second run deletes nothing),
one transaction per job, and the CLI with --now on a real migrated database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from convergences.accounts.models import Invitation
from convergences.db import transaction, utcnow
from convergences.mail.models import OutboxMail
from convergences.maintenance.clock import months_before, parse_instant
from convergences.maintenance.jobs import JOBS, Job, run_jobs
from convergences.oidc.models import AuthorizationCode, Client, LogoutDelivery, OAuthToken, RpSession
from convergences.runtime import Runtime
from convergences.security.models import LoginSession, LoginThrottle
from tests.helpers import account_id, employer_id, scalar

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("convergences"))
PURGE_JOBS = [j for j in JOBS if j.name not in {"inactivity-warnings", "inactivity-suspensions",
                                                   "review-reminders"}]


async def _count(rt: Runtime, model: Any) -> int:
    return int(await scalar(rt, select(func.count()).select_from(model)))


async def _plant(rt: Runtime, now: datetime) -> None:
    """For each purged table: one row just past its rule ("old") and one just inside it ("fresh")."""
    s = rt.settings
    agent = await account_id(rt, "agent@bellerive.example")
    employer = await employer_id(rt)
    day = timedelta(days=1)
    oidc_cut = now - timedelta(days=s.retention.oidc_days)
    async with transaction(rt.maker) as db:
        client = await db.scalar(select(Client).where(Client.client_id == "demo-bip"))
        assert client is not None
        inv_cut = now - timedelta(days=s.retention.invitation_days)
        db.add_all([
            Invitation(account_id=agent, nonce_hash="a" * 64, expires_at=inv_cut - day),  # expired long ago
            Invitation(account_id=agent, nonce_hash="b" * 64, expires_at=now + day, used_at=inv_cut - day),
            Invitation(account_id=agent, nonce_hash="c" * 64, expires_at=now + day, revoked_at=inv_cut - day),
            Invitation(account_id=agent, nonce_hash="d" * 64, expires_at=inv_cut + day),  # fresh
        ])
        old_session = rt.sessions.create(db, agent, "192.0.2.1", "ua", now=now - timedelta(hours=13)).row
        idle_session = rt.sessions.create(db, agent, "192.0.2.1", "ua", now=now - timedelta(hours=1)).row
        rt.sessions.create(db, agent, "192.0.2.1", "ua", now=now - timedelta(minutes=5))  # live
        db.add_all([
            LoginThrottle(key="account:old@example.org", failures=3,
                          last_failure_at=now - timedelta(days=s.retention.throttle_days) - day),
            LoginThrottle(key="account:fresh@example.org", failures=3, last_failure_at=now - timedelta(hours=1)),
        ])
        common: dict[str, Any] = {"client_pk": client.id, "account_id": agent, "employer_id": employer,
                                  "scope": "openid", "auth_time": now, "sid": "s" * 20}
        db.add_all([
            AuthorizationCode(code_hash="1" * 64, redirect_uri="https://x/cb", expires_at=oidc_cut - day, **common),
            AuthorizationCode(code_hash="2" * 64, redirect_uri="https://x/cb", expires_at=oidc_cut + day, **common),
            OAuthToken(kind="access", token_hash="3" * 64, expires_at=oidc_cut - day, **common),
            OAuthToken(kind="access", token_hash="4" * 64, expires_at=oidc_cut + day, **common),
            # A rotated refresh token whose family still lives must stay (its reuse revokes the family).
            OAuthToken(kind="refresh", token_hash="5" * 64, expires_at=oidc_cut - day, family="f",
                       family_expires_at=now + day, **common),
        ])
        db.add_all([
            RpSession(sid="old", client_pk=client.id, account_id=agent, ended_at=oidc_cut - day),
            RpSession(sid="fresh", client_pk=client.id, account_id=agent, ended_at=oidc_cut + day),
            RpSession(sid="live", client_pk=client.id, account_id=agent),
            LogoutDelivery(client_pk=client.id, uri="https://x/bc", logout_token="t", next_attempt_at=now,
                           delivered_at=oidc_cut - day),
            LogoutDelivery(client_pk=client.id, uri="https://x/bc", logout_token="t", next_attempt_at=now,
                           delivered_at=oidc_cut + day),
            LogoutDelivery(client_pk=client.id, uri="https://x/bc", logout_token="t", next_attempt_at=now),
        ])
        mail_cut = now - timedelta(days=s.retention.mail_days)
        db.add_all([
            OutboxMail(recipient="a@example.org", subject="s", body_text="", body_html="", sent_at=mail_cut - day),
            OutboxMail(recipient="b@example.org", subject="s", body_text="", body_html="", sent_at=mail_cut + day),
            OutboxMail(recipient="c@example.org", subject="s", body_text="", body_html="", sent_at=None),
        ])
        assert old_session.id != idle_session.id


async def test_each_purge_deletes_what_its_rule_says_and_a_second_run_nothing(runtime: Runtime) -> None:
    now = utcnow() + timedelta(days=3)
    before = {m: await _count(runtime, m) for m in (Invitation, LoginSession, LoginThrottle, AuthorizationCode,
                                                     OAuthToken, RpSession, LogoutDelivery, OutboxMail)}
    await _plant(runtime, now)
    first = {r.job.name: r.count for r in await run_jobs(runtime, now, PURGE_JOBS)}
    assert first == {"invitations": 3, "login-sessions": 2, "login-throttles": 1, "oidc-codes": 1,
                     "oidc-tokens": 1, "oidc-rp-sessions": 1, "oidc-logout-deliveries": 1, "outbox-mail": 1,
                     "journal": 0}  # nothing in the journal is old enough (tests/integration/test_journal_retention.py)
    # What is left: exactly the fresh rows.
    after = {m: await _count(runtime, m) - before[m] for m in before}
    assert after == {Invitation: 1, LoginSession: 1, LoginThrottle: 1, AuthorizationCode: 1, OAuthToken: 2,
                     RpSession: 2, LogoutDelivery: 2, OutboxMail: 2}
    assert await scalar(runtime, select(OAuthToken.kind).where(OAuthToken.token_hash == "5" * 64)) == "refresh"
    second = await run_jobs(runtime, now, PURGE_JOBS)
    assert [r.count for r in second] == [0] * len(PURGE_JOBS)


async def test_the_rules_follow_the_settings(runtime: Runtime) -> None:
    # Same rows, a longer mail retention: the 30-day-old mail is now kept.
    from dataclasses import replace

    now = utcnow()
    async with transaction(runtime.maker) as db:
        db.add(OutboxMail(recipient="a@example.org", subject="s", body_text="", body_html="",
                          sent_at=now - timedelta(days=40)))
    job = next(j for j in JOBS if j.name == "outbox-mail")
    longer = replace(runtime, settings=replace(runtime.settings, retention=replace(
        runtime.settings.retention, mail_days=60)))
    assert [r.count for r in await run_jobs(longer, now, [job])] == [0]
    assert [r.count for r in await run_jobs(runtime, now, [job])] == [1]


async def test_a_failing_job_rolls_back_alone_and_the_others_run(runtime: Runtime) -> None:
    now = utcnow()
    async with transaction(runtime.maker) as db:
        db.add(OutboxMail(recipient="a@example.org", subject="s", body_text="", body_html="",
                          sent_at=now - timedelta(days=400)))

    async def half_then_fail(db: Any, when: datetime, rt: Runtime) -> int:
        await db.execute(OutboxMail.__table__.delete())
        raise RuntimeError("boom")

    mail_job = next(j for j in JOBS if j.name == "outbox-mail")
    results = await run_jobs(runtime, now, [Job("broken", "Cassé", half_then_fail), mail_job])
    assert (results[0].error, results[1].count) == ("RuntimeError", 1)


def test_clock_helpers() -> None:
    assert months_before(parse_instant("2027-03-31T10:00:00Z"), 1) == parse_instant("2027-02-28T10:00:00Z")
    assert months_before(parse_instant("2027-01-15T00:00:00Z"), 6) == parse_instant("2026-07-15T00:00:00Z")
    assert parse_instant("2027-06-01T00:00:00") == parse_instant("2027-06-01T02:00:00+02:00")


def test_procfile_runs_the_maintenance_loop_next_to_web() -> None:
    procfile = (ROOT / "Procfile").read_text().splitlines()
    assert any(line.startswith("web: uvicorn convergences.asgi:app") for line in procfile)
    assert "worker: convergences maintenance --every 300" in procfile


@pytest.mark.slow
def test_cli_runs_every_job_with_a_controlled_clock_and_is_idempotent(tmp_path: Path) -> None:
    env = {**os.environ, "CONVERGENCES_SECRET_KEY": "cli-test-" + "k" * 40,
           "CONVERGENCES_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"}
    env.pop("CONVERGENCES_SMTP_HOST", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    assert run("migrate").returncode == 0
    assert run("seed").returncode == 0
    later = (utcnow() + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = run("maintenance", "--now", later)
    assert first.returncode == 0, first.stderr
    counts = {line.split()[0]: line.split()[1] for line in first.stdout.splitlines()[:len(JOBS)]}
    assert set(counts) == {j.name for j in JOBS}
    assert int(counts["inactivity-warnings"]) > 0  # every demo person is 13 months idle at that date
    second = run("maintenance", "--now", later)
    assert second.returncode == 0, second.stderr
    assert all(line.split()[1] == "0" for line in second.stdout.splitlines()[:len(JOBS)]), second.stdout
    bad = run("maintenance", "--now", "demain")
    assert bad.returncode == 2 and "instant invalide" in bad.stderr
