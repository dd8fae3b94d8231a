"""Access rights (grants): htmx toggles returning the row, application roles, refusals, plain form posts,
and the journal entry of every change."""

from __future__ import annotations

from sqlalchemy import func, select

from convergences.accounts.models import Account
from convergences.applications.models import Grant
from convergences.audit.models import AuditEvent
from convergences.runtime import Runtime
from tests.helpers import CIG_ADMIN, REFERENT, SIVOM, app_id, employer_id, logged_in, membership_id, rows, scalar

GIRARD = "l.girard@bellerive.example"
JULIE = "agent@bellerive.example"


async def grant(rt: Runtime, mid: int, aid: int) -> Grant | None:
    return await scalar(rt, select(Grant).where(Grant.membership_id == mid, Grant.application_id == aid))


async def journal(rt: Runtime) -> list[AuditEvent]:
    return await rows(rt, select(AuditEvent).where(AuditEvent.action.like("grant:%")).order_by(AuditEvent.id))


async def snapshot(rt: Runtime) -> tuple[list[tuple[int, int, str | None]], int]:
    grants = [(g.membership_id, g.application_id, g.role)
              for g in await rows(rt, select(Grant).order_by(Grant.id))]
    return grants, int(await scalar(rt, select(func.count()).select_from(AuditEvent)))


def checkbox(html: str, mid: int, aid: int) -> str:
    start = html.index(f'id="g-{mid}-{aid}"')
    return html[html.rindex("<input", 0, start):html.index(">", start) + 1]


async def test_htmx_toggle_returns_the_row_and_journals(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid, mid, bip = await employer_id(runtime), await membership_id(runtime, GIRARD), await app_id(runtime, "bip")
    url = f"/employeurs/{eid}/agents/{mid}/droits/{bip}"
    response = await browser.post(url, {"enabled": "1"}, htmx=True)
    assert response.status_code == 200
    fragment = response.text.strip()
    assert fragment.startswith(f'<tr id="agent-{mid}"') and fragment.endswith("</tr>")
    assert "<html" not in fragment
    assert "checked" in checkbox(fragment, mid, bip)
    assert 'class="saved"' in fragment and "Enregistré" in fragment
    saved = await grant(runtime, mid, bip)
    assert saved is not None and saved.role is None
    added = (await journal(runtime))[-1]
    referent_id = await scalar(runtime, select(Account.id).where(Account.email == "rh@bellerive.example"))
    assert (added.action, added.actor_id, added.employer_id, added.target_type, added.ip) == (
        "grant:add", referent_id, eid, "grant", "testclient")
    assert added.target_id == mid and added.after == {"application": "bip", "role": None}
    assert added.target_label == "Lucas Girard — BIP"

    # The same request again changes nothing and journals nothing.
    count = len(await journal(runtime))
    assert (await browser.post(url, {"enabled": "1"}, htmx=True)).status_code == 200
    assert len(await journal(runtime)) == count

    # Unticking (the checkbox is simply absent from the form) revokes.
    response = await browser.post(url, {}, htmx=True)
    assert response.status_code == 200
    assert "checked" not in checkbox(response.text, mid, bip)
    assert await grant(runtime, mid, bip) is None
    revoked = (await journal(runtime))[-1]
    assert revoked.action == "grant:revoke" and revoked.before == {"application": "bip", "role": None}
    assert revoked.after is None


async def test_role_select_for_net_cotisations(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, GIRARD)
    nc = await app_id(runtime, "net-cotisations")
    url = f"/employeurs/{eid}/agents/{mid}/droits/{nc}"
    grid = await browser.get(f"/employeurs/{eid}/agents")
    assert f'<select id="r-{mid}-{nc}" name="role">' in grid.text
    assert '<option value="consultation"' in grid.text and '<option value="saisie"' in grid.text

    response = await browser.post(url, {"enabled": "1", "role": "saisie"}, htmx=True)
    assert response.status_code == 200
    assert '<option value="saisie" selected>Saisie</option>' in response.text
    assert (await grant(runtime, mid, nc)).role == "saisie"  # type: ignore[union-attr]
    assert (await journal(runtime))[-1].after == {"application": "net-cotisations", "role": "saisie"}

    response = await browser.post(url, {"enabled": "1", "role": "consultation"}, htmx=True)
    assert '<option value="consultation" selected>Consultation</option>' in response.text
    assert (await grant(runtime, mid, nc)).role == "consultation"  # type: ignore[union-attr]
    change = (await journal(runtime))[-1]
    assert change.action == "grant:change"
    assert change.before == {"application": "net-cotisations", "role": "saisie"}
    assert change.after == {"application": "net-cotisations", "role": "consultation"}

    # Ticking without a role gives the first (least) role.
    await browser.post(url, {}, htmx=True)
    await browser.post(url, {"enabled": "1"}, htmx=True)
    assert (await grant(runtime, mid, nc)).role == "consultation"  # type: ignore[union-attr]

    # The agent's own page shows the role label.
    agent_page = await browser.get(f"/employeurs/{eid}/agents/{mid}")
    assert "Net Cotisations : oui (Consultation)" in agent_page.text


async def test_unknown_role_is_422_and_unchanged(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, JULIE)
    nc = await app_id(runtime, "net-cotisations")
    before = await snapshot(runtime)
    response = await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/{nc}",
                                  {"enabled": "1", "role": "administrateur"}, htmx=True)
    assert response.status_code == 422
    assert "Rôle inconnu pour Net Cotisations." in response.text
    assert 'role="alert"' in response.text and 'class="row-error"' in response.text
    assert "<html" not in response.text
    assert '<option value="consultation" selected>' in response.text  # the row shows the saved state
    assert await snapshot(runtime) == before
    assert (await grant(runtime, mid, nc)).role == "consultation"  # type: ignore[union-attr]


