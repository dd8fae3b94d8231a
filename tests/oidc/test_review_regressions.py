"""Regressions from the security review of the provider (codes, refresh families, login over a live
session, password reset, RP-initiated logout, CSRF exemptions)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from convergences.db import transaction, utcnow
from convergences.runtime import Runtime
from tests.helpers import account_id, page_text
from tests.oidc.conftest import AGENT, MULTI, POST_LOGOUT_URI, RP, Provider, Register, query

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def error_of(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.json().get("error"))


async def _refresh(op: Provider, rp: RP, refresh_token: str):  # type: ignore[no-untyped-def]
    return await op.token_request(rp, {"grant_type": "refresh_token", "refresh_token": refresh_token})


async def test_code_replay_revokes_the_refreshed_family_too(op: Provider, bip: RP) -> None:
    """RFC 6749 4.1.2 / ASVS 10.4.2: a replayed code revokes what it gave, including the tokens the
    legitimate client already rotated from it (they carry no code_hash, only the family)."""
    flow = await op.authorize(bip, scope="openid offline_access")
    first = await op.code_request(flow)
    assert first.status_code == 200, first.text
    rotated = await _refresh(op, bip, first.json()["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    again = await op.code_request(flow)
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    assert (await op.userinfo(rotated.json()["access_token"])).status_code == 401
    after = await _refresh(op, bip, rotated.json()["refresh_token"])
    assert after.status_code == 400 and error_of(after) == "invalid_grant", after.text


async def test_login_as_someone_else_ends_the_previous_persons_application_sessions(op: Provider, bip: RP) -> None:
    """A shared computer: a second person logs in over the first one's session. The first person's
    application sessions must end with the portal session they came from (tokens revoked)."""
    visitor = op.browser()
    _, token, _ = await op.login_flow(bip, visitor, scope="openid offline_access")
    await visitor.login(MULTI)
    assert (await op.userinfo(token["access_token"])).status_code == 401
    refreshed = await _refresh(op, bip, token["refresh_token"])
    assert refreshed.status_code == 400 and error_of(refreshed) == "invalid_grant", refreshed.text


async def test_reauthentication_keeps_application_sessions_attached_to_the_new_login(op: Provider,
                                                                                     bip: RP) -> None:
    """prompt=login (or max_age) replaces the portal session; a later logout must still end the
    application sessions opened before the re-authentication (and the sid stays the same)."""
    visitor = op.browser()
    _, token, claims = await op.login_flow(bip, visitor, scope="openid offline_access")
    _, token2, claims2 = await op.login_flow(bip, visitor, prompt="login")
    assert claims2["sid"] == claims["sid"]
    assert (await op.userinfo(token["access_token"])).status_code == 200  # same person: still valid
    await visitor.logout()
    assert (await op.userinfo(token["access_token"])).status_code == 401
    assert (await op.userinfo(token2["access_token"])).status_code == 401
    refreshed = await _refresh(op, bip, token["refresh_token"])
    assert refreshed.status_code == 400, refreshed.text


async def test_password_set_from_an_invitation_ends_application_sessions(op: Provider, bip: RP,
                                                                        runtime: Runtime) -> None:
    """A re-invitation used as a password reset ends the portal sessions and the applications' ones."""
    from convergences.accounts.models import Invitation
    from convergences.accounts.services import AuthService
    from convergences.security.tokens import digest

    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    agent = await account_id(runtime, AGENT)
    nonce = "n" * 43
    async with transaction(runtime.maker) as db:
        invitation = Invitation(account_id=agent, nonce_hash=digest(nonce), expires_at=utcnow() + timedelta(days=1))
        db.add(invitation)
        await db.flush()
        link = runtime.invitations.dumps([invitation.id, nonce])
    errors = await AuthService(runtime).accept_invitation(link, "tortue volcan parapluie horizon",
                                                          "tortue volcan parapluie horizon", None)
    assert errors == {}
    assert (await op.userinfo(token["access_token"])).status_code == 401
    refreshed = await _refresh(op, bip, token["refresh_token"])
    assert refreshed.status_code == 400, refreshed.text


async def test_logout_refuses_a_client_id_that_is_not_the_hints_audience(op: Provider, bip: RP,
                                                                         register: Register) -> None:
    """RP-Initiated Logout 1.0 §2: with both client_id and id_token_hint, the client_id must be the
    one the ID token was issued to; else no silent logout and no redirect to the other client."""
    other = await register("bip", ["https://autre.test/cb"], post_logout_redirect_uris=["https://autre.test/bye"])
    visitor = op.browser()
    _, token, _ = await op.login_flow(bip, visitor)
    response = await visitor.get("/oidc/logout", params={"id_token_hint": token["id_token"],
                                                         "client_id": other.client_id,
                                                         "post_logout_redirect_uri": "https://autre.test/bye"})
    assert response.status_code == 400 and "location" not in response.headers, page_text(response)
    assert (await op.userinfo(token["access_token"])).status_code == 200  # still logged in
    # The matching client_id is fine.
    ok = await visitor.get("/oidc/logout", params={"id_token_hint": token["id_token"], "client_id": bip.client_id,
                                                   "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s"})
    assert ok.status_code == 303 and query(ok.headers["location"])["state"] == "s"


