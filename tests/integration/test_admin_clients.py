"""CIG admin screens for OpenID Connect clients (the protocol side of an application): listing on the
application's page, creation with the secret shown once (and proved to work against /oidc/introspect),
edit, secret regeneration, deletion with confirmation, French validation, journal without secrets,
and nobody but the CIG admin."""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any

from httpx import Response
from sqlalchemy import func, select

from convergences.audit.models import AuditEvent
from convergences.db import transaction
from convergences.oidc.models import Client
from convergences.runtime import Runtime
from tests.helpers import CIG_ADMIN, Browser, app_id, logged_in, page_text

NEVER_SHOWN_AGAIN = "il ne sera plus jamais affiché"


async def clients_of(rt: Runtime, application_id: int) -> list[Client]:
    async with transaction(rt.maker) as db:
        return list((await db.scalars(select(Client).where(Client.application_id == application_id)
                                      .order_by(Client.id))).all())


async def client_count(rt: Runtime) -> int:
    async with transaction(rt.maker) as db:
        return int(await db.scalar(select(func.count()).select_from(Client)) or 0)


async def events(rt: Runtime, prefix: str = "client:") -> list[AuditEvent]:
    async with transaction(rt.maker) as db:
        return list((await db.scalars(select(AuditEvent).where(AuditEvent.action.startswith(prefix))
                                      .order_by(AuditEvent.id))).all())


def shown(response: Response, input_id: str) -> str:
    match = re.search(rf'id="{input_id}" type="text" value="([^"]*)"', response.text)
    assert match, f"no #{input_id} on the page: {page_text(response)}"
    return html.unescape(match.group(1))


def client_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": "BIP recette",
        "redirect_uris": "https://bip.recette.example/callback\nhttps://bip.recette.example/Retour/?src=cvg",
        "post_logout_redirect_uris": "https://bip.recette.example/",
        "backchannel_logout_uri": "https://bip.recette.example/backchannel-logout",
        "alg": "ES256", "claims": ["employer", "roles"], "allow_refresh": "1",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


async def the_client(rt: Runtime, application_id: int, client_id: str) -> Client:
    (client,) = [c for c in await clients_of(rt, application_id) if c.client_id == client_id]
    return client


async def create_client(admin: Browser, rt: Runtime, application_id: int) -> tuple[str, str, Client]:
    """A confidential client made with the default form: its client_id, its secret (shown once), its row."""
    created = await admin.post(f"/admin/applications/{application_id}/clients", client_form())
    client_id, secret = shown(created, "client-id"), shown(created, "client-secret")
    return client_id, secret, await the_client(rt, application_id, client_id)


