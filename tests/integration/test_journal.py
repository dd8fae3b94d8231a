"""The journal (issue 5, first bullet): hash chain kept by normal activity and by concurrent writers,
tampering found by `convergences audit verify`, append-only from the application, filters on the three
journal pages (plain GET and htmx), CSV export neutralised and kept in scope."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from convergences.accounts.models import Account
from convergences.accounts.services import AuthService
from convergences.audit import services as audit
from convergences.audit.actions import Action
from convergences.audit.models import AppendOnlyViolation, AuditChainHead, AuditEvent
from convergences.db import transaction, utcnow
from convergences.runtime import Runtime
from tests.helpers import (
    BELLERIVE,
    CIG_ADMIN,
    REFERENT,
    SIVOM,
    app_id,
    employer_id,
    logged_in,
    membership_id,
    page_text,
    rows,
    scalar,
)

CLI = str(Path(sys.executable).with_name("convergences"))
CORRESPONDENT = "c.bernard@cig-demo.fr"  # Bellerive in her portfolio, not SIVOM


def verify_cli(db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVERGENCES_DATABASE_URL": db_url, "CONVERGENCES_SECRET_KEY": "verify-" + "k" * 40}
    return subprocess.run([CLI, "audit", "verify"], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


async def verify(rt: Runtime) -> audit.ChainReport:
    async with transaction(rt.maker) as db:
        return await audit.verify(db)


async def some_entries(rt: Runtime, n: int = 3) -> None:
    for k in range(n):
        async with transaction(rt.maker) as db:
            audit.record(db, None, Action.EMPLOYER_UPDATE, target_type="employer", target_label=f"entrée {k}")


async def activity(make_browser: Any, rt: Runtime) -> None:
    """A référent's ordinary day: an agent created, a right granted, changed, revoked, the agent deleted."""
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(rt)
    response = await referent.post(f"/employeurs/{eid}/agents", {"given_name": "Nora", "family_name": "Lefèvre",
                                                                  "email": "nora.lefevre@bellerive.example"})
    assert response.status_code == 303, page_text(response)
    mid = await membership_id(rt, "nora.lefevre@bellerive.example")
    nc = await app_id(rt, "net-cotisations")
    for data in ({"enabled": "1", "role": "consultation"}, {"enabled": "1", "role": "saisie"}, {}):
        response = await referent.post(f"/employeurs/{eid}/agents/{mid}/droits/{nc}", data)
        assert response.status_code in (200, 303), page_text(response)
    assert (await referent.post(f"/employeurs/{eid}/agents/{mid}/supprimer")).status_code == 303


