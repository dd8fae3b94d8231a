"""The demo relying party's sessions, in memory (a demo: a real application keeps them in its own store)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

PENDING_LOGIN_SECONDS = 10 * 60
SESSION_SECONDS = 12 * 3600


@dataclass
class PendingLogin:
    nonce: str
    code_verifier: str
    created: float = field(default_factory=time.time)


@dataclass
class Session:
    key: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    created: float = field(default_factory=time.time)
    pending: dict[str, PendingLogin] = field(default_factory=dict)  # state -> login in progress
    id_token: str | None = None
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    userinfo: dict[str, Any] = field(default_factory=dict)
    sub: str | None = None
    sid: str | None = None
    ended: str | None = None  # "backchannel" once the portal has ended it
    ended_at: float | None = None
    logout_state: str | None = None

    @property
    def logged_in(self) -> bool:
        return self.sub is not None and self.ended is None

    @property
    def claims(self) -> dict[str, Any]:
        """userinfo completed by the ID token (the ID token wins for the protocol claims)."""
        return {**self.userinfo, **self.id_token_claims}


def end_session(session: Session, reason: str) -> None:
    """Forget what the portal said about the person; keep a tombstone to tell them why."""
    session.id_token, session.id_token_claims, session.userinfo = None, {}, {}
    session.sub = session.sid = None
    session.ended, session.ended_at = reason, time.time()


class SessionStore:
    """The sessions by cookie value, and the back-channel logout tokens already seen (``jti`` → until when
    to remember it)."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.seen_jti: dict[str, float] = {}

    def get(self, key: str | None) -> Session | None:
        self.purge()
        return self.sessions.get(key) if key else None

    def new(self) -> Session:
        session = Session(key=secrets.token_urlsafe(32))
        self.sessions[session.key] = session
        return session

    def purge(self) -> None:
        now = time.time()
        for key in [k for k, s in self.sessions.items() if now - s.created > SESSION_SECONDS]:
            del self.sessions[key]
        for jti in [j for j, expires in self.seen_jti.items() if expires < now]:
            del self.seen_jti[jti]

    def end_matching(self, sub: str | None, sid: str | None, reason: str) -> int:
        """End every signed-in session of that ``sid`` and/or ``sub`` (either may be missing); returns how many."""
        ended = 0
        for session in self.sessions.values():
            if not session.logged_in:
                continue
            if sid and session.sid != sid:
                continue
            if sub and session.sub != sub:
                continue
            end_session(session, reason)
            ended += 1
        return ended