async def test_role_is_ignored_for_an_application_without_roles(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid, mid, site = await employer_id(runtime), await membership_id(runtime, GIRARD), await app_id(runtime, "site")
    await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/{site}", {"enabled": "1", "role": "saisie"},
                       htmx=True)
    assert (await grant(runtime, mid, site)).role is None  # type: ignore[union-attr]


async def test_application_not_subscribed_is_404(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid, mid = await employer_id(runtime), await membership_id(runtime, JULIE)
    before = await snapshot(runtime)
    for slug in ["snapi-coll", "cr-cm"]:
        aid = await app_id(runtime, slug)
        for htmx in (True, False):
            response = await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/{aid}", {"enabled": "1"},
                                          htmx=htmx)
            assert response.status_code == 404, (slug, htmx)
    assert (await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/999999", {"enabled": "1"})
            ).status_code == 404
    assert await snapshot(runtime) == before


async def test_plain_form_post_without_htmx(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid, mid, bip = await employer_id(runtime), await membership_id(runtime, GIRARD), await app_id(runtime, "bip")
    response = await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/{bip}", {"enabled": "on"})
    assert response.status_code == 303 and response.headers["location"] == f"/employeurs/{eid}/agents"
    assert await grant(runtime, mid, bip) is not None
    page = await browser.get(response.headers["location"])
    assert "Le droit d'accès est enregistré." in page.text.replace("&#39;", "'")
    assert "checked" in checkbox(page.text, mid, bip)
    # An error through a plain post comes back as a message, state unchanged.
    nc = await app_id(runtime, "net-cotisations")
    response = await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/{nc}", {"enabled": "1", "role": "x"})
    assert response.status_code == 303
    assert await grant(runtime, mid, nc) is None
    assert "Rôle inconnu pour Net Cotisations." in (await browser.get(response.headers["location"])).text


async def test_revoked_right_disappears_from_the_agents_services(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    agent = await logged_in(make_browser, JULIE)
    assert 'data-app="bip"' in (await agent.get("/services")).text
    eid, mid, bip = await employer_id(runtime), await membership_id(runtime, JULIE), await app_id(runtime, "bip")
    await browser.post(f"/employeurs/{eid}/agents/{mid}/droits/{bip}", {}, htmx=True)
    services = await agent.get("/services")
    assert 'data-app="bip"' not in services.text and 'data-app="site"' in services.text


async def test_who_may_grant(make_browser, runtime: Runtime) -> None:
    eid, mid, bip = await employer_id(runtime), await membership_id(runtime, GIRARD), await app_id(runtime, "bip")
    url = f"/employeurs/{eid}/agents/{mid}/droits/{bip}"
    before = await snapshot(runtime)
    for email in ["maire@bellerive.example", "c.bernard@cig-demo.fr", JULIE, "secretariat@coteaux.example"]:
        browser = await logged_in(make_browser, email)
        assert (await browser.post(url, {"enabled": "1"}, htmx=True)).status_code == 403, email
    grants, _ = await snapshot(runtime)
    assert grants == before[0]
    assert not await journal(runtime)
    # The CIG administrator may.
    admin = await logged_in(make_browser, CIG_ADMIN)
    assert (await admin.post(url, {"enabled": "1"}, htmx=True)).status_code == 200
    assert await grant(runtime, mid, bip) is not None


async def test_no_grant_on_another_employers_membership(make_browser, runtime: Runtime) -> None:
    browser = await logged_in(make_browser, REFERENT)
    eid = await employer_id(runtime)
    nadia = await membership_id(runtime, "secretariat@coteaux.example", SIVOM)
    sivom = await employer_id(runtime, SIVOM)
    site = await app_id(runtime, "site")
    before = await snapshot(runtime)
    assert (await browser.post(f"/employeurs/{eid}/agents/{nadia}/droits/{site}", {}, htmx=True)
            ).status_code == 404
    assert (await browser.post(f"/employeurs/{sivom}/agents/{nadia}/droits/{site}", {}, htmx=True)
            ).status_code == 403
    assert await snapshot(runtime) == before