async def test_chain_intact_after_normal_activity(db_url: str, runtime: Runtime, make_browser: Any,
                                                  tmp_path: Path) -> None:
    await activity(make_browser, runtime)
    # An account that acted is deleted: the database nulls actor_id, which is not sealed.
    async with transaction(runtime.maker) as db:
        ghost = Account(email="ghost@bellerive.example", given_name="Gaspard", family_name="Fantôme")
        db.add(ghost)
        await db.flush()
        actor = type("A", (), {"account_id": ghost.id, "label": "Gaspard Fantôme <ghost@bellerive.example>",
                               "ip": "192.0.2.9"})()
        audit.record(db, actor, Action.ACCOUNT_UPDATE, target_type="account", target_id=ghost.id,  # type: ignore[arg-type]
                     target_label="Gaspard Fantôme", after={"given_name": "Gaspard"})
    async with transaction(runtime.maker) as db:
        await db.execute(delete(Account).where(Account.email == "ghost@bellerive.example"))

    events = await rows(runtime, select(AuditEvent).order_by(AuditEvent.seq))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {"grant:add", "grant:change", "grant:revoke", "account:delete"} <= {e.action for e in events}
    assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:], strict=False))
    assert events[-1].actor_id is None and events[-1].actor_label.startswith("Gaspard")
    head = await scalar(runtime, select(AuditChainHead).where(AuditChainHead.id == 1))
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    assert (await verify(runtime)).intact
    result = verify_cli(db_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{len(events)} entrée(s) vérifiée(s)" in result.stdout


async def test_tampering_is_found_by_the_cli(db_url: str, runtime: Runtime, make_browser: Any,
                                             tmp_path: Path) -> None:
    await activity(make_browser, runtime)
    events = await rows(runtime, select(AuditEvent).order_by(AuditEvent.seq))
    victim = events[len(events) // 2]
    async with transaction(runtime.maker) as db:
        await db.execute(text("UPDATE audit_event SET target_label = 'Quelqu''un d''autre' WHERE id = :id"),
                         {"id": victim.id})
    result = verify_cli(db_url, tmp_path)
    assert result.returncode == 1, result.stdout
    assert f"entrée n° {victim.id} " in result.stderr and "modifié" in result.stderr

    # Restored, then an entry removed from the middle: the next one is named.
    async with transaction(runtime.maker) as db:
        await db.execute(text("UPDATE audit_event SET target_label = :label WHERE id = :id"),
                         {"id": victim.id, "label": victim.target_label})
    assert verify_cli(db_url, tmp_path).returncode == 0
    async with transaction(runtime.maker) as db:
        await db.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": victim.id})
    result = verify_cli(db_url, tmp_path)
    assert result.returncode == 1 and f"entrée n° {events[len(events) // 2 + 1].id} " in result.stderr


async def test_removing_the_last_entries_is_found(runtime: Runtime) -> None:
    await some_entries(runtime)
    last = await scalar(runtime, select(func.max(AuditEvent.seq)))
    async with transaction(runtime.maker) as db:
        await db.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": last})
    report = await verify(runtime)
    assert not report.intact and "supprimées" in report.problem


async def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(runtime: Runtime) -> None:
    from convergences.audit.chain import seal_entry
    from convergences.audit.models import AuditPersonKey

    await some_entries(runtime)
    events = await rows(runtime, select(AuditEvent).order_by(AuditEvent.seq))
    assert len(events) >= 2
    victim, following = events[0], events[1]
    # An attacker with the database recomputes everything of the entry, commitments included.
    keys = {k.id: (k.id, k.secret) for k in await rows(runtime, select(AuditPersonKey))}
    fields = {**victim.sealed_fields(), "target_label": "falsifié"}
    sealed = seal_entry(fields, victim.seq, victim.prev_hash, keys.get(victim.actor_key_id),
                        keys.get(victim.subject_key_id))
    async with transaction(runtime.maker) as db:
        await db.execute(text("UPDATE audit_event SET target_label = 'falsifié', subject_commitment = :sc, "
                              "content_digest = :cd, hash = :h WHERE id = :id"),
                         {"sc": sealed["subject_commitment"], "cd": sealed["content_digest"], "h": sealed["hash"],
                          "id": victim.id})
    report = await verify(runtime)
    assert report.broken_id == following.id and "précédente" in report.problem


async def test_the_application_cannot_update_or_delete_an_entry(runtime: Runtime) -> None:
    await some_entries(runtime)
    async with transaction(runtime.maker) as db:
        event = await db.scalar(select(AuditEvent).limit(1))
        assert event is not None
        event.target_label = "changé"
        with pytest.raises(AppendOnlyViolation):
            await db.flush()
        await db.rollback()
    async with transaction(runtime.maker) as db:
        event = await db.scalar(select(AuditEvent).limit(1))
        await db.delete(event)
        with pytest.raises(AppendOnlyViolation):
            await db.flush()
        await db.rollback()
    # Bulk statements through a session are refused too (only the purge and erasure are exempted).
    async with transaction(runtime.maker) as db:
        with pytest.raises(AppendOnlyViolation):
            await db.execute(update(AuditEvent).values(target_label="changé"))
    async with transaction(runtime.maker) as db:
        with pytest.raises(AppendOnlyViolation):
            await db.execute(delete(AuditEvent))
    assert (await verify(runtime)).intact


async def test_concurrent_appends_keep_one_chain(db_url: str, runtime: Runtime) -> None:
    before = int(await scalar(runtime, select(func.count()).select_from(AuditEvent)))
    auth = AuthService(runtime)

    async def failed_login(n: int) -> None:
        result = await auth.login(f"inconnu{n}@example.org", "mauvais", f"198.51.100.{n}", "test")
        assert not result.ok

    async def several_entries(n: int) -> None:
        async with transaction(runtime.maker) as db:
            await db.scalar(select(func.count()).select_from(AuditEvent))
            await asyncio.sleep(0.01 * (n % 3))  # interleave with the others before writing
            for k in range(3):
                audit.record(db, None, Action.EMPLOYER_UPDATE, target_type="employer", target_label=f"t{n}-{k}")
            await db.flush()
            await asyncio.sleep(0.005)
            audit.record(db, None, Action.EMPLOYER_UPDATE, target_type="employer", target_label=f"t{n}-last")

    await asyncio.gather(*(failed_login(n) for n in range(6)), *(several_entries(n) for n in range(6)))
    events = await rows(runtime, select(AuditEvent).order_by(AuditEvent.seq))
    assert len(events) == before + 6 + 6 * 4
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.prev_hash for e in events}) == len(events)  # no fork: every hash is chained onto once
    report = await verify(runtime)
    assert report.intact, report.problem