async def introspect(browser: Browser, client_id: str, secret: str) -> Response:
    """Client authentication (client_secret_basic) with a dummy token: 200 {"active": false} proves the
    secret, 401 invalid_client refuses it."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return await browser.post("/oidc/introspect", {"token": "not-a-real-token"}, csrf=False,
                              headers={"Authorization": f"Basic {basic}"})


async def assert_secret_works(browser: Browser, client_id: str, secret: str) -> None:
    response = await introspect(browser, client_id, secret)
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}


async def assert_secret_refused(browser: Browser, client_id: str, secret: str) -> None:
    response = await introspect(browser, client_id, secret)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


async def test_application_page_lists_its_clients(make_browser: Any, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bip = await app_id(runtime, "bip")
    page = await admin.get(f"/admin/applications/{bip}")
    assert page.status_code == 200
    assert "Clients OpenID Connect" in page.text and "demo-bip" in page.text
    assert "http://127.0.0.1:8001/callback" in page.text and "http://127.0.0.1:8001/backchannel-logout" in page.text
    assert "demo-net-cotisations" not in page.text  # another application's client
    assert f'action="/admin/applications/{bip}/clients"' in page.text
    # The bare collection URL leads back to the listing.
    bare = await admin.get(f"/admin/applications/{bip}/clients")
    assert bare.status_code == 303 and bare.headers["location"] == f"/admin/applications/{bip}#clients"


async def test_create_shows_a_working_secret_once_then_regenerate(make_browser: Any, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    rp = await make_browser()
    bip = await app_id(runtime, "bip")
    before = await client_count(runtime)

    created = await admin.post(f"/admin/applications/{bip}/clients", client_form())
    assert created.status_code == 200, page_text(created)
    assert created.headers["cache-control"] == "no-store"
    assert NEVER_SHOWN_AGAIN in created.text
    client_id, secret = shown(created, "client-id"), shown(created, "client-secret")
    assert client_id.startswith("cvg-") and len(secret) >= 32
    assert await client_count(runtime) == before + 1

    client = await the_client(runtime, bip, client_id)
    assert client.redirect_uris == ["https://bip.recette.example/callback",
                                    "https://bip.recette.example/Retour/?src=cvg"]  # exact strings kept
    assert client.post_logout_redirect_uris == ["https://bip.recette.example/"]
    assert client.backchannel_logout_uri == "https://bip.recette.example/backchannel-logout"
    assert (client.is_public, client.id_token_alg, client.allow_refresh, client.pairwise_sub) == (
        False, "ES256", True, False)
    assert client.claims == ["employer", "roles"] and client.name == "BIP recette"
    assert client.secret_hash and client.secret_hash.startswith("hmac-sha256$") and secret not in client.secret_hash

    # The secret shown works; a wrong one does not.
    await assert_secret_works(rp, client_id, secret)
    await assert_secret_refused(rp, client_id, secret + "x")

    # Shown once: neither the listing nor the client's page shows it again.
    listing = await admin.get(f"/admin/applications/{bip}")
    assert client_id in listing.text and secret not in listing.text
    page = await admin.get(f"/admin/applications/{bip}/clients/{client.id}")
    assert page.status_code == 200 and client_id in page.text and secret not in page.text
    assert "Régénérer le secret" in page.text

    # Regenerate: a new secret, shown once; the old one stops working at once.
    rotated = await admin.post(f"/admin/applications/{bip}/clients/{client.id}/secret")
    assert rotated.status_code == 200, page_text(rotated)
    assert rotated.headers["cache-control"] == "no-store" and NEVER_SHOWN_AGAIN in rotated.text
    new_secret = shown(rotated, "client-secret")
    assert new_secret != secret and shown(rotated, "client-id") == client_id
    await assert_secret_refused(rp, client_id, secret)
    await assert_secret_works(rp, client_id, new_secret)

    # The journal: creation and regeneration, by the admin, never a secret nor its hash.
    logged = [e for e in await events(runtime) if e.target_id == client.id]
    assert [e.action for e in logged] == ["client:create", "client:secret:rotate"]
    assert all("admin@cig-demo.fr" in e.actor_label and e.target_type == "oidc_client" for e in logged)
    assert logged[0].after is not None and logged[0].after["redirect_uris"] == client.redirect_uris
    for event in await events(runtime, ""):
        dumped = json.dumps([event.before, event.after, event.target_label], ensure_ascii=False)
        for leaked in (secret, new_secret, "hmac-sha256$"):
            assert leaked not in dumped, (event.action, dumped)
    journal = await admin.get("/admin/journal")
    assert "Client OpenID Connect créé" in journal.text and "régénéré" in journal.text
    assert secret not in journal.text and new_secret not in journal.text


async def test_invalid_redirect_uri_is_refused_in_french_and_creates_nothing(make_browser: Any,
                                                                             runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bip = await app_id(runtime, "bip")
    before = await client_count(runtime)
    cases = {
        "javascript:alert(1)": "Saisissez une adresse web complète",
        "/callback": "Saisissez une adresse web complète",
        "https://bip.example/cb#fragment": "ne doit pas contenir de fragment",
        "https://bip.example/a b": "contient des espaces",
        "": "au moins une adresse de retour",
    }
    for uri, message in cases.items():
        response = await admin.post(f"/admin/applications/{bip}/clients",
                                    client_form(redirect_uris=f"https://bip.example/ok\n{uri}" if uri else ""))
        assert response.status_code == 422, (uri, page_text(response))
        assert message in html.unescape(response.text), (uri, page_text(response))
        assert "Le client n'a pas été créé" in response.text and 'aria-invalid="true"' in response.text
        assert "https://bip.recette.example/backchannel-logout" in response.text  # the form is kept
    bad_logout = await admin.post(f"/admin/applications/{bip}/clients",
                                  client_form(backchannel_logout_uri="ftp://bip.example/logout"))
    assert bad_logout.status_code == 422 and "adresse de déconnexion" in html.unescape(bad_logout.text)
    bad_alg = await admin.post(f"/admin/applications/{bip}/clients", client_form(alg="HS256"))
    assert bad_alg.status_code == 422 and "algorithme de signature" in html.unescape(bad_alg.text)
    assert await client_count(runtime) == before
    assert await events(runtime) == []


async def test_public_client_has_no_secret(make_browser: Any, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bip = await app_id(runtime, "bip")
    created = await admin.post(f"/admin/applications/{bip}/clients",
                               client_form(public="1", claims=None, allow_refresh=None, pairwise="1"))
    assert created.status_code == 200 and 'id="client-secret"' not in created.text
    assert "Client public" in created.text
    client_id = shown(created, "client-id")
    client = await the_client(runtime, bip, client_id)
    assert client.is_public and client.secret_hash is None and client.claims == [] and client.pairwise_sub
    refused = await admin.post(f"/admin/applications/{bip}/clients/{client.id}/secret")
    assert refused.status_code == 422 and "Un client public n'a pas de secret" in html.unescape(refused.text)


async def test_edit_client_then_confidential_gets_a_secret(make_browser: Any, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    rp = await make_browser()
    bip = await app_id(runtime, "bip")
    client_id, secret, client = await create_client(admin, runtime, bip)
    url = f"/admin/applications/{bip}/clients/{client.id}"

    page = await admin.get(url)
    assert "https://bip.recette.example/Retour/?src=cvg" in html.unescape(page.text)  # the form is filled
    invalid = await admin.post(url, client_form(redirect_uris="pas-une-adresse"))
    assert invalid.status_code == 422 and "Saisissez une adresse web complète" in html.unescape(invalid.text)

    changed = await admin.post(url, client_form(redirect_uris="https://bip.prod.example/cb", alg="RS256",
                                                claims="employer", allow_refresh=None, pairwise="1",
                                                backchannel_logout_uri=""))
    assert changed.status_code == 303 and changed.headers["location"] == f"/admin/applications/{bip}#clients"
    follow = await admin.get(f"/admin/applications/{bip}")
    assert f"Le client {client_id} est modifié." in follow.text
    client = await the_client(runtime, bip, client_id)
    assert client.redirect_uris == ["https://bip.prod.example/cb"] and client.id_token_alg == "RS256"
    assert client.claims == ["employer"] and not client.allow_refresh and client.pairwise_sub
    assert client.backchannel_logout_uri is None
    await assert_secret_works(rp, client_id, secret)  # editing keeps the secret

    update = [e for e in await events(runtime) if e.action == "client:update"][-1]
    assert update.before and update.after and update.before["alg"] == "ES256" and update.after["alg"] == "RS256"

    # Made public: the secret is gone. Made confidential again: a new secret, shown once.
    public = await admin.post(url, client_form(public="1"))
    assert public.status_code == 303
    await assert_secret_refused(rp, client_id, secret)
    confidential = await admin.post(url, client_form())
    assert confidential.status_code == 200 and NEVER_SHOWN_AGAIN in confidential.text
    third = shown(confidential, "client-secret")
    await assert_secret_works(rp, client_id, third)
    for event in await events(runtime, ""):
        dumped = json.dumps([event.before, event.after, event.target_label], ensure_ascii=False)
        assert secret not in dumped and third not in dumped and "$argon2" not in dumped


async def test_delete_asks_for_confirmation(make_browser: Any, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    rp = await make_browser()
    bip = await app_id(runtime, "bip")
    client_id, secret, client = await create_client(admin, runtime, bip)
    url = f"/admin/applications/{bip}/clients/{client.id}/supprimer"
    confirm = await admin.get(url)
    assert confirm.status_code == 200 and "Oui, supprimer le client" in confirm.text
    assert f'action="{url}"' in confirm.text
    assert client_id in [c.client_id for c in await clients_of(runtime, bip)]  # nothing deleted by GET

    deleted = await admin.post(url)
    assert deleted.status_code == 303 and deleted.headers["location"] == f"/admin/applications/{bip}#clients"
    assert client_id not in [c.client_id for c in await clients_of(runtime, bip)]
    await assert_secret_refused(rp, client_id, secret)
    gone = await admin.get(f"/admin/applications/{bip}/clients/{client.id}")
    assert gone.status_code == 404
    (event,) = [e for e in await events(runtime) if e.action == "client:delete"]
    assert event.before and event.before["client_id"] == client_id and event.after is None


async def test_a_client_is_only_reached_through_its_own_application(make_browser: Any, runtime: Runtime) -> None:
    admin = await logged_in(make_browser, CIG_ADMIN)
    bip, net = await app_id(runtime, "bip"), await app_id(runtime, "net-cotisations")
    (demo_bip,) = await clients_of(runtime, bip)
    for method, suffix in [("GET", ""), ("POST", ""), ("POST", "/secret"), ("GET", "/supprimer"),
                           ("POST", "/supprimer")]:
        url = f"/admin/applications/{net}/clients/{demo_bip.id}{suffix}"
        response = await (admin.get(url) if method == "GET" else admin.post(url, client_form()))
        assert response.status_code == 404, (method, url, response.status_code)
    assert [c.client_id for c in await clients_of(runtime, bip)] == ["demo-bip"]
    assert await events(runtime) == []


async def test_only_the_cig_admin_manages_clients(make_browser: Any, runtime: Runtime) -> None:
    bip = await app_id(runtime, "bip")
    (demo_bip,) = await clients_of(runtime, bip)
    before = await client_count(runtime)
    for email in ("rh@bellerive.example", "maire@bellerive.example", "c.bernard@cig-demo.fr",
                  "agent@bellerive.example"):
        someone: Browser = await make_browser()
        await someone.login(email)
        base = f"/admin/applications/{bip}"
        for method, url, form in [
            ("GET", base, None), ("GET", f"{base}/clients", None),
            ("POST", f"{base}/clients", client_form()), ("POST", f"{base}/clients", {}),
            ("GET", f"{base}/clients/{demo_bip.id}", None),
            ("POST", f"{base}/clients/{demo_bip.id}", client_form(public="1")),
            ("POST", f"{base}/clients/{demo_bip.id}/secret", {}),
            ("GET", f"{base}/clients/{demo_bip.id}/supprimer", None),
            ("POST", f"{base}/clients/{demo_bip.id}/supprimer", {}),
        ]:
            response = await (someone.get(url) if method == "GET" else someone.post(url, form))
            assert response.status_code == 403, (email, method, url, response.status_code)
            assert "demo-bip" not in response.text
    anonymous: Browser = await make_browser()
    response = await anonymous.get(f"/admin/applications/{bip}/clients/{demo_bip.id}")
    assert response.status_code in (302, 303) and response.headers["location"].startswith("/login")
    assert await client_count(runtime) == before
    (still,) = await clients_of(runtime, bip)
    assert still.secret_hash == demo_bip.secret_hash and not still.is_public
    assert await events(runtime) == []
    rp: Browser = await make_browser()
    await assert_secret_works(rp, "demo-bip", "demo-bip-secret")
