"""The `convergences` command, run for real: `demo --json` (the integrators' contract) and
`migrate` + `create-admin` against a throwaway database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from convergences.accounts.models import Account
from convergences.app import create_app
from convergences.audit.models import AuditEvent
from convergences.db import transaction
from convergences.runtime import Runtime
from convergences.settings import DatabaseSettings, MailSettings, Settings
from tests.helpers import Browser, logged_in

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("convergences"))
ROLES = {"cig_admin", "correspondent", "authority", "referent", "agent"}


def luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(digits[::-1], start=1):
        n = int(char) * (2 if position % 2 == 0 else 1)
        total += n // 10 + n % 10
    return total % 10 == 0


def run(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def demo_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cwd = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "CONVERGENCES_SECRET_KEY": "cli-test-" + "k" * 40}
    result = run(["demo", "--json"], env, cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_demo_json_contract(demo_json: dict[str, Any]) -> None:
    assert set(demo_json) == {"accounts"}
    accounts = demo_json["accounts"]
    assert accounts
    for account in accounts:
        assert {"email", "password", "roles", "employers", "applications"} <= set(account), account
        assert "@" in account["email"] and account["password"]
        assert account["roles"] and set(account["roles"]) <= ROLES, account
        for siret in account["employers"]:
            assert len(siret) == 14 and siret.isascii() and siret.isdigit() and luhn(siret), siret
        assert all(isinstance(slug, str) for slug in account["applications"])
    # Staff hold no membership; everyone else serves at least one employer as an agent.
    for account in accounts:
        if account["employers"]:
            assert "agent" in account["roles"]
    every_role = set().union(*(set(a["roles"]) for a in accounts))
    assert every_role == ROLES
    employers = {s for a in accounts for s in a["employers"]}
    assert len(employers) >= 3
    assert any(len(a["employers"]) >= 2 and "agent" in a["roles"] for a in accounts)
    assert len({a["email"] for a in accounts}) == len(accounts)


async def test_every_demo_account_logs_in(demo_json: dict[str, Any], make_browser, runtime: Runtime) -> None:
    for account in demo_json["accounts"]:
        browser = await logged_in(make_browser, account["email"], account["password"])
        if account["applications"]:
            services = await browser.get("/services")
            for slug in account["applications"]:
                assert f'data-app="{slug}"' in services.text, (account["email"], slug)


def test_demo_text_output(tmp_path: Path) -> None:
    result = run(["demo"], {**os.environ, "CONVERGENCES_SECRET_KEY": "x" * 48}, tmp_path)
    assert result.returncode == 0 and "admin@cig-demo.fr" in result.stdout


async def test_migrate_then_create_admin_who_logs_in(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli/convergences.db"
    env = {**os.environ, "CONVERGENCES_DATABASE_URL": url, "CONVERGENCES_SECRET_KEY": "cli-" + "s" * 44}
    env.pop("CONVERGENCES_DEMO", None)
    migrated = run(["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    password = "cinq chats lisent le journal du soir"
    created = run(["create-admin", "--email", "Nouvel.Admin@CIG-demo.fr", "--given-name", "Odile",
                   "--family-name", "Vasseur"], env, tmp_path, stdin=password + "\n")
    assert created.returncode == 0, created.stderr
    assert "nouvel.admin@cig-demo.fr" in created.stdout
    # A weak password is refused and creates nothing.
    weak = run(["create-admin", "--email", "autre.admin@cig-demo.fr", "--given-name", "Léa",
                "--family-name", "Morin"], env, tmp_path, stdin="password1234\n")
    assert weak.returncode != 0 and "mots de passe courants" in weak.stderr
    named = run(["create-admin", "--email", "autre.admin@cig-demo.fr", "--given-name", "Léa",
                 "--family-name", "Morin"], env, tmp_path, stdin="morin est la meilleure admin\n")
    assert named.returncode != 0

    settings = Settings(secret_key="app-" + "t" * 44, base_url="http://testserver.local",
                        database=DatabaseSettings(url=url), mail=MailSettings())
    rt = Runtime.build(settings)
    try:
        async with transaction(rt.maker) as db:
            admins = (await db.scalars(select(Account).where(Account.is_cig_admin.is_(True)))).all()
            assert [a.email for a in admins] == ["nouvel.admin@cig-demo.fr"]
            assert admins[0].activated_at is not None
            assert await db.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.action == "staff:create")) == 1
    finally:
        await rt.close()
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as client:
        browser = Browser(client, own_cookies=True)
        assert (await browser.post("/login", {"email": "nouvel.admin@cig-demo.fr", "password": "mauvais mot"})
                ).status_code == 401
        response = await browser.login("nouvel.admin@cig-demo.fr", password)
        assert response.status_code == 303
        home = await browser.get("/")
        assert home.headers["location"] == "/admin"
        assert (await browser.get("/admin")).status_code == 200


async def test_migrate_then_seed_is_idempotent(tmp_path: Path, demo_json: dict[str, Any]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/seed.db"
    env = {**os.environ, "CONVERGENCES_DATABASE_URL": url, "CONVERGENCES_SECRET_KEY": "seed-" + "s" * 44}
    assert run(["migrate"], env, tmp_path).returncode == 0
    first = run(["seed"], env, tmp_path)
    assert first.returncode == 0 and "chargées" in first.stdout, first.stderr
    again = run(["seed"], env, tmp_path)
    assert again.returncode == 0 and "rien n'a été ajouté" in again.stdout
    rt = Runtime.build(Settings(secret_key="x" * 48, database=DatabaseSettings(url=url), mail=MailSettings()))
    try:
        async with transaction(rt.maker) as db:
            emails = set((await db.scalars(select(Account.email))).all())
    finally:
        await rt.close()
    # The seeded database holds exactly the accounts `demo --json` announces (plus invited agents).
    assert {a["email"] for a in demo_json["accounts"]} <= emails