# -- filters ---------------------------------------------------------------------------------------

async def test_filters_narrow_the_employer_journal(runtime: Runtime, make_browser: Any) -> None:
    await activity(make_browser, runtime)
    referent = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    url = f"/employeurs/{eid}/journal"
    everything = await referent.get(url)
    assert everything.status_code == 200 and 'id="journal-results"' in everything.text
    assert 'name="du"' in everything.text and 'name="application"' in everything.text

    async def results(**params: str) -> str:
        response = await referent.get(url, params=params, headers={"HX-Request": "true"})
        assert response.status_code == 200
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))

    grants = await results(action="grant:add")
    assert "Droit accordé" in grants and "Compte créé" not in grants
    assert "1 entrée correspondant aux filtres" in grants
    nc = str(await app_id(runtime, "net-cotisations"))
    assert "1 entrée correspondant" in await results(application=nc, action="grant:revoke")
    assert "3 entrées correspondant" in await results(application=nc)  # add, change, revoke
    # Nora was erased with her last membership: the journal names her by her pseudonym only.
    assert "0 entrée" in await results(concerne="lefèvre")
    pseudonym = (await rows(runtime, select(AuditEvent.target_label).where(AuditEvent.action == "account:delete")))[-1]
    by_target = await results(concerne=pseudonym)
    # created, invited, right added/changed/revoked, removed from the employer, account deleted
    assert "7 entrées correspondant aux filtres" in by_target and "Connexion réussie" not in by_target
    nobody = await results(auteur="personne-de-ce-nom")
    assert "0 entrée" in nobody and "Aucune entrée." in nobody
    assert "Droit accordé" in await results(auteur="rh@bellerive")
    tomorrow = (utcnow() + timedelta(days=2)).date().isoformat()
    assert "0 entrée" in await results(du=tomorrow)
    assert "0 entrée" not in await results(au=tomorrow)
    invalid = await referent.get(url, params={"du": "hier"})
    assert invalid.status_code == 200 and "Date invalide" in invalid.text

    # htmx: only the results, with the export link carrying the same filters.
    fragment = await referent.get(url, params={"action": "grant:add"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<div id="journal-results">')
    assert f'href="{url}.csv?action=grant%3Aadd"' in fragment.text


async def test_filters_on_the_global_and_portfolio_journals(runtime: Runtime, make_browser: Any) -> None:
    await activity(make_browser, runtime)
    admin = await logged_in(make_browser, CIG_ADMIN)
    pseudonym = (await rows(runtime, select(AuditEvent.target_label).where(AuditEvent.action == "account:delete")))[-1]
    response = await admin.get("/admin/journal", params={"concerne": pseudonym, "action": "account:create"})
    assert response.status_code == 200 and "1 entrée correspondant aux filtres" in response.text
    correspondent = await logged_in(make_browser, CORRESPONDENT)
    response = await correspondent.get("/portefeuille/journal", params={"action": "grant:change"})
    assert response.status_code == 200 and "1 entrée correspondant aux filtres" in response.text


# -- CSV export ------------------------------------------------------------------------------------

def parse(body: str) -> list[list[str]]:
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:]), delimiter=";"))