async def test_expired_id_token_hint_still_accepted_for_logout(op: Provider, bip: RP, runtime: Runtime) -> None:
    """RP-Initiated Logout 1.0 §2: the OP should accept an expired ID token as a hint."""
    from convergences.oidc import keys

    visitor = op.browser()
    _, token, _ = await op.login_flow(bip, visitor)
    async with transaction(runtime.maker) as db:
        decoded = await keys.verify(db, token["id_token"])
        assert decoded is not None
        decoded["exp"] = int(utcnow().timestamp()) - 3600
        key = await keys.signing_key(db, runtime.settings, bip.alg)
        expired = keys.sign(runtime.settings, key, decoded)
    response = await visitor.get("/oidc/logout", params={"id_token_hint": expired,
                                                         "post_logout_redirect_uri": POST_LOGOUT_URI})
    assert response.status_code == 303 and response.headers["location"].startswith(POST_LOGOUT_URI)


def test_csrf_exemptions_are_anchored() -> None:
    """Litestar matches exclusions with an unanchored findall: each must name exactly one path."""
    from convergences.oidc.views import CSRF_EXEMPT

    pattern = re.compile("|".join(CSRF_EXEMPT))
    for path in ("/oidc/authorize", "/oidc/token", "/oidc/userinfo", "/oidc/revoke", "/oidc/introspect",
                 "/oidc/logout", "/oidc/token/"):
        assert pattern.findall(path), path
    for path in ("/x/oidc/token", "/invitation/a/oidc/logout", "/oidc/logout/confirmer", "/oidc/employeur",
                 "/oidc/tokenx"):
        assert not pattern.findall(path), path


async def test_rp_session_rows_follow_the_login(op: Provider, bip: RP, runtime: Runtime) -> None:
    """After a login over a live session of the same person, no application session is left
    attached to the ended portal session."""
    from convergences.oidc.models import RpSession
    from convergences.security.models import LoginSession

    visitor = op.browser()
    await op.login_flow(bip, visitor)
    await visitor.login(AGENT)
    async with transaction(runtime.maker) as db:
        live = set((await db.scalars(select(LoginSession.id))).all())
        attached = (await db.scalars(select(RpSession.login_session_id).where(RpSession.ended_at.is_(None)))).all()
    assert attached and all(sid in live for sid in attached)


async def test_sub_survives_a_rotation_of_the_server_secret(runtime, settings) -> None:
    """The subject key lives in the database: a new CONVERGENCES_SECRET_KEY keeps every sub."""
    from dataclasses import replace

    from sqlalchemy import select

    from convergences.db import transaction
    from convergences.oidc.models import Client
    from convergences.oidc.services import register_client, subject
    from convergences.runtime import Runtime

    client_id, _ = await register_client(runtime, application_slug="bip", redirect_uris=["https://bip.test/cb"])
    async with transaction(runtime.maker) as db:
        client = await db.scalar(select(Client).where(Client.client_id == client_id))
        before = await subject(db, runtime, client, 1)
    rotated = Runtime.build(replace(settings, secret_key="a-brand-new-secret-" + "q" * 32))
    try:
        async with transaction(rotated.maker) as db:
            assert await subject(db, rotated, client, 1) == before
    finally:
        await rotated.close()


async def test_logout_confirmation_only_returns_to_the_asking_clients_address(op: Provider, bip: RP,
                                                                              register: Register) -> None:
    """Without an id_token_hint the portal asks; the confirmation form must send the person back only to
    the address validated for the asking client (signed), never to one a forged form names, even if
    another client registered it."""
    other = await register("bip", ["https://autre.test/cb"], post_logout_redirect_uris=["https://autre.test/bye"])
    assert other.client_id != bip.client_id
    visitor = op.browser()
    await op.login_flow(bip, visitor)
    ask = await visitor.get("/oidc/logout", params={"client_id": bip.client_id,
                                                    "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s"})
    assert ask.status_code == 200 and "Se déconnecter de Convergences" in page_text(ask)
    signed = re.search(r'name="destination" value="([^"]+)"', ask.text)
    assert signed and POST_LOGOUT_URI not in signed.group(1)  # not a plain, editable address
    forged = await visitor.post("/oidc/logout/confirmer", {"destination": "https://autre.test/bye"})
    assert forged.status_code == 200 and "location" not in forged.headers, forged.headers
    # The forged confirmation still logged the person out (that is what they confirmed), nowhere else.
    await op.login_flow(bip, visitor)
    ask = await visitor.get("/oidc/logout", params={"client_id": bip.client_id,
                                                    "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s"})
    signed = re.search(r'name="destination" value="([^"]+)"', ask.text)
    assert signed
    done = await visitor.post("/oidc/logout/confirmer", {"destination": signed.group(1)})
    assert done.status_code == 303 and done.headers["location"].startswith(POST_LOGOUT_URI)
    assert query(done.headers["location"])["state"] == "s"
