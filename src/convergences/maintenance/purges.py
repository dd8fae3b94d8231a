"""Retention purges: each deletes what its rule says is no longer needed and returns how many rows.

Each takes ``(db, now, settings)``: the caller owns the transaction and the clock (tests drive time with
``convergences maintenance --now``). Running one twice deletes nothing the second time. The rules are
listed in docs/data-minimisation.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from convergences.accounts.models import Invitation
from convergences.mail.models import OutboxMail
from convergences.mail.services import MAX_ATTEMPTS as MAIL_MAX_ATTEMPTS
from convergences.oidc.models import AuthorizationCode, LogoutDelivery, OAuthToken, RpSession
from convergences.oidc.services import LogoutOutbox
from convergences.security.models import LoginSession, LoginThrottle
from convergences.settings import Settings


async def _delete(db: AsyncSession, stmt: Any) -> int:
    return int((await db.execute(stmt)).rowcount or 0)


async def purge_invitations(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Invitations expired, used or revoked more than ``retention.invitation_days`` ago."""
    cutoff = now - timedelta(days=settings.retention.invitation_days)
    return await _delete(db, delete(Invitation).where(or_(
        Invitation.expires_at < cutoff, Invitation.used_at < cutoff, Invitation.revoked_at < cutoff)))


async def purge_login_sessions(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Login sessions past their absolute or idle timeout (they can no longer be used)."""
    idle = timedelta(minutes=settings.sessions.idle_minutes)
    return await _delete(db, delete(LoginSession).where(or_(
        LoginSession.expires_at <= now, LoginSession.last_seen_at <= now - idle)))


async def purge_login_throttles(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Throttling counters (an email or an IP) with no failure for ``retention.throttle_days`` and no block."""
    cutoff = now - timedelta(days=settings.retention.throttle_days)
    return await _delete(db, delete(LoginThrottle).where(
        LoginThrottle.last_failure_at < cutoff,
        or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now)))


async def purge_authorization_codes(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Codes expired for ``retention.oidc_days``: kept that long so a replayed code is still recognised
    (and revokes what it gave) rather than answered as unknown."""
    cutoff = now - timedelta(days=settings.retention.oidc_days)
    return await _delete(db, delete(AuthorizationCode).where(AuthorizationCode.expires_at < cutoff))


async def purge_tokens(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Access/refresh tokens expired (and their refresh family expired) for ``retention.oidc_days``.

    A rotated refresh token must outlive its own expiry while its family lives: its reuse revokes the family."""
    cutoff = now - timedelta(days=settings.retention.oidc_days)
    return await _delete(db, delete(OAuthToken).where(
        OAuthToken.expires_at < cutoff,
        or_(OAuthToken.family_expires_at.is_(None), OAuthToken.family_expires_at < cutoff)))


async def purge_rp_sessions(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Applications' sessions ended ``retention.oidc_days`` ago, or never ended but older than any token
    or login session they could stand for (refresh lifetime + the same margin)."""
    cutoff = now - timedelta(days=settings.retention.oidc_days)
    stale = cutoff - timedelta(days=settings.oidc.refresh_days, hours=settings.sessions.absolute_hours)
    live_login = select(LoginSession.id).where(LoginSession.id == RpSession.login_session_id).exists()
    return await _delete(db, delete(RpSession).where(or_(
        RpSession.ended_at < cutoff,
        and_(RpSession.ended_at.is_(None), RpSession.created_at < stale, ~live_login))))


async def purge_logout_deliveries(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Back-channel logout tokens delivered, or abandoned after every retry, ``retention.oidc_days`` ago."""
    cutoff = now - timedelta(days=settings.retention.oidc_days)
    return await _delete(db, delete(LogoutDelivery).where(or_(
        LogoutDelivery.delivered_at < cutoff,
        and_(LogoutDelivery.delivered_at.is_(None), LogoutDelivery.attempts >= LogoutOutbox.MAX_ATTEMPTS,
             LogoutDelivery.created_at < cutoff))))


async def purge_outbox_mail(db: AsyncSession, now: datetime, settings: Settings) -> int:
    """Mail delivered (or abandoned after every retry) ``retention.mail_days`` ago."""
    cutoff = now - timedelta(days=settings.retention.mail_days)
    return await _delete(db, delete(OutboxMail).where(or_(
        OutboxMail.sent_at < cutoff,
        and_(OutboxMail.sent_at.is_(None), OutboxMail.attempts >= MAIL_MAX_ATTEMPTS,
             OutboxMail.created_at < cutoff))))