async def test_csv_export_is_neutralised_scoped_and_secret_free(runtime: Runtime, make_browser: Any) -> None:
    eid, sivom = await employer_id(runtime), await employer_id(runtime, SIVOM)
    referent = await logged_in(make_browser, REFERENT)
    response = await referent.post(f"/employeurs/{eid}/agents", {"given_name": "=cmd", "family_name": "+SUM(1)",
                                                                  "email": "formule@bellerive.example"})
    assert response.status_code == 303, page_text(response)
    async with transaction(runtime.maker) as db:
        audit.record(db, None, Action.EMPLOYER_UPDATE, employer_id=eid, target_type="employer",
                     target_label='=HYPERLINK("http://evil.example","clic")')
        audit.record(db, None, Action.EMPLOYER_UPDATE, employer_id=sivom, target_type="employer",
                     target_label="SECRET-DU-SIVOM")
    # A failed login with a typed password: the password is never journaled.
    visitor = await make_browser()
    await visitor.post("/login", {"email": REFERENT, "password": "Mot-De-Passe-Tapé-42", "next": "/"})

    response = await referent.get(f"/employeurs/{eid}/journal.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and f"journal-{BELLERIVE}-" in disposition
    table = parse(response.text)
    assert table[0][0] == "Date" and len(table) > 3
    cells = [cell for row in table for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'=HYPERLINK(\"http://evil.example\",\"clic\")" in cells
    assert any(c.startswith("'=cmd") for c in cells)
    assert "SECRET-DU-SIVOM" not in response.text and "Mot-De-Passe-Tapé-42" not in response.text
    assert {row[4] for row in table[1:]} == {"Commune de Bellerive-sur-Marne"}

    filtered = parse((await referent.get(f"/employeurs/{eid}/journal.csv",
                                         params={"action": "account:create"})).text)
    assert len(filtered) == 2 and filtered[1][3] == "account:create"

    # The référent of Bellerive cannot export SIVOM's journal.
    assert (await referent.get(f"/employeurs/{sivom}/journal.csv")).status_code in (403, 404)

    # The correspondent's export covers her portfolio only; the CIG admin's covers everything.
    portfolio = (await (await logged_in(make_browser, CORRESPONDENT)).get("/portefeuille/journal.csv")).text
    assert "HYPERLINK" in portfolio and "SECRET-DU-SIVOM" not in portfolio
    admin = await logged_in(make_browser, CIG_ADMIN)
    everything = await admin.get("/admin/journal.csv")
    assert everything.status_code == 200 and "SECRET-DU-SIVOM" in everything.text
    assert "Mot-De-Passe-Tapé-42" not in everything.text
    assert (await referent.get("/admin/journal.csv")).status_code in (403, 404)
    assert (await referent.get("/portefeuille/journal.csv")).status_code in (403, 404)


async def test_client_secret_never_reaches_the_export(runtime: Runtime, make_browser: Any) -> None:
    from convergences.oidc.models import Client

    admin = await logged_in(make_browser, CIG_ADMIN)
    client = await scalar(runtime, select(Client).limit(1))
    if client is None or client.is_public:
        pytest.skip("no confidential demo client")
    response = await admin.post(f"/admin/applications/{client.application_id}/clients/{client.id}/secret")
    assert response.status_code in (200, 303), page_text(response)
    found = re.search(r'id="client-secret" type="text" value="([^"]+)"', response.text)
    assert found, page_text(response)
    secret = found.group(1)
    export = (await admin.get("/admin/journal.csv", params={"action": "client:secret:rotate"})).text
    assert len(parse(export)) == 2
    assert secret not in export


# -- migration -------------------------------------------------------------------------------------

def test_migration_chains_existing_entries(tmp_path: Path) -> None:
    from alembic import command

    from convergences.cli import alembic_config

    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    command.upgrade(alembic_config(url), "0002")

    async def fill() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        async with engine.begin() as connection:
            for n in range(3):
                await connection.execute(text(
                    "INSERT INTO audit_event (at, actor_label, action, target_type, target_label, after) "
                    "VALUES (:at, 'système', 'subscription:add', 'application', :label, :after)"),
                    {"at": f"2026-01-0{n + 1} 10:00:00.000000", "label": f"Appli {n}", "after": f'{{"n": {n}}}'})
        await engine.dispose()

    asyncio.run(fill())
    command.upgrade(alembic_config(url), "head")
    result = verify_cli(url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 entrée(s) vérifiée(s)" in result.stdout


async def test_application_filter_offers_only_applications_of_the_scope(runtime: Runtime, make_browser: Any) -> None:
    await activity(make_browser, runtime)
    referent = await logged_in(make_browser, REFERENT)
    page = (await referent.get(f"/employeurs/{await employer_id(runtime)}/journal")).text
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page)
    assert [name for _, name in options] == ["Net Cotisations"]
