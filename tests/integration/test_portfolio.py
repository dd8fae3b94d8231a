"""The correspondent's portfolio: only their employers, with the progress table and the journals;
nothing outside (authz enforces it)."""

from __future__ import annotations

from sqlalchemy import select

from convergences.db import transaction
from convergences.employers.models import Employer
from convergences.runtime import Runtime
from tests.helpers import CIG_ADMIN, REFERENT, logged_in
from tests.integration.test_admin import progress_row

SIRETS = {"bellerive": "21930999900015", "ccas": "26930999900010", "sivom": "25930999900011",
          "valfleuri": "21930888800011"}


async def employer_ids(rt: Runtime) -> dict[str, int]:
    async with transaction(rt.maker) as db:
        by_siret = dict((await db.execute(select(Employer.siret, Employer.id))).all())
    return {key: by_siret[siret] for key, siret in SIRETS.items()}


async def test_correspondent_sees_only_portfolio_employers(make_browser, runtime: Runtime) -> None:
    ids = await employer_ids(runtime)
    claire = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert (await claire.get("/")).headers["location"] == "/portefeuille"
    page = await claire.get("/portefeuille")
    assert page.status_code == 200 and 'aria-current="page">Mon portefeuille' in page.text
    for key in ("bellerive", "ccas"):
        assert f'data-employer="{ids[key]}"' in page.text
        for link in ("", "/agents", "/journal"):
            assert f'href="/employeurs/{ids[key]}{link}"' in page.text
    for key in ("sivom", "valfleuri"):
        assert f'data-employer="{ids[key]}"' not in page.text
    assert "SIVOM des Coteaux" not in page.text and "Val-Fleuri" not in page.text
    # Searching does not widen the scope.
    search = await claire.get("/portefeuille?q=coteaux")
    assert "SIVOM des Coteaux" not in search.text and "Aucun employeur ne correspond" in search.text
    # No link to the CIG admin screens for a correspondent.
    assert 'href="/admin"' not in page.text


async def test_portfolio_progress_numbers(make_browser, runtime: Runtime) -> None:
    ids = await employer_ids(runtime)
    claire = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    page = await claire.get("/portefeuille")
    row = progress_row(page.text, ids["bellerive"])
    assert (row["invited"], row["activated"], row["applications"]) == ("2", "4", "3 / 3")
    row = progress_row(page.text, ids["ccas"])
    # CCAS: its director (authority and référent) and Léa Dumas, both active; BIP, CR/CM and
    # Net Cotisations granted out of 4 subscribed.
    assert (row["invited"], row["activated"], row["applications"]) == ("0", "2", "3 / 4")
    assert "Oui (1)" in row["text"]
    antoine = await logged_in(make_browser, "a.petit@cig-demo.fr")
    page = await antoine.get("/portefeuille")
    row = progress_row(page.text, ids["valfleuri"])
    # Val-Fleuri: no référent yet (its only other member is Nadia Roussel, agent there).
    assert "Non" in row["text"] and (row["invited"], row["activated"], row["applications"]) == ("0", "2", "2 / 2")


async def test_correspondent_is_refused_outside_portfolio(make_browser, runtime: Runtime) -> None:
    ids = await employer_ids(runtime)
    claire = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    assert (await claire.get(f"/employeurs/{ids['bellerive']}/agents")).status_code == 200
    assert (await claire.get(f"/employeurs/{ids['ccas']}/journal")).status_code == 200
    for key in ("sivom", "valfleuri"):
        for url in (f"/employeurs/{ids[key]}", f"/employeurs/{ids[key]}/agents",
                    f"/employeurs/{ids[key]}/journal", f"/employeurs/{ids[key]}/referents"):
            response = await claire.get(url)
            assert response.status_code == 403, (url, response.status_code)
            assert "SIVOM" not in response.text and "Val-Fleuri" not in response.text
    response = await claire.post(f"/employeurs/{ids['sivom']}/agents",
                                 {"given_name": "Intrus", "family_name": "Intrus", "email": "i@coteaux.example"})
    assert response.status_code == 403


async def test_portfolio_journal_shows_only_portfolio_events(make_browser, runtime: Runtime) -> None:
    ids = await employer_ids(runtime)
    bellerive_ref = await logged_in(make_browser, REFERENT)
    assert (await bellerive_ref.post(f"/employeurs/{ids['bellerive']}/agents", {
        "given_name": "Bérénice", "family_name": "Portefeuille", "email": "b.portefeuille@bellerive.example",
    })).status_code == 303
    sivom_ref = await logged_in(make_browser, "secretariat@coteaux.example")
    assert (await sivom_ref.post(f"/employeurs/{ids['sivom']}/agents", {
        "given_name": "Horace", "family_name": "Horsperimetre", "email": "h.horsperimetre@coteaux.example",
    })).status_code == 303

    claire = await logged_in(make_browser, "c.bernard@cig-demo.fr")
    journal = await claire.get("/portefeuille/journal")
    assert journal.status_code == 200
    assert "Bérénice Portefeuille" in journal.text and "Compte créé" in journal.text
    assert "Horsperimetre" not in journal.text
    antoine = await logged_in(make_browser, "a.petit@cig-demo.fr")
    journal = await antoine.get("/portefeuille/journal")
    assert "Horace Horsperimetre" in journal.text and "Bérénice" not in journal.text
    admin = await logged_in(make_browser, CIG_ADMIN)
    everything = await admin.get("/admin/journal")
    assert "Horace Horsperimetre" in everything.text and "Bérénice Portefeuille" in everything.text


async def test_referent_and_agent_have_no_portfolio(make_browser) -> None:
    for email in ("rh@bellerive.example", "agent@bellerive.example", "maire@bellerive.example"):
        visitor = await logged_in(make_browser, email)
        for url in ("/portefeuille", "/portefeuille/journal"):
            response = await visitor.get(url)
            assert response.status_code == 403, (email, url)
    anonymous = await make_browser()
    response = await anonymous.get("/portefeuille")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
