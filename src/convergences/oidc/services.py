"""The provider's rules: clients, who may get a token for which employer, codes, tokens, claims, logout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Account
from convergences.applications.models import Application, Grant, Subscription
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership
from convergences.leasing import backoff, claim_due
from convergences.oidc import keys
from convergences.oidc.models import AuthorizationCode, Client, LogoutDelivery, OAuthToken, RpSession, SubjectSalt
from convergences.runtime import Runtime
from convergences.security.models import LoginSession
from convergences.security.tokens import digest

log = logging.getLogger(__name__)
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SUPPORTED_SCOPES = ("openid", "profile", "email", "offline_access")


class OAuthError(Exception):
    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Eligibility:
    """Employers for which an account holds a right to the client's application."""

    application: Application
    employers: list[tuple[Employer, str | None]]  # (employer, application role)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_client_secret(rt: Runtime, secret: str) -> str:
    """Client secrets are 256 random bits generated here, not passwords: a keyed SHA-256 (HMAC with a key
    derived from the server secret) is as safe to store as argon2id for them, and keeps the token
    endpoint from spending an argon2id verification per request."""
    mac = hmac.new(_client_secret_key(rt), secret.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256${mac}"


def client_secret_matches(rt: Runtime, stored: str | None, secret: str) -> bool:
    if not stored or not secret:
        return False
    return hmac.compare_digest(stored, hash_client_secret(rt, secret))


def _client_secret_key(rt: Runtime) -> bytes:
    return hmac.new(rt.settings.secret_key.encode(), b"convergences.oidc.client-secret", hashlib.sha256).digest()


async def register_client(rt: Runtime, *, application_slug: str, redirect_uris: list[str], public: bool = False,
                          backchannel_logout_uri: str | None = None, post_logout_redirect_uris: list[str] = (),
                          alg: str = "ES256", allow_refresh: bool = False,
                          claims: list[str] = ("employer", "roles"), pairwise: bool = False,
                          name: str | None = None, client_id: str | None = None,
                          client_secret: str | None = None) -> tuple[str, str | None]:
    """Register a client; return (client_id, client_secret) — the secret is shown once, stored hashed."""
    if alg not in keys.ALGORITHMS:
        raise ValueError(f"unsupported alg {alg}")
    secret = None if public else (client_secret or new_secret())
    secret_hash = hash_client_secret(rt, secret) if secret else None
    async with transaction(rt.maker) as db:
        application = await db.scalar(select(Application).where(Application.slug == application_slug))
        if application is None:
            raise ValueError(f"unknown application {application_slug}")
        client = Client(client_id=client_id or "cvg-" + secrets.token_urlsafe(12), secret_hash=secret_hash,
                        application_id=application.id, name=name or application.name,
                        redirect_uris=list(redirect_uris), post_logout_redirect_uris=list(post_logout_redirect_uris),
                        backchannel_logout_uri=backchannel_logout_uri, is_public=public,
                        allow_refresh=allow_refresh, id_token_alg=alg, claims=list(claims), pairwise_sub=pairwise)
        db.add(client)
    return client.client_id, secret


async def find_client(db: AsyncSession, client_id: str | None) -> Client | None:
    if not client_id or len(client_id) > 100:
        return None
    return await db.scalar(select(Client).where(Client.client_id == client_id))


async def eligibility(db: AsyncSession, client: Client, account_id: int) -> Eligibility:
    """No right, no token: active memberships with a grant for the application, still subscribed."""
    application = await db.get(Application, client.application_id)
    assert application is not None
    rows = (await db.execute(
        select(Employer, Grant.role)
        .join(Membership, Membership.employer_id == Employer.id)
        .join(Grant, Grant.membership_id == Membership.id)
        .join(Subscription, (Subscription.employer_id == Employer.id)
              & (Subscription.application_id == Grant.application_id))
        .where(Membership.account_id == account_id, Membership.suspended_at.is_(None),
               Grant.application_id == application.id)
        .order_by(Employer.name))).all()
    return Eligibility(application, [(employer, role) for employer, role in rows])


async def referents_of(db: AsyncSession, account_id: int) -> list[tuple[str, str, str]]:
    """(employer name, référent name, email) for the employers of this account."""
    employer_ids = select(Membership.employer_id).where(Membership.account_id == account_id)
    rows = (await db.execute(
        select(Employer.name, Account.given_name, Account.family_name, Account.email)
        .join(Membership, Membership.employer_id == Employer.id).join(Account, Account.id == Membership.account_id)
        .where(Membership.employer_id.in_(employer_ids), Membership.is_referent.is_(True),
               Membership.suspended_at.is_(None)).order_by(Employer.name, Account.family_name))).all()
    return [(e, f"{g} {f}", m) for e, g, f, m in rows]


async def subject(db: AsyncSession, rt: Runtime, client: Client, account_id: int) -> str:
    """A stable opaque ``sub`` per person (or per person and application when pairwise).

    Keyed by the subject salt (created once in the database), not by the server secret: rotating the
    secret after an incident must not change anybody's ``sub`` in the applications."""
    key = await _subject_key(db, rt)
    base = f"account:{account_id}" + (f"|client:{client.client_id}" if client.pairwise_sub else "")
    mac = hmac.new(key, base.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


async def _subject_key(db: AsyncSession, rt: Runtime) -> bytes:
    cached = rt.cache.get("subject_key")
    if isinstance(cached, bytes):
        return cached
    row = await db.get(SubjectSalt, 1)
    if row is None:  # a database made without the migrations (tests' create_all)
        row = SubjectSalt(id=1, salt=secrets.token_urlsafe(48))
        db.add(row)
        await db.flush()
    rt.cache["subject_key"] = row.salt.encode()
    return rt.cache["subject_key"]  # type: ignore[no-any-return]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def user_claims(account: Account, scope: set[str], client: Client, employer: Employer | None,
                role: str | None, application: Application | None) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "profile" in scope:
        claims.update(name=account.full_name, given_name=account.given_name, family_name=account.family_name)
    if "email" in scope:
        claims.update(email=account.email, email_verified=account.activated_at is not None)
    if employer is not None and "employer" in client.claims:
        claims["employer"] = {"siret": employer.siret, "name": employer.name}
    if "roles" in client.claims and application is not None:
        claims["roles"] = [role] if role else []
    return claims


def requested_claims(claims_request: dict[str, Any] | None, target: str, given: dict[str, Any],
                     account: Account, client: Client, employer: Employer | None, role: str | None,
                     application: Application | None) -> dict[str, Any]:
    """Claims asked for by name through the "claims" parameter (e.g. an essential ``name``) that the
    scopes did not already give; only standard profile/email claims and the client's own claims."""
    wanted = (claims_request or {}).get(target)
    if not isinstance(wanted, dict):
        return {}
    available = user_claims(account, {"profile", "email"}, client, employer, role, application)
    return {name: available[name] for name in wanted if name in available and name not in given}


class ProviderService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @property
    def issuer(self) -> str:
        return self.rt.settings.base_url

    # -- authorization -------------------------------------------------------------------------

    async def issue_code(self, db: AsyncSession, client: Client, account_id: int, employer_id: int,
                         redirect_uri: str, scope: str, nonce: str | None, code_challenge: str | None,
                         auth_time: datetime, login_session_id: str,
                         claims_request: dict[str, Any] | None) -> str:
        code = secrets.token_urlsafe(32)
        rp = await db.scalar(select(RpSession).where(RpSession.login_session_id == login_session_id,
                                                     RpSession.client_pk == client.id,
                                                     RpSession.ended_at.is_(None)))
        if rp is None:
            rp = RpSession(sid=secrets.token_urlsafe(24), client_pk=client.id, account_id=account_id,
                           login_session_id=login_session_id, employer_id=employer_id)
            db.add(rp)
        rp.employer_id = employer_id
        login = await db.get(LoginSession, login_session_id)
        rp.amr = login.amr if login is not None else rp.amr
        db.add(AuthorizationCode(code_hash=digest(code), client_pk=client.id, account_id=account_id,
                                 employer_id=employer_id, redirect_uri=redirect_uri, scope=scope, nonce=nonce,
                                 code_challenge=code_challenge, auth_time=auth_time, sid=rp.sid,
                                 claims_request=claims_request,
                                 expires_at=utcnow() + timedelta(seconds=self.rt.settings.oidc.code_seconds)))
        return code

    # -- token endpoint ------------------------------------------------------------------------

    async def authenticate_client(self, db: AsyncSession, client_id: str | None, secret: str | None) -> Client:
        client = await find_client(db, client_id)
        if client is None:
            raise OAuthError("invalid_client", "Client inconnu ou authentification incorrecte.", 401)
        if client.is_public:
            if secret:
                raise OAuthError("invalid_client", "Un client public n'a pas de secret.", 401)
            return client
        if not client_secret_matches(self.rt, client.secret_hash, secret or ""):
            raise OAuthError("invalid_client", "Client inconnu ou authentification incorrecte.", 401)
        return client

    async def exchange_code(self, client: Client, code: str, redirect_uri: str | None,
                            verifier: str | None) -> dict[str, Any]:
        """Redeem a code once. The code is burnt first (atomically), so a failed or concurrent second
        attempt never redeems it; a replay revokes what the code gave (RFC 6749 §4.1.2)."""
        code_hash = digest(code)
        async with transaction(self.rt.maker) as db:
            row = await db.get(AuthorizationCode, code_hash)
            if row is None or row.client_pk != client.id:
                raise OAuthError("invalid_grant", "Code inconnu.")
            claimed = (await db.execute(update(AuthorizationCode).where(
                AuthorizationCode.code_hash == code_hash, AuthorizationCode.used_at.is_(None))
                .values(used_at=utcnow()))).rowcount == 1  # type: ignore[attr-defined]
        if not claimed:
            async with transaction(self.rt.maker) as db:
                # What the code gave, and what was rotated from it since (same refresh family).
                families = select(OAuthToken.family).where(OAuthToken.code_hash == code_hash,
                                                           OAuthToken.family.is_not(None)).scalar_subquery()
                await db.execute(update(OAuthToken).where(
                    (OAuthToken.code_hash == code_hash) | OAuthToken.family.in_(families),
                    OAuthToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
            raise OAuthError("invalid_grant", "Ce code a déjà été utilisé.")
        async with transaction(self.rt.maker) as db:
            row = await db.get(AuthorizationCode, code_hash)
            assert row is not None
            if row.expires_at <= utcnow():
                raise OAuthError("invalid_grant", "Ce code a expiré.")
            if redirect_uri != row.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri différent de celui de la demande.")
            if row.code_challenge is None:
                if verifier:
                    raise OAuthError("invalid_grant", "code_verifier envoyé sans code_challenge.")
                if client.is_public:
                    raise OAuthError("invalid_grant", "PKCE obligatoire pour un client public.")
            elif not verifier or not hmac.compare_digest(s256(verifier), row.code_challenge):
                raise OAuthError("invalid_grant", "code_verifier incorrect.")
            elig = await eligibility(db, client, row.account_id)
            role = next((r for e, r in elig.employers if e.id == row.employer_id), "missing")
            if role == "missing":
                raise OAuthError("invalid_grant", "Le droit d'accès a été retiré.")
            return await self._issue(db, client, row.account_id, row.employer_id, row.scope, row.auth_time,
                                     row.sid, nonce=row.nonce, code_hash=row.code_hash, role=role,
                                     application=elig.application, claims_request=row.claims_request)

    async def refresh(self, client: Client, refresh_token: str, scope: str | None) -> dict[str, Any]:
        """Rotate a refresh token; presenting a rotated one revokes the whole family."""
        token_hash = digest(refresh_token)
        async with transaction(self.rt.maker) as db:
            row = await db.scalar(select(OAuthToken).where(OAuthToken.token_hash == token_hash,
                                                           OAuthToken.kind == "refresh"))
            if row is None or row.client_pk != client.id:
                raise OAuthError("invalid_grant", "Jeton de rafraîchissement inconnu.")
            family = row.family
            now = utcnow()
            claimed = (await db.execute(update(OAuthToken).where(
                OAuthToken.id == row.id, OAuthToken.revoked_at.is_(None)).values(revoked_at=now))
            ).rowcount == 1  # type: ignore[attr-defined]
        if not claimed:
            async with transaction(self.rt.maker) as db:
                await db.execute(update(OAuthToken).where(OAuthToken.family == family,
                                                          OAuthToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
            raise OAuthError("invalid_grant", "Jeton de rafraîchissement déjà utilisé : session révoquée.")
        async with transaction(self.rt.maker) as db:
            row = await db.scalar(select(OAuthToken).where(OAuthToken.token_hash == token_hash))
            assert row is not None
            if row.expires_at <= now or (row.family_expires_at and row.family_expires_at <= now):
                raise OAuthError("invalid_grant", "Jeton de rafraîchissement expiré.")
            granted = set(row.scope.split())
            if scope and not set(scope.split()) <= granted:
                raise OAuthError("invalid_scope", "Portée plus large que celle accordée.")
            elig = await eligibility(db, client, row.account_id)
            role = next((r for e, r in elig.employers if e.id == row.employer_id), "missing")
            if role == "missing":
                raise OAuthError("invalid_grant", "Le droit d'accès a été retiré.")
            return await self._issue(db, client, row.account_id, row.employer_id, scope or row.scope,
                                     row.auth_time, row.sid, family=row.family,
                                     family_expires_at=row.family_expires_at, role=role,
                                     application=elig.application, claims_request=row.claims_request)

    async def _issue(self, db: AsyncSession, client: Client, account_id: int, employer_id: int, scope: str,
                     auth_time: datetime, sid: str, *, role: str | None, application: Application,
                     nonce: str | None = None, code_hash: str | None = None, family: str | None = None,
                     family_expires_at: datetime | None = None,
                     claims_request: dict[str, Any] | None = None) -> dict[str, Any]:
        settings = self.rt.settings.oidc
        now = utcnow()
        access = secrets.token_urlsafe(32)
        if client.allow_refresh:
            # Access tokens share the refresh family: reuse detection revokes them too.
            family = family or secrets.token_urlsafe(16)
            family_expires_at = family_expires_at or now + timedelta(days=settings.refresh_days)
        common = {"client_pk": client.id, "account_id": account_id, "employer_id": employer_id, "scope": scope,
                  "auth_time": auth_time, "sid": sid, "code_hash": code_hash, "family": family,
                  "claims_request": claims_request}
        db.add(OAuthToken(kind="access", token_hash=digest(access),
                          expires_at=now + timedelta(seconds=settings.access_token_seconds), **common))
        account = await db.get(Account, account_id)
        employer = await db.get(Employer, employer_id)
        assert account is not None and employer is not None
        scopes = set(scope.split())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": await subject(db, self.rt, client, account_id), "aud": client.client_id,
            "iat": int(now.timestamp()), "exp": int(now.timestamp()) + settings.id_token_seconds,
            "auth_time": int(auth_time.timestamp()), "amr": await _amr(db, sid), "sid": sid, "azp": client.client_id,
            "at_hash": _half_hash(access),
        }
        if nonce:
            claims["nonce"] = nonce
        claims.update(user_claims(account, scopes, client, employer, role, application))
        claims.update(requested_claims(claims_request, "id_token", claims, account, client, employer, role,
                                       application))
        key = await keys.signing_key(db, self.rt.settings, client.id_token_alg)
        response: dict[str, Any] = {
            "access_token": access, "token_type": "Bearer", "expires_in": settings.access_token_seconds,
            "scope": scope, "id_token": keys.sign(self.rt.settings, key, claims),
        }
        if client.allow_refresh:
            refresh = secrets.token_urlsafe(32)
            db.add(OAuthToken(kind="refresh", token_hash=digest(refresh), family_expires_at=family_expires_at,
                              expires_at=family_expires_at or now, **common))
            response["refresh_token"] = refresh
        return response

    # -- resource side -------------------------------------------------------------------------

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        async with transaction(self.rt.maker) as db:
            row = await self._live_token(db, access_token, "access")
            if row is None:
                raise OAuthError("invalid_token", "Jeton d'accès invalide ou expiré.", 401)
            client = await db.get(Client, row.client_pk)
            account = await db.get(Account, row.account_id)
            employer = await db.get(Employer, row.employer_id)
            assert client is not None and account is not None
            elig = await eligibility(db, client, row.account_id)
            role = next((r for e, r in elig.employers if e.id == row.employer_id), "missing")
            if role == "missing":
                raise OAuthError("invalid_token", "Le droit d'accès a été retiré.", 401)
            claims = {"sub": await subject(db, self.rt, client, account.id),
                      **user_claims(account, set(row.scope.split()), client, employer, role, elig.application)}
            claims.update(requested_claims(row.claims_request, "userinfo", claims, account, client, employer,
                                           role, elig.application))
            return claims

    async def _live_token(self, db: AsyncSession, token: str, kind: str | None = None) -> OAuthToken | None:
        query = select(OAuthToken).where(OAuthToken.token_hash == digest(token))
        if kind:
            query = query.where(OAuthToken.kind == kind)
        row = await db.scalar(query)
        if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
            return None
        return row

    async def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: revoke if it is this client's token; revoking a refresh token ends its family."""
        async with transaction(self.rt.maker) as db:
            row = await db.scalar(select(OAuthToken).where(OAuthToken.token_hash == digest(token)))
            if row is None or row.client_pk != client.id:
                return
            now = utcnow()
            if row.kind == "refresh" and row.family:
                await db.execute(update(OAuthToken).where(OAuthToken.family == row.family,
                                                          OAuthToken.revoked_at.is_(None)).values(revoked_at=now))
            elif row.revoked_at is None:
                row.revoked_at = now

    async def introspect(self, client: Client, token: str) -> dict[str, Any]:
        async with transaction(self.rt.maker) as db:
            row = await self._live_token(db, token)
            if row is None or row.client_pk != client.id:
                return {"active": False}
            employer = await db.get(Employer, row.employer_id)
            return {"active": True, "client_id": client.client_id, "scope": row.scope,
                    "sub": await subject(db, self.rt, client, row.account_id), "token_type": row.kind,
                    "exp": int(row.expires_at.timestamp()), "iat": int(row.created_at.timestamp()),
                    "iss": self.issuer, "aud": client.client_id,
                    **({"employer": {"siret": employer.siret, "name": employer.name}}
                       if employer and "employer" in client.claims else {})}

    # -- logout --------------------------------------------------------------------------------

    async def end_rp_sessions(self, db: AsyncSession, *, account_id: int, login_session_id: str | None = None,
                              application_id: int | None = None, employer_id: int | None = None) -> int:
        """End the applications' sessions of a person, revoke their tokens and queue back-channel
        logout tokens (caller's transaction). Scope: one login session, or the whole account, optionally
        one application and/or one employer. Return how many deliveries were queued."""
        query = select(RpSession, Client).join(Client, Client.id == RpSession.client_pk).where(
            RpSession.account_id == account_id, RpSession.ended_at.is_(None))
        if login_session_id is not None:
            query = query.where(RpSession.login_session_id == login_session_id)
        if application_id is not None:
            query = query.where(Client.application_id == application_id)
        if employer_id is not None:
            query = query.where(RpSession.employer_id == employer_id)
        now = utcnow()
        queued = 0
        for rp, client in (await db.execute(query)).all():
            rp.ended_at = now
            await db.execute(update(OAuthToken).where(OAuthToken.sid == rp.sid, OAuthToken.client_pk == client.id,
                                                      OAuthToken.revoked_at.is_(None)).values(revoked_at=now))
            if client.backchannel_logout_uri:
                key = await keys.signing_key(db, self.rt.settings, client.id_token_alg)
                token = keys.sign(self.rt.settings, key, {
                    "iss": self.issuer, "aud": client.client_id, "iat": int(now.timestamp()),
                    "exp": int(now.timestamp()) + 120, "jti": secrets.token_urlsafe(16),
                    "sub": await subject(db, self.rt, client, account_id), "sid": rp.sid,
                    "events": {BACKCHANNEL_EVENT: {}}}, typ="logout+jwt")
                db.add(LogoutDelivery(client_pk=client.id, uri=client.backchannel_logout_uri, logout_token=token,
                                      next_attempt_at=now))
                queued += 1
        return queued


def _half_hash(token: str) -> str:
    digest_ = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest_[: len(digest_) // 2]).rstrip(b"=").decode()


class LogoutOutbox:
    """Delivers queued back-channel logout tokens with retries (exponential backoff)."""

    MAX_ATTEMPTS = 10

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def deliver_pending(self) -> int:
        """Send what is due; each row is leased first (:mod:`convergences.leasing`), so concurrent deliverers
        (several processes, ``convergences maintenance``) never send the same logout token twice."""
        delivered = 0
        work = []
        for delivery_id, _ in await claim_due(self.rt.maker, LogoutDelivery, LogoutDelivery.delivered_at,
                                              max_attempts=self.MAX_ATTEMPTS):
            async with transaction(self.rt.maker) as db:
                row = await db.get(LogoutDelivery, delivery_id)
                if row is not None:
                    work.append((delivery_id, row.uri, row.logout_token))
        async with httpx.AsyncClient(timeout=5, follow_redirects=False) as http:
            for delivery_id, uri, token in work:
                error = None
                try:
                    response = await http.post(uri, data={"logout_token": token},
                                               headers={"Cache-Control": "no-store"})
                    if response.status_code != 200:
                        error = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                async with transaction(self.rt.maker) as db:
                    row = await db.get(LogoutDelivery, delivery_id)
                    if row is None:
                        continue
                    row.attempts += 1
                    if error is None:
                        row.delivered_at = utcnow()
                        delivered += 1
                    else:
                        row.last_error = error
                        row.next_attempt_at = utcnow() + backoff(row.attempts)
                        log.warning("back-channel logout %s not delivered: %s", delivery_id, error)
        return delivered


def kick_logouts(rt: Runtime) -> None:
    """Deliver queued back-channel logouts in the background (after the queuing transaction committed);
    what fails is retried by ``convergences maintenance``."""
    import asyncio

    task = asyncio.get_running_loop().create_task(LogoutOutbox(rt).deliver_pending())
    rt.tasks.add(task)
    task.add_done_callback(rt.tasks.discard)


async def _amr(db: AsyncSession, sid: str) -> list[str]:
    """The authentication methods of the login behind this application session (RFC 8176)."""
    amr = await db.scalar(select(RpSession.amr).where(RpSession.sid == sid, RpSession.amr.is_not(None)).limit(1))
    return amr.split() if amr else ["pwd"]
