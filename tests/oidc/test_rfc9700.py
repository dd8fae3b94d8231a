"""RFC 9700 (OAuth 2.0 Security BCP) and ASVS V10 for the authorization server, plus the Convergences
rules of the provider: no right no token, the employer choice, the claims configured per client.

Most run on SQLite only (tests/oidc/conftest.py); those marked ``both_backends`` also on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from convergences.db import transaction, utcnow
from tests.helpers import SIVOM, VALFLEURI, employer_id, execute, page_text
from tests.oidc.conftest import (
    AGENT,
    AUTHORIZE,
    ISSUER,
    MULTI,
    NO_GRANT,
    POST_LOGOUT_URI,
    REDIRECT_URI,
    RP,
    Provider,
    Register,
    both_backends,
    forms,
    query,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def error_of(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.json().get("error"))


async def introspect(op: Provider, rp: RP, token: str) -> dict:  # type: ignore[type-arg]
    response = await op.http.post(f"{ISSUER}/oidc/introspect", data={"token": token},
                                  auth=(rp.client_id, rp.client_secret or ""))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# -- PKCE ---------------------------------------------------------------------------------------

async def test_pkce_plain_refused(op: Provider, bip: RP, public_rp: RP) -> None:
    for rp in (bip, public_rp):
        verifier = "v" * 50
        flow = await op.authorize(rp, pkce=False, code_challenge=verifier, code_challenge_method="plain")
        assert flow.params["error"] == "invalid_request" and flow.params["state"] == flow.state
        assert "code" not in flow.params
        # A challenge without a method means plain (RFC 7636 4.3): refused too.
        flow = await op.authorize(rp, pkce=False, code_challenge=verifier)
        assert flow.params["error"] == "invalid_request", flow.params


async def test_verifier_without_challenge_refused(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip, pkce=False)
    response = await op.code_request(flow, code_verifier="x" * 60)
    assert response.status_code == 400 and error_of(response) == "invalid_grant", response.text


async def test_challenge_without_or_with_a_wrong_verifier_refused(op: Provider, bip: RP, public_rp: RP) -> None:
    for rp in (bip, public_rp):
        flow = await op.authorize(rp, pkce=True)
        verifier, flow.verifier = flow.verifier, None
        missing = await op.code_request(flow)
        assert missing.status_code == 400 and error_of(missing) == "invalid_grant", missing.text
        flow = await op.authorize(rp, pkce=True)
        wrong = await op.code_request(flow, code_verifier=(verifier or "") + "x")
        assert wrong.status_code == 400 and error_of(wrong) == "invalid_grant", wrong.text


async def test_public_client_without_pkce_refused(op: Provider, public_rp: RP) -> None:
    flow = await op.authorize(public_rp, pkce=False)
    assert flow.params["error"] == "invalid_request" and "code" not in flow.params


async def test_public_client_with_pkce_succeeds_without_secret(op: Provider, public_rp: RP) -> None:
    flow, token, claims = await op.login_flow(public_rp)
    assert flow.verifier and claims["aud"] in (public_rp.client_id, [public_rp.client_id])
    # A public client presenting a secret is not authenticated.
    flow = await op.authorize(public_rp, flow.visitor)
    response = await op.token_request(public_rp, {"grant_type": "authorization_code", "code": flow.code,
                                                  "redirect_uri": public_rp.redirect_uri,
                                                  "code_verifier": flow.verifier or "", "client_secret": "x"},
                                      auth="none")
    assert response.status_code == 401 and error_of(response) == "invalid_client", response.text


# -- codes ----------------------------------------------------------------------------------------

@both_backends
async def test_code_lives_60_seconds(op: Provider, bip: RP) -> None:
    from convergences.oidc.models import AuthorizationCode

    flow = await op.authorize(bip)
    async with transaction(op.runtime.maker) as db:
        row = (await db.scalars(select(AuthorizationCode))).one()
        assert timedelta(0) < row.expires_at - row.created_at <= timedelta(seconds=61)
        assert row.code_hash != flow.code  # only a digest is stored
        row.expires_at = utcnow() - timedelta(seconds=1)
    response = await op.code_request(flow)
    assert response.status_code == 400 and error_of(response) == "invalid_grant", response.text


@both_backends
async def test_code_reuse_revokes_its_tokens(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip, scope="openid offline_access")
    first = await op.code_request(flow)
    assert first.status_code == 200, first.text
    tokens = first.json()
    again = await op.code_request(flow)
    assert again.status_code == 400 and error_of(again) == "invalid_grant"
    assert (await op.userinfo(tokens["access_token"])).status_code == 401
    assert (await introspect(op, bip, tokens["access_token"]))["active"] is False
    if "refresh_token" in tokens:
        assert (await introspect(op, bip, tokens["refresh_token"]))["active"] is False


async def test_code_bound_to_its_client(op: Provider, bip: RP, register: Register) -> None:
    other = await register("bip", [REDIRECT_URI])
    flow = await op.authorize(bip)
    stolen = await op.token_request(other, {"grant_type": "authorization_code", "code": flow.code,
                                            "redirect_uri": REDIRECT_URI})
    assert stolen.status_code == 400 and error_of(stolen) == "invalid_grant", stolen.text


async def test_redirect_uri_must_match_at_token_endpoint(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip)
    other = await op.code_request(flow, redirect_uri="https://bip.test/other-callback")  # registered, not used
    assert other.status_code == 400 and error_of(other) == "invalid_grant", other.text
    flow = await op.authorize(bip)
    data = {"grant_type": "authorization_code", "code": flow.code}  # redirect_uri missing
    missing = await op.token_request(bip, data)
    assert missing.status_code == 400 and error_of(missing) in {"invalid_grant", "invalid_request"}, missing.text


async def test_unknown_client_or_redirect_uri_never_redirects(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    await visitor.login(AGENT)
    url, _, _, _ = op.authorization_url(bip)
    for bad in (url.replace(bip.client_id, "cvg-inconnu"), re.sub(r"client_id=[^&]*&", "", url),
                url.replace("bip.test%2Fcallback", "evil.test%2Fcallback")):
        response = await visitor.get(bad.removeprefix(ISSUER))
        assert response.status_code == 400, (bad, response.status_code, response.headers.get("location"))
        assert "location" not in response.headers
        assert "application" in page_text(response).lower()  # a French explanation


async def test_token_endpoint_client_authentication(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip)
    data = {"grant_type": "authorization_code", "code": flow.code, "redirect_uri": REDIRECT_URI}
    wrong = await op.http.post(f"{ISSUER}/oidc/token", data=data, auth=(bip.client_id, "mauvais-secret"))
    assert wrong.status_code == 401 and error_of(wrong) == "invalid_client", wrong.text
    unknown = await op.http.post(f"{ISSUER}/oidc/token", data=data, auth=("cvg-inconnu", "x"))
    assert unknown.status_code == 401 and error_of(unknown) == "invalid_client"
    anonymous = await op.http.post(f"{ISSUER}/oidc/token", data={**data, "client_id": bip.client_id})
    assert anonymous.status_code == 401 and error_of(anonymous) == "invalid_client", anonymous.text
    # The code survived the failed attempts; the good secret gets the tokens, with no-store.
    good = await op.code_request(flow)
    assert good.status_code == 200, good.text
    assert "no-store" in good.headers.get("cache-control", "")


# -- grants and response types ----------------------------------------------------------------

async def test_no_implicit_or_hybrid_response_type(op: Provider, bip: RP) -> None:
    for response_type in ("token", "id_token", "id_token token", "code id_token", "code token"):
        url, state, _, _ = op.authorization_url(bip)
        url = url.replace("response_type=code", "response_type=" + response_type.replace(" ", "+"))
        flow = await op.authorize(bip, url=url)
        assert flow.location is not None, (response_type, flow.describe())
        assert "#" not in flow.location and "access_token" not in flow.location
        params = query(flow.location)
        assert params["error"] == "unsupported_response_type" and params["state"] == state, params
        assert "code" not in params and "id_token" not in params


async def test_no_password_or_client_credentials_grant(op: Provider, bip: RP) -> None:
    password = await op.token_request(bip, {"grant_type": "password", "username": AGENT,
                                            "password": "Convergences demo 2026 !", "scope": "openid"})
    assert password.status_code == 400 and error_of(password) == "unsupported_grant_type", password.text
    for grant in ("client_credentials", "urn:ietf:params:oauth:grant-type:device_code", ""):
        response = await op.token_request(bip, {"grant_type": grant})
        assert response.status_code == 400 and error_of(response) in {"unsupported_grant_type",
                                                                       "invalid_request"}, (grant, response.text)
    assert "password" not in (await op.discovery())["grant_types_supported"]


# -- refresh tokens -------------------------------------------------------------------------------

@both_backends
async def test_refresh_reuse_revokes_the_family(op: Provider, bip: RP, public_rp: RP) -> None:
    for rp in (bip, public_rp):
        _, token, _ = await op.login_flow(rp, scope="openid offline_access")
        rt1 = token["refresh_token"]
        grant = {"grant_type": "refresh_token", "refresh_token": rt1}
        auth = "none" if rp.public else "basic"
        second = await op.token_request(rp, grant, auth=auth)
        assert second.status_code == 200, second.text
        rt2 = second.json()["refresh_token"]
        assert rt2 != rt1
        # The rotated token comes back (stolen copy): refused, and the whole family dies.
        replay = await op.token_request(rp, grant, auth=auth)
        assert replay.status_code == 400 and error_of(replay) == "invalid_grant", replay.text
        after = await op.token_request(rp, {"grant_type": "refresh_token", "refresh_token": rt2}, auth=auth)
        assert after.status_code == 400 and error_of(after) == "invalid_grant", after.text
        if not rp.public:
            assert (await introspect(op, rp, rt2))["active"] is False


async def test_refresh_reuse_also_revokes_the_familys_access_tokens(op: Provider, bip: RP) -> None:
    """RFC 9700 4.14.2 revokes the refresh tokens; the access token handed out with the stolen
    rotation should not outlive the detection either (the session is compromised)."""
    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    second = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    access2 = second.json()["access_token"]
    replay = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert error_of(replay) == "invalid_grant"
    assert (await op.userinfo(access2)).status_code == 401


async def test_refresh_tokens_have_an_absolute_expiry(op: Provider, bip: RP) -> None:
    from convergences.oidc.models import OAuthToken

    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    second = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    rt2 = second.json()["refresh_token"]
    async with transaction(op.runtime.maker) as db:
        rows = (await db.scalars(select(OAuthToken).where(OAuthToken.kind == "refresh"))).all()
        assert rows and all(r.family_expires_at is not None for r in rows)
        assert len({r.family_expires_at for r in rows}) == 1  # rotation does not extend the family
        for row in rows:
            row.family_expires_at = utcnow() - timedelta(seconds=1)
    expired = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": rt2})
    assert expired.status_code == 400 and error_of(expired) == "invalid_grant", expired.text


async def test_client_without_refresh_permission_gets_none(op: Provider, register: Register) -> None:
    rp = await register("bip", [REDIRECT_URI], allow_refresh=False)
    _, token, _ = await op.login_flow(rp, scope="openid offline_access")
    assert "refresh_token" not in token
    response = await op.token_request(rp, {"grant_type": "refresh_token", "refresh_token": "n'importe-quoi"})
    assert response.status_code == 400 and error_of(response) in {"unauthorized_client", "invalid_grant"}


async def test_refresh_cannot_widen_the_scope(op: Provider, bip: RP) -> None:
    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    wider = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                                         "scope": "openid offline_access email"})
    assert wider.status_code == 400 and error_of(wider) == "invalid_scope", wider.text


# -- userinfo, introspection, revocation ----------------------------------------------------------

async def test_userinfo_refuses_missing_bad_expired_and_refresh_tokens(op: Provider, bip: RP) -> None:
    from convergences.oidc.models import OAuthToken

    none = await op.http.get(f"{ISSUER}/oidc/userinfo")
    assert none.status_code == 401 and "bearer" in none.headers.get("www-authenticate", "").lower()
    bad = await op.userinfo("pas-un-jeton")
    assert bad.status_code == 401 and "invalid_token" in bad.headers.get("www-authenticate", "")
    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    assert (await op.userinfo(token["refresh_token"])).status_code == 401
    assert "no-store" in (await op.userinfo(token["access_token"])).headers.get("cache-control", "")
    await execute(op.runtime, update(OAuthToken).where(OAuthToken.kind == "access")
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await op.userinfo(token["access_token"])).status_code == 401


async def test_introspection(op: Provider, bip: RP, public_rp: RP, register: Register) -> None:
    _, token, claims = await op.login_flow(bip, scope="openid offline_access")
    info = await introspect(op, bip, token["access_token"])
    assert info["active"] is True and info["client_id"] == bip.client_id and info["sub"] == claims["sub"]
    assert set(info["scope"].split()) == {"openid", "offline_access"} and info["exp"] > info["iat"]
    assert (await introspect(op, bip, token["refresh_token"]))["active"] is True
    assert await introspect(op, bip, "inconnu") == {"active": False}
    # Another client learns nothing about this client's tokens.
    other = await register("bip", ["https://bip.test/o"])
    assert await introspect(op, other, token["access_token"]) == {"active": False}
    # Client authentication required; public clients cannot introspect.
    anonymous = await op.http.post(f"{ISSUER}/oidc/introspect", data={"token": token["access_token"]})
    assert anonymous.status_code == 401
    wrong = await op.http.post(f"{ISSUER}/oidc/introspect", data={"token": token["access_token"]},
                               auth=(bip.client_id, "faux"))
    assert wrong.status_code == 401
    public = await op.http.post(f"{ISSUER}/oidc/introspect",
                                data={"token": token["access_token"], "client_id": public_rp.client_id})
    assert public.status_code == 401


async def test_revocation(op: Provider, bip: RP, register: Register) -> None:
    session = op.oauth(bip)
    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    # Another client cannot revoke it (200, but nothing happens: RFC 7009 2.2).
    other = await register("bip", ["https://bip.test/o"])
    response = await op.http.post(f"{ISSUER}/oidc/revoke", data={"token": token["access_token"]},
                                  auth=(other.client_id, other.client_secret or ""))
    assert response.status_code == 200
    assert (await op.userinfo(token["access_token"])).status_code == 200
    # Authlib revokes the access token.
    revoked = await session.revoke_token(f"{ISSUER}/oidc/revoke", token=token["access_token"],
                                         token_type_hint="access_token")
    assert revoked.status_code == 200
    assert (await op.userinfo(token["access_token"])).status_code == 401
    # Revoking a refresh token ends its family.
    rotated = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    rt2 = rotated.json()["refresh_token"]
    assert (await session.revoke_token(f"{ISSUER}/oidc/revoke", token=rt2)).status_code == 200
    after = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": rt2})
    assert after.status_code == 400 and error_of(after) == "invalid_grant"
    # Unknown tokens: 200. No client authentication: 401.
    assert (await session.revoke_token(f"{ISSUER}/oidc/revoke", token="inconnu")).status_code == 200
    anonymous = await op.http.post(f"{ISSUER}/oidc/revoke", data={"token": rt2})
    assert anonymous.status_code == 401


# -- metadata and keys ---------------------------------------------------------------------------

async def test_discovery_document(op: Provider) -> None:
    from authlib.oidc.discovery import OpenIDProviderMetadata

    doc = await op.discovery()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == AUTHORIZE
    assert doc["token_endpoint"] == f"{ISSUER}/oidc/token"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/oidc/userinfo"
    assert doc["jwks_uri"] == f"{ISSUER}/oidc/jwks"
    assert doc["revocation_endpoint"] == f"{ISSUER}/oidc/revoke"
    assert doc["introspection_endpoint"] == f"{ISSUER}/oidc/introspect"
    assert doc["end_session_endpoint"] == f"{ISSUER}/oidc/logout"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert {"RS256", "ES256"} <= set(doc["id_token_signing_alg_values_supported"])
    assert "none" not in doc["id_token_signing_alg_values_supported"]
    assert doc["backchannel_logout_supported"] is True
    assert {"client_secret_basic", "client_secret_post"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert set(doc["grant_types_supported"]) <= {"authorization_code", "refresh_token"}
    assert "openid" in doc["scopes_supported"]
    # Authlib's validator (RFC 8414 / OIDC Discovery); it insists on https, which the tests do not serve.
    https = json.loads(json.dumps(doc).replace("http://testserver.local", "https://testserver.local"))
    OpenIDProviderMetadata(https).validate()


async def test_jwks_publishes_the_id_token_kid(op: Provider, bip: RP, register: Register) -> None:
    _, _, rs = await op.login_flow(bip)
    es256 = await register("bip", [REDIRECT_URI], alg="ES256")
    _, _, es = await op.login_flow(es256)
    assert rs.header["alg"] == "RS256" and es.header["alg"] == "ES256"
    published = {k["kid"]: k for k in (await op.jwks())["keys"]}
    for header in (rs.header, es.header):
        key = published[header["kid"]]
        assert key.get("use", "sig") == "sig" and key.get("alg", header["alg"]) == header["alg"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "a private part is published"


# -- Convergences rules ---------------------------------------------------------------------------

@both_backends
async def test_agent_without_right_gets_french_page_naming_referents(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip, email=NO_GRANT)
    assert flow.location is None and flow.final is not None
    assert flow.final.status_code == 403, flow.describe()
    text = page_text(flow.final)
    assert "Vous n'avez pas accès à BIP" in text
    assert "Sophie Martin" in text and "Karim Haddad" in text  # the Bellerive référents
    assert "rh@bellerive.example" in text
    assert "code=" not in flow.final.text
    # The link back to the application carries error=access_denied and the state.
    links = [h for h in re.findall(r'href="([^"]+)"', flow.final.text) if h.startswith(REDIRECT_URI)]
    assert len(links) == 1, links
    import html

    params = query(html.unescape(links[0]))
    assert params["error"] == "access_denied" and params["state"] == flow.state
    # No code was issued for this person.
    from convergences.oidc.models import AuthorizationCode

    async with transaction(op.runtime.maker) as db:
        assert (await db.scalars(select(AuthorizationCode))).first() is None


@both_backends
async def test_multi_employer_choice_remembered(op: Provider, register: Register) -> None:
    site = await register("site", ["https://site.test/callback"])
    valfleuri = await employer_id(op.runtime, VALFLEURI)
    flow = await op.authorize(site, email=MULTI, employer=valfleuri)
    assert flow.choices == 1, flow.pages
    token = await op.exchange(flow)
    claims = await op.id_token(site, token, nonce=flow.nonce)
    assert claims["employer"]["siret"] == VALFLEURI
    # Next time (another browser, a new login) the choice is not asked again.
    again, _, claims2 = await op.login_flow(site, email=MULTI)
    assert again.choices == 0 and claims2["employer"]["siret"] == VALFLEURI


async def test_employer_choice_page_offers_only_eligible_employers(op: Provider, register: Register) -> None:
    site = await register("site", ["https://site.test/callback"])
    sivom, valfleuri = await employer_id(op.runtime, SIVOM), await employer_id(op.runtime, VALFLEURI)
    bellerive = await employer_id(op.runtime, "21930999900015")
    visitor = op.browser()
    await visitor.login(MULTI)
    url, _, _, _ = op.authorization_url(site)
    page = await visitor.get(url.removeprefix(ISSUER))
    assert page.status_code == 200, page.status_code
    assert "Pour quel employeur" in page.text
    form = next(f for f in forms(page.text) if any(i.get("name") == "employer_id" for i in f["inputs"]))
    offered = {int(i["value"]) for i in form["inputs"] if i.get("name") == "employer_id"}
    assert offered == {sivom, valfleuri}
    # The page cannot be framed (clickjacking) nor read cross-origin.
    csp = page.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp or page.headers.get("x-frame-options", "").upper() == "DENY"
    # Posting an employer that was not offered is refused.
    hidden = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("type") == "hidden"
              and i["name"] != "_csrf_token"}
    import html

    hidden = {k: html.unescape(v) for k, v in hidden.items()}
    refused = await visitor.post(form["action"], {**hidden, "employer_id": str(bellerive)})
    assert refused.status_code == 422 and "location" not in refused.headers
    # Without the CSRF token, the choice is refused too.
    forged = await visitor.post(form["action"], {**hidden, "employer_id": str(sivom)}, csrf=False)
    assert forged.status_code in (400, 403) and "location" not in forged.headers
    # prompt=none cannot show the page: interaction_required.
    url, state, _, _ = op.authorization_url(site, prompt="none")
    silent = await visitor.get(url.removeprefix(ISSUER))
    assert silent.status_code in (302, 303)
    assert query(silent.headers["location"])["error"] == "interaction_required"


async def test_single_employer_agent_is_not_asked(op: Provider, bip: RP) -> None:
    flow, _, claims = await op.login_flow(bip, email=MULTI)  # bip only at Val-Fleuri
    assert flow.choices == 0 and claims["employer"]["siret"] == VALFLEURI


async def test_claims_only_those_configured_for_the_client(op: Provider, register: Register) -> None:
    bare = await register("bip", [REDIRECT_URI], claims=[])
    _, token, claims = await op.login_flow(bare, scope="openid profile email")
    info = (await op.userinfo(token["access_token"])).json()
    for source in (dict(claims), info):
        assert "employer" not in source and "roles" not in source
        assert source["name"] == "Julie Moreau"  # the scopes still apply
    employer_only = await register("bip", [REDIRECT_URI], claims=["employer"])
    _, token, claims = await op.login_flow(employer_only)
    assert claims["employer"]["siret"] == "21930999900015" and "roles" not in claims
    assert "name" not in claims and "email" not in claims  # scope openid only
    # Roles come from the grant of the application the client belongs to.
    net = await register("net-cotisations", [REDIRECT_URI], claims=["employer", "roles"])
    _, token, claims = await op.login_flow(net)
    assert claims["roles"] == ["consultation"]
    info = (await op.userinfo(token["access_token"])).json()
    assert info["roles"] == ["consultation"] and info["employer"]["siret"] == "21930999900015"


async def test_withdrawn_right_stops_the_tokens(op: Provider, bip: RP) -> None:
    from convergences.accounts.models import Account
    from convergences.applications.models import Application, Grant
    from convergences.employers.models import Membership

    _, token, _ = await op.login_flow(bip, scope="openid offline_access")
    async with transaction(op.runtime.maker) as db:
        app_id = await db.scalar(select(Application.id).where(Application.slug == "bip"))
        membership = await db.scalar(select(Membership.id).join(Account, Account.id == Membership.account_id)
                                     .where(Account.email == AGENT))
        grant = await db.scalar(select(Grant).where(Grant.membership_id == membership,
                                                    Grant.application_id == app_id))
        await db.delete(grant)
    assert (await op.userinfo(token["access_token"])).status_code == 401
    refresh = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refresh.status_code == 400 and error_of(refresh) == "invalid_grant"


async def test_no_cors_on_the_authorization_endpoint(op: Provider, bip: RP) -> None:
    url, _, _, _ = op.authorization_url(bip)
    response = await op.http.get(url, headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in response.headers
    preflight = await op.http.options(AUTHORIZE, headers={"Origin": "https://evil.test",
                                                          "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


async def test_sub_is_stable_and_pairwise_differs(op: Provider, bip: RP, register: Register) -> None:
    _, _, one = await op.login_flow(bip)
    other = await register("site", ["https://site.test/cb"])
    _, _, two = await op.login_flow(other)
    assert one["sub"] == two["sub"]  # public subject: the same person everywhere
    pairwise = await register("bip", ["https://bip.test/pw"], pairwise=True)
    _, _, three = await op.login_flow(pairwise)
    assert three["sub"] != one["sub"]
    assert "@" not in one["sub"] and AGENT not in one["sub"]


# -- RP-initiated logout ----------------------------------------------------------------------

async def test_rp_initiated_logout_with_hint(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    _, token, _ = await op.login_flow(bip, visitor)
    response = await visitor.get("/oidc/logout", params={"id_token_hint": token["id_token"],
                                                         "post_logout_redirect_uri": POST_LOGOUT_URI,
                                                         "state": "apres"})
    assert response.status_code in (302, 303), page_text(response)
    location = response.headers["location"]
    assert location.startswith(POST_LOGOUT_URI) and query(location)["state"] == "apres"
    # The portal session is over, and the application's tokens too.
    silent = await op.authorize(bip, visitor, prompt="none", login=False)
    assert silent.params["error"] == "login_required"
    assert (await op.userinfo(token["access_token"])).status_code == 401


async def test_rp_initiated_logout_refuses_unregistered_target_and_asks_without_hint(op: Provider,
                                                                                    bip: RP) -> None:
    visitor = op.browser()
    _, token, _ = await op.login_flow(bip, visitor)
    evil = await visitor.get("/oidc/logout", params={"id_token_hint": token["id_token"],
                                                     "post_logout_redirect_uri": "https://evil.test/"})
    assert evil.status_code == 400 and "location" not in evil.headers
    # Without a hint, a third party could log people out: the portal asks first.
    ask = await visitor.get("/oidc/logout", params={"client_id": bip.client_id,
                                                    "post_logout_redirect_uri": POST_LOGOUT_URI})
    assert ask.status_code == 200 and "location" not in ask.headers
    silent = await op.authorize(bip, visitor, prompt="none", login=False)
    assert "code" in silent.params  # still logged in


# -- the CLI ----------------------------------------------------------------------------------------

async def test_cli_client_create(op: Provider, settings) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    cli = str(Path(sys.executable).with_name("convergences"))
    env = {**os.environ, "CONVERGENCES_DATABASE_URL": settings.database.url,
           "CONVERGENCES_SECRET_KEY": settings.secret_key, "CONVERGENCES_BASE_URL": ISSUER}

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(subprocess.run, [cli, "client", "create", *args], capture_output=True,
                                       text=True, env=env, timeout=120)

    result = await run("--application", "bip", "--redirect-uri", "https://bip.test/cli", "--alg", "RS256",
                       "--refresh", "--post-logout-redirect-uri", "https://bip.test/bye")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["client_id"] and created["client_secret"]
    rp = RP(created["client_id"], created["client_secret"], "https://bip.test/cli")
    _, token, claims = await op.login_flow(rp, scope="openid offline_access")
    assert token.get("refresh_token") and claims.header["alg"] == "RS256"
    public = await run("--application", "bip", "--redirect-uri", "https://bip.test/spa", "--public")
    assert public.returncode == 0, public.stderr
    assert json.loads(public.stdout)["client_secret"] is None
    bad = await run("--application", "inconnue", "--redirect-uri", "https://bip.test/x")
    assert bad.returncode != 0

async def test_long_authorization_request_survives_the_login_form(op: Provider, public_rp: RP) -> None:
    """A relying party may send a long state (its own signed data) and a claims request: the request
    must come back intact after the login form, whatever its length."""
    state = "s" * 400
    claims_request = json.dumps({"id_token": {"name": {"essential": True}, "email": None}})
    flow = await op.authorize(public_rp, state=state, nonce="n" * 100, claims=claims_request)
    assert len(flow.url) > 600
    assert flow.logins == 1
    assert flow.location is not None, flow.describe()
    assert query(flow.location).get("state") == state, flow.location[:200]
    token = await op.exchange(flow)
    claims = await op.id_token(public_rp, token, nonce="n" * 100)
    assert claims["name"] == "Julie Moreau"


@both_backends
async def test_oversized_parameters_get_a_clean_answer(op: Provider, bip: RP) -> None:
    """A nonce or state longer than the columns holding them: a proper OAuth error or success, never a
    server error (PostgreSQL enforces VARCHAR lengths; SQLite does not)."""
    visitor = op.browser()
    await visitor.login(AGENT)
    flow = await op.authorize(bip, visitor, nonce="n" * 2000)
    assert flow.final is not None and flow.final.status_code < 500, flow.describe()
    assert flow.location is not None, flow.describe()
    params = query(flow.location)
    if "code" in params:
        token = await op.exchange(flow)
        assert (await op.id_token(bip, token, nonce="n" * 2000))["nonce"] == "n" * 2000
    else:
        assert params["error"] == "invalid_request"
