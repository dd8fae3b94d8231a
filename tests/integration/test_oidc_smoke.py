"""Smoke test of the OIDC provider through the real login form (the conformance suite is in tests/oidc)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwk, jwt

from convergences.oidc.services import register_client


async def test_code_flow_with_pkce_through_the_login_form(make_browser, runtime) -> None:
    client_id, secret = await register_client(runtime, application_slug="bip",
                                              redirect_uris=["https://bip.test/callback"], alg="RS256",
                                              allow_refresh=True)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": "https://bip.test/callback",
                       "scope": "openid profile email", "state": "s1", "nonce": "n1",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    agent = await make_browser()
    first = await agent.get("/oidc/authorize?" + query)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?")
    next_url = parse_qs(urlsplit(first.headers["location"]).query)["next"][0]
    login = await agent.post("/login", {"email": "agent@bellerive.example", "password": __import__(
        "convergences.seed", fromlist=["DEMO_PASSWORD"]).DEMO_PASSWORD, "next": next_url})
    assert login.status_code == 303 and login.headers["location"] == next_url
    back = await agent.get(next_url)
    assert back.status_code == 303, back.text[:500]
    params = parse_qs(urlsplit(back.headers["location"]).query)
    assert params["state"] == ["s1"]
    token = await agent.client.post("/oidc/token", data={
        "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": "https://bip.test/callback",
        "code_verifier": verifier}, auth=(client_id, secret))
    assert token.status_code == 200, token.text
    body = token.json()
    keyset = jwk.KeySet.import_key_set((await agent.client.get("/oidc/jwks")).json())
    claims = jwt.decode(body["id_token"], keyset, algorithms=["RS256"]).claims
    assert claims["nonce"] == "n1" and claims["aud"] == client_id and claims["email"] == "agent@bellerive.example"
    assert claims["employer"]["siret"] == "21930999900015"
    info = await agent.client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.json()["sub"] == claims["sub"]
    again = await agent.client.post("/oidc/token", data={
        "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": "https://bip.test/callback",
        "code_verifier": verifier}, auth=(client_id, secret))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    revoked = await agent.client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert revoked.status_code == 401
