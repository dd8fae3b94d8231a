"""Privacy: the public notice (/confidentialite) built from the settings and the catalogue (each application's
claims computed by the provider's own claim logic from its clients' configuration), the art. 30 record for the
CIG admin as CSV (formula-neutralised) and JSON, the data inventory covering every table, and phone numbers
refused for anyone but CIG staff."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update

import convergences.models  # noqa: F401
from convergences.accounts.models import Account, PhoneNotAllowed
from convergences.app import create_app
from convergences.db import Base, transaction
from convergences.oidc.models import Client
from convergences.privacy.inventory import INVENTORY
from convergences.privacy.services import PROCESSINGS, RECORD_COLUMNS
from convergences.runtime import Runtime
from convergences.settings import Settings
from tests.helpers import CIG_ADMIN, REFERENT, execute, logged_in

ROOT = Path(__file__).resolve().parents[2]
EMPLOYER_CLAIM = "employeur pour lequel la personne agit"


async def _notice(settings: Settings) -> str:
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as client:
        response = await client.get("/confidentialite")
        assert response.status_code == 200
        return response.text


def _row(html: str, application: str) -> str:
    return html.split(f'<th scope="row">{application}</th>')[1].split("</tr>")[0]


async def test_notice_is_public_and_computed_from_configuration(runtime: Runtime, settings: Settings) -> None:
    html = await _notice(settings)
    privacy = settings.privacy
    for expected in (privacy.controller_name, privacy.dpo_email, "cnil.fr", "Mes données", "Effacement"):
        assert expected in html
    # BIP's demo client receives the employer and roles claims; the Site Internet has no client: nothing.
    assert EMPLOYER_CLAIM in _row(html, "BIP") and "adresse électronique" in _row(html, "BIP")
    assert "aucune donnée (simple lien" in _row(html, "Site Internet — contenus restreints")
    # Retention durations are those of the purges' settings.
    assert f"{settings.retention.invitation_days} jours après son expiration" in html
    # Change the configuration: the notice follows.
    await execute(runtime, update(Client).where(Client.client_id == "demo-bip").values(claims=[]))
    longer = replace(settings, retention=replace(settings.retention, invitation_days=45),
                     privacy=replace(settings.privacy, controller_name="CIG de la Petite Couronne"))
    html = await _notice(longer)
    assert EMPLOYER_CLAIM not in _row(html, "BIP") and "identifiant pseudonyme" in _row(html, "BIP")
    assert "45 jours après son expiration" in html and "CIG de la Petite Couronne" in html


async def test_footer_links_the_notice(make_browser: Any) -> None:
    browser = await make_browser()
    assert 'href="/confidentialite"' in (await browser.get("/login")).text


async def test_record_of_processing_csv_and_json_for_the_cig_admin(runtime: Runtime, settings: Settings,
                                                                   make_browser: Any) -> None:
    referent = await logged_in(make_browser, REFERENT)
    for path in ("/admin/traitements", "/admin/traitements.csv", "/admin/traitements.json"):
        assert (await referent.get(path)).status_code == 403
    correspondent = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert (await correspondent.get("/admin/traitements.csv")).status_code == 403
    admin = await logged_in(make_browser, CIG_ADMIN)
    page = await admin.get("/admin/traitements")
    assert page.status_code == 200 and 'href="/admin/traitements.csv" download' in page.text
    response = await admin.get("/admin/traitements.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff")), delimiter=";"))
    assert tuple(table[0]) == RECORD_COLUMNS and len(table) == len(PROCESSINGS) + 1
    sso = dict(zip(RECORD_COLUMNS, table[1], strict=True))
    assert "BIP : identifiant pseudonyme" in sso["destinataires"] and EMPLOYER_CLAIM in sso["destinataires"]
    assert f"{settings.retention.invitation_days} jours" in sso["durees_de_conservation"]
    document = json.loads((await admin.get("/admin/traitements.json")).text)
    assert document["responsable"]["nom"] == settings.privacy.controller_name
    assert [t["traitement"] for t in document["traitements"]] == [p.name for p in PROCESSINGS]


async def test_record_csv_cells_are_neutralised(settings: Settings, runtime: Runtime, make_browser: Any) -> None:
    hostile = replace(settings, privacy=replace(settings.privacy, controller_name="=HYPERLINK(\"http://x\")",
                                                dpo_email="+33 1 00 00 00 00"))
    async with AsyncTestClient(app=create_app(hostile), base_url="http://testserver.local") as client:
        from tests.helpers import Browser

        admin = Browser(client)
        await admin.login(CIG_ADMIN)
        body = (await admin.get("/admin/traitements.csv")).text
    row = dict(zip(RECORD_COLUMNS, list(csv.reader(io.StringIO(body.lstrip("\ufeff")), delimiter=";"))[1],
                   strict=True))
    assert row["responsable"].startswith("'=HYPERLINK") and row["delegue_protection_donnees"].startswith("'+33")


def test_inventory_covers_every_table_and_the_document_lists_them() -> None:
    tables = set(Base.metadata.tables)
    inventoried = {entry.table for entry in INVENTORY}
    assert tables == inventoried, f"classify in privacy/inventory.py: {sorted(tables ^ inventoried)}"
    document = (ROOT / "docs" / "data-minimisation.md").read_text()
    for table in tables:
        assert f"`{table}`" in document, table
    for variable in ("INVITATION_DAYS", "MAIL_DAYS", "OIDC_DAYS", "THROTTLE_DAYS", "INACTIVITY_WARNING_MONTHS",
                     "INACTIVITY_SUSPENSION_MONTHS", "REVIEW_REMINDER_DAYS"):
        assert f"CONVERGENCES_RETENTION_{variable}" in document
        assert f"CONVERGENCES_RETENTION_{variable}" in (ROOT / "README.md").read_text()


async def test_a_phone_number_is_for_cig_staff_only(runtime: Runtime) -> None:
    with pytest.raises(PhoneNotAllowed):
        async with transaction(runtime.maker) as db:
            agent = await db.scalar(select(Account).where(Account.email == "agent@bellerive.example"))
            assert agent is not None
            agent.phone_contact = "06 00 00 00 00"
    with pytest.raises(PhoneNotAllowed):
        async with transaction(runtime.maker) as db:
            db.add(Account(email="new@bellerive.example", given_name="A", family_name="B", phone_contact="0600000000"))
    async with transaction(runtime.maker) as db:
        staff = await db.scalar(select(Account).where(Account.email == "c.bernard@cig-demo.fr"))
        assert staff is not None
        staff.phone_contact = "01 56 96 80 99"
    async with transaction(runtime.maker) as db:
        agent = await db.scalar(select(Account).where(Account.email == "agent@bellerive.example"))
        assert agent is not None and agent.phone_contact is None
