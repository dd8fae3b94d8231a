"""The OpenID Foundation's Basic OP plan (``oidcc-basic-certification-test-plan``), one test per module,
named after it (docs: /work/shared/design/OIDC-CONFORMANCE.md).

Code flow, ``client_secret_basic``, RS256 client; the relying party is Authlib's OAuth 2 client, the ID
token is verified by Authlib's JOSE and ``CodeIDToken`` (see conftest), the person logs in through
the real login form.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, update

from convergences.db import transaction, utcnow
from tests.helpers import account_id, execute
from tests.oidc.conftest import (
    AGENT,
    AUTHORIZE,
    ISSUER,
    REDIRECT_URI,
    RP,
    Provider,
    Register,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def oauth_error(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(getattr(excinfo.value, "error", excinfo.value))


async def age_login_sessions(op: Provider, email: str, seconds: int) -> None:
    """Pretend the person logged in ``seconds`` earlier (instead of sleeping)."""
    from convergences.security.models import LoginSession

    aid = await account_id(op.runtime, email)
    await execute(op.runtime, update(LoginSession).where(LoginSession.account_id == aid).values(
        authenticated_at=utcnow() - timedelta(seconds=seconds), created_at=utcnow() - timedelta(seconds=seconds)))


# -- oidcc-server -------------------------------------------------------------------------------

async def test_oidcc_server(op: Provider, bip: RP) -> None:
    flow, token, claims = await op.login_flow(bip)
    assert flow.logins == 1
    assert flow.params["state"] == flow.state
    assert token["token_type"].lower() == "bearer" and token["access_token"]
    assert claims["iss"] == ISSUER and claims["aud"] in (bip.client_id, [bip.client_id])
    assert claims["nonce"] == flow.nonce
    assert claims["sub"] and isinstance(claims["sub"], str)
    assert claims["exp"] > time.time() > claims["iat"] - 5
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= time.time() + 5
    assert claims["amr"] and claims["sid"]
    # The Convergences claims configured for this client.
    assert claims["employer"] == {"siret": "21930999900015", "name": "Commune de Bellerive-sur-Marne"}
    assert claims["roles"] == []


async def test_oidcc_response_type_missing(op: Provider, bip: RP) -> None:
    url, state, _, _ = op.authorization_url(bip, scope="openid")
    url = url.replace("response_type=code&", "").replace("&response_type=code", "")
    assert "response_type" not in url
    flow = await op.authorize(bip, url=url)
    if flow.location is None:  # an error page is acceptable to the plan, never a redirect with a code
        assert flow.final is not None and flow.final.status_code == 400
        return
    params = flow.params
    assert "code" not in params
    assert params["error"] in {"invalid_request", "unsupported_response_type"}
    assert params["state"] == state


async def test_oidcc_idtoken_signature(op: Provider, bip: RP) -> None:
    from authlib.jose import JsonWebKey, JsonWebToken

    _, token, claims = await op.login_flow(bip)
    assert claims.header["alg"] == "RS256"
    kid = claims.header.get("kid")
    assert kid and kid in [k["kid"] for k in (await op.jwks())["keys"]]
    assert "RS256" in (await op.discovery())["id_token_signing_alg_values_supported"]
    keys = JsonWebKey.import_key_set(await op.jwks())
    # Outside the client's algorithm, or tampered with: refused.
    with pytest.raises(Exception):  # noqa: B017 - authlib raises its own error classes
        JsonWebToken(["ES256"]).decode(token["id_token"], keys)
    header, payload, signature = token["id_token"].split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["sub"] = "someone-else"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(Exception):  # noqa: B017
        JsonWebToken(["RS256"]).decode(f"{header}.{forged_payload}.{signature}", keys)


# -- userinfo -----------------------------------------------------------------------------------

async def _userinfo(op: Provider, bip: RP, how: str) -> None:
    _, token, claims = await op.login_flow(bip, scope="openid profile email")
    response = await op.userinfo(token["access_token"], how=how)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    info = response.json()
    assert info["sub"] == claims["sub"]
    assert info["name"] == "Julie Moreau" and info["email"] == AGENT


async def test_oidcc_userinfo_get(op: Provider, bip: RP) -> None:
    await _userinfo(op, bip, "get")


async def test_oidcc_userinfo_post_header(op: Provider, bip: RP) -> None:
    await _userinfo(op, bip, "post-header")


async def test_oidcc_userinfo_post_body(op: Provider, bip: RP) -> None:
    await _userinfo(op, bip, "post-body")


async def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(op: Provider, bip: RP) -> None:
    flow, _, claims = await op.login_flow(bip, nonce=None)
    assert "nonce=" not in flow.url
    assert "nonce" not in claims


# -- scopes -------------------------------------------------------------------------------------

async def _scope(op: Provider, bip: RP, scope: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    _, token, claims = await op.login_flow(bip, scope=scope)
    response = await op.userinfo(token["access_token"])
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["sub"] == claims["sub"]
    return dict(claims), info


async def test_oidcc_scope_profile(op: Provider, bip: RP) -> None:
    claims, info = await _scope(op, bip, "openid profile")
    for source in (claims, info):
        assert source["name"] == "Julie Moreau"
        assert source["given_name"] == "Julie" and source["family_name"] == "Moreau"
        assert "email" not in source
    assert not {"address", "phone_number"} & set(info)


async def test_oidcc_scope_email(op: Provider, bip: RP) -> None:
    claims, info = await _scope(op, bip, "openid email")
    for source in (claims, info):
        assert source["email"] == AGENT and source["email_verified"] is True
        assert "name" not in source


async def test_oidcc_scope_address(op: Provider, bip: RP) -> None:
    # No postal address is kept: the scope is accepted and the claim simply absent.
    claims, info = await _scope(op, bip, "openid address")
    assert "address" not in claims and "address" not in info


async def test_oidcc_scope_phone(op: Provider, bip: RP) -> None:
    claims, info = await _scope(op, bip, "openid phone")
    assert "phone_number" not in claims and "phone_number" not in info


async def test_oidcc_scope_all(op: Provider, bip: RP) -> None:
    claims, info = await _scope(op, bip, "openid profile email address phone")
    assert info["name"] == "Julie Moreau" and info["email"] == AGENT
    assert claims["name"] == "Julie Moreau" and claims["email"] == AGENT


async def test_oidcc_alternate_happy_flow(op: Provider, bip: RP) -> None:
    """Parameters in another order, scopes in another order."""
    query = urlencode([("state", "etat-42"), ("scope", "email openid profile"), ("nonce", "n-0S6_WzA2Mj"),
                       ("redirect_uri", REDIRECT_URI), ("client_id", bip.client_id), ("response_type", "code")])
    flow = await op.authorize(bip, url=f"{AUTHORIZE}?{query}")
    flow.state, flow.nonce = "etat-42", "n-0S6_WzA2Mj"
    token = await op.exchange(flow)
    claims = await op.id_token(bip, token, nonce="n-0S6_WzA2Mj")
    assert claims["email"] == AGENT and claims["name"] == "Julie Moreau"


async def test_oidcc_display_page(op: Provider, bip: RP) -> None:
    await op.login_flow(bip, display="page")


async def test_oidcc_display_popup(op: Provider, bip: RP) -> None:
    await op.login_flow(bip, display="popup")


# -- prompt, max_age, hints ---------------------------------------------------------------------

async def test_oidcc_prompt_login(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    _, _, first = await op.login_flow(bip, visitor)
    # Pretend that login was 5 s ago: a silent request reports that earlier time...
    await age_login_sessions(op, AGENT, 5)
    silent, _, earlier = await op.login_flow(bip, visitor)
    assert silent.logins == 0 and earlier["auth_time"] < first["auth_time"]
    # ...and prompt=login shows the login form again, even to a logged-in person, and a later auth_time.
    again, _, second = await op.login_flow(bip, visitor, prompt="login")
    assert again.logins == 1, again.pages
    assert second["auth_time"] > earlier["auth_time"] and second["auth_time"] >= first["auth_time"]
    assert second["sub"] == first["sub"]


async def test_oidcc_prompt_none_not_logged_in(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip, prompt="none", login=False)
    assert flow.logins == 0
    params = flow.params
    assert params["error"] == "login_required" and params["state"] == flow.state
    assert "code" not in params


async def test_oidcc_prompt_none_logged_in(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    _, _, first = await op.login_flow(bip, visitor)
    flow, _, second = await op.login_flow(bip, visitor, prompt="none", login=False)
    assert flow.logins == 0 and second["sub"] == first["sub"]


async def test_oidcc_max_age_1(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    _, _, first = await op.login_flow(bip, visitor)
    await age_login_sessions(op, AGENT, 10)  # the login was 10 s ago: older than max_age=1
    flow, _, second = await op.login_flow(bip, visitor, max_age="1")
    assert flow.logins == 1, flow.pages
    assert "auth_time" in second and second["auth_time"] >= first["auth_time"] > time.time() - 60
    assert second["auth_time"] > time.time() - 9  # not the aged session's time
    assert second["sub"] == first["sub"]


async def test_oidcc_max_age_10000(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    _, _, first = await op.login_flow(bip, visitor)
    flow, _, second = await op.login_flow(bip, visitor, max_age="10000")
    assert flow.logins == 0
    assert second["auth_time"] == first["auth_time"]


async def test_oidcc_ensure_request_with_unknown_parameter_succeeds(op: Provider, bip: RP) -> None:
    flow, _, _ = await op.login_flow(bip, extra_param="foobar", another="1")
    assert "extra_param=foobar" in flow.url


async def test_oidcc_id_token_hint(op: Provider, bip: RP) -> None:
    visitor = op.browser()
    _, token, first = await op.login_flow(bip, visitor)
    flow, _, second = await op.login_flow(bip, visitor, prompt="none", id_token_hint=token["id_token"], login=False)
    assert flow.logins == 0 and second["sub"] == first["sub"]


async def test_oidcc_login_hint(op: Provider, bip: RP) -> None:
    flow, _, claims = await op.login_flow(bip, login_hint=AGENT, scope="openid email")
    assert flow.logins == 1 and claims["email"] == AGENT


async def test_oidcc_ui_locales(op: Provider, bip: RP) -> None:
    await op.login_flow(bip, ui_locales="fr-FR en")


async def test_oidcc_claims_locales(op: Provider, bip: RP) -> None:
    await op.login_flow(bip, claims_locales="fr-FR en", scope="openid profile")


async def test_oidcc_ensure_request_with_acr_values_succeeds(op: Provider, bip: RP) -> None:
    await op.login_flow(bip, acr_values="1 2")


# -- codes ----------------------------------------------------------------------------------------

async def _reuse(op: Provider, bip: RP, *, seconds_later: int = 0) -> None:
    from convergences.oidc.models import AuthorizationCode

    flow = await op.authorize(bip)
    first = await op.code_request(flow)
    assert first.status_code == 200, first.text
    access = first.json()["access_token"]
    assert (await op.userinfo(access)).status_code == 200
    if seconds_later:
        # The code was issued (and used) ``seconds_later`` ago; it has not expired yet (60 s).
        shift = timedelta(seconds=seconds_later)
        async with transaction(op.runtime.maker) as db:
            for row in (await db.scalars(select(AuthorizationCode))).all():
                row.created_at -= shift
                row.used_at = row.used_at - shift if row.used_at else None
                row.expires_at -= shift
                assert row.expires_at > utcnow()
    second = await op.code_request(flow)
    assert second.status_code == 400, second.text
    assert second.json()["error"] == "invalid_grant"
    # The tokens obtained with the code are revoked.
    revoked = await op.userinfo(access)
    assert revoked.status_code == 401, revoked.text
    refresh = first.json().get("refresh_token")
    if refresh:
        again = await op.token_request(bip, {"grant_type": "refresh_token", "refresh_token": refresh})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text


async def test_oidcc_codereuse(op: Provider, bip: RP) -> None:
    await _reuse(op, bip)


async def test_oidcc_codereuse_30seconds(op: Provider, bip: RP) -> None:
    await _reuse(op, bip, seconds_later=30)


async def test_oidcc_ensure_registered_redirect_uri(op: Provider, bip: RP) -> None:
    for visitor_logged_in in (False, True):
        visitor = op.browser()
        if visitor_logged_in:
            await visitor.login(AGENT)
        flow = await op.authorize(bip, visitor, redirect_uri="https://bip.test/evil", login=False)
        assert flow.location is None, flow.location
        assert flow.final is not None and flow.final.status_code == 400, flow.describe()
        assert "adresse de retour" in flow.final.text.lower()
        assert "bip.test/evil" not in flow.final.headers.get("location", "")
    # Not even a prefix, another case or a trailing slash.
    for near in (REDIRECT_URI + "/", REDIRECT_URI.upper(), REDIRECT_URI + "?x=1", REDIRECT_URI[:-1]):
        flow = await op.authorize(bip, redirect_uri=near, login=False)
        assert flow.location is None and flow.final is not None and flow.final.status_code == 400, near


async def test_oidcc_ensure_post_request_succeeds(op: Provider, bip: RP) -> None:
    flow, _, claims = await op.login_flow(bip, method="POST")
    assert flow.logins == 1 and claims["nonce"] == flow.nonce


async def test_oidcc_server_client_secret_post(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip)
    token = await op.exchange(flow, auth_method="client_secret_post")
    claims = await op.id_token(bip, token, nonce=flow.nonce)
    assert claims["aud"] in (bip.client_id, [bip.client_id])


async def test_oidcc_request_uri_unsigned(op: Provider, bip: RP) -> None:
    flow = await op.authorize(bip, request_uri="https://bip.test/requests/1.jwt")
    params = flow.params
    assert params["error"] == "request_uri_not_supported" and params["state"] == flow.state
    assert "code" not in params


async def test_oidcc_unsigned_request_object(op: Provider, bip: RP) -> None:
    def b64(data: dict) -> str:  # type: ignore[type-arg]
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    request_object = b64({"alg": "none"}) + "." + b64(
        {"iss": bip.client_id, "aud": ISSUER, "response_type": "code", "client_id": bip.client_id,
         "redirect_uri": REDIRECT_URI, "scope": "openid", "state": "s", "nonce": "n"}) + "."
    flow = await op.authorize(bip, request=request_object)
    params = flow.params
    assert params["error"] == "request_not_supported" and params["state"] == flow.state
    assert "code" not in params


async def test_oidcc_claims_essential(op: Provider, bip: RP) -> None:
    claims_request = json.dumps({"userinfo": {"name": {"essential": True}}})
    _, token, claims = await op.login_flow(bip, scope="openid", claims=claims_request)
    response = await op.userinfo(token["access_token"])
    assert response.status_code == 200, response.text
    info = response.json()
    assert info.get("name") == "Julie Moreau" or claims.get("name") == "Julie Moreau", (info, dict(claims))


async def test_oidcc_refresh_token(op: Provider, bip: RP, register: Register) -> None:
    flow, token, claims = await op.login_flow(bip, scope="openid offline_access")
    assert token.get("refresh_token"), token
    session = op.oauth(bip, scope=None)
    refreshed = dict(await session.refresh_token(f"{ISSUER}/oidc/token", refresh_token=token["refresh_token"]))
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed.get("refresh_token") and refreshed["refresh_token"] != token["refresh_token"]
    assert (await op.userinfo(refreshed["access_token"])).status_code == 200
    if "id_token" in refreshed:  # OIDC Core 12.2: same iss, sub, aud; no nonce requirement
        renewed = await op.id_token(bip, refreshed)
        assert renewed["sub"] == claims["sub"] and renewed["auth_time"] == claims["auth_time"]
    # Bound to its client: another client (even of the same application) cannot use it.
    other = await register("bip", ["https://bip.test/other"])
    stolen = await op.token_request(other, {"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]})
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant", stolen.text


async def test_oidcc_ensure_request_with_valid_pkce_succeeds(op: Provider, bip: RP) -> None:
    flow, _, _ = await op.login_flow(bip, pkce=True)
    assert flow.verifier and "code_challenge_method=S256" in flow.url
