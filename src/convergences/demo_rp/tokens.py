"""The demo relying party's checks of the portal's signed tokens: the JWKS cache, the ID token (OIDC
Core 3.1.3.7) and the back-channel logout token (OpenID Connect Back-Channel Logout 1.0, 2.6).

Signatures and registered claims are checked by joserfc; what is specific to OpenID Connect (``azp``,
``at_hash``, the logout ``events`` claim, no ``nonce``…) is spelt out here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Only asymmetric signatures: "none" and HMAC (keyed with the client secret) are never accepted.
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
                   "Ed25519")
LEEWAY_SECONDS = 60
LOGOUT_TOKEN_MAX_AGE_SECONDS = 5 * 60
JWKS_REFRESH_MIN_SECONDS = 10


class LoginError(Exception):
    """A failed sign-in, with a message for the person (French) and a detail for the log."""

    def __init__(self, message: str, detail: str = "", status: int = 400) -> None:
        super().__init__(detail or message)
        self.message = message
        self.detail = detail
        self.status = status


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hash_for_alg(alg: str) -> Any:
    if alg in ("EdDSA", "Ed25519"):
        return hashlib.sha512
    return {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}.get(alg[-3:], hashlib.sha256)


def token_hash(value: str, alg: str) -> str:
    """``at_hash``/``c_hash``: the left half of the hash of the token, base64url (OIDC Core 3.1.3.6)."""
    digest = _hash_for_alg(alg)(value.encode("ascii")).digest()
    return _b64url(digest[: len(digest) // 2])


def algorithms(metadata: Mapping[str, Any], field_name: str = "id_token_signing_alg_values_supported") -> list[str]:
    """The signing algorithms the portal advertises that this application accepts (asymmetric only)."""
    advertised = metadata.get(field_name) or metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    return [alg for alg in advertised if alg in ASYMMETRIC_ALGS] or ["RS256"]


class JwksCache:
    """The portal's signing keys, fetched on first use; refetched (at most every
    ``JWKS_REFRESH_MIN_SECONDS``) when a token names an unknown ``kid`` (key rotation)."""

    def __init__(self, http: Callable[[], httpx.AsyncClient], jwks_uri: Callable[[], Awaitable[str]]) -> None:
        self._http = http
        self._jwks_uri = jwks_uri
        self._keys: KeySet | None = None
        self.fetched_at = 0.0  # time.monotonic() of the last fetch

    async def keys(self, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        if self._keys is None or (refresh and now - self.fetched_at >= JWKS_REFRESH_MIN_SECONDS):
            url = await self._jwks_uri()
            try:
                async with self._http() as http:
                    response = await http.get(url)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                raise LoginError("Les clés de signature du portail sont indisponibles.", f"jwks {url}: {exc!r}",
                                 status=502) from exc
            self.fetched_at = now
        return self._keys

    async def verify_signature(self, value: str, algorithms: list[str]) -> jwt.Token:
        """Check the JWS signature against the JWKS; an unknown ``kid`` refetches the JWKS once (rotation)."""
        try:
            return jwt.decode(value, await self.keys(), algorithms=algorithms)
        except InvalidKeyIdError:
            return jwt.decode(value, await self.keys(refresh=True), algorithms=algorithms)


async def validate_id_token(jwks: JwksCache, value: str, *, issuer: str, client_id: str, algorithms: list[str],
                            nonce: str, access_token: str | None) -> dict[str, Any]:
    """OIDC Core 3.1.3.7: signature, iss, aud (and azp), exp, iat, nonce; at_hash when present."""
    try:
        token = await jwks.verify_signature(value, algorithms)
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except JoseError as exc:
        raise LoginError("Le jeton d'identité reçu du portail n'est pas valide.", f"id_token: {exc!r}",
                         status=502) from exc
    claims = dict(token.claims)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client_id:
        raise LoginError("Le jeton d'identité reçu du portail n'est pas valide.", f"azp {claims.get('azp')!r}",
                         status=502)
    if "at_hash" in claims and access_token is not None and not hmac.compare_digest(
            str(claims["at_hash"]), token_hash(access_token, token.header["alg"])):
        raise LoginError("Le jeton d'identité reçu du portail n'est pas valide.", "at_hash mismatch",
                         status=502)
    return claims


async def validate_logout_token(jwks: JwksCache, value: str, *, issuer: str, client_id: str,
                                algorithms: list[str], now: float) -> dict[str, Any]:
    """Back-Channel Logout 1.0, 2.6 (all but the ``jti`` replay check, which needs the application's
    memory of the tokens already seen): signature, iss, aud, iat/exp, typ, events, no nonce, sub or sid."""
    try:
        token = await jwks.verify_signature(value, algorithms)
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            iat={"essential": True},
            jti={"essential": True},
            events={"essential": True},
        ).validate(token.claims)
    except JoseError as exc:
        raise LoginError("logout_token invalide", f"logout_token: {exc!r}") from exc
    claims = token.claims
    typ = str(token.header.get("typ", "")).lower()
    if typ and typ not in ("logout+jwt", "application/logout+jwt", "jwt"):
        raise LoginError("logout_token invalide", f"typ {typ!r}")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LoginError("logout_token invalide", "events lacks the back-channel logout event")
    if "nonce" in claims:
        raise LoginError("logout_token invalide", "a logout token carries no nonce")
    if not claims.get("sub") and not claims.get("sid"):
        raise LoginError("logout_token invalide", "neither sub nor sid")
    if "exp" not in claims and claims["iat"] < now - LOGOUT_TOKEN_MAX_AGE_SECONDS:
        raise LoginError("logout_token invalide", "too old (iat) and no exp")
    return claims
