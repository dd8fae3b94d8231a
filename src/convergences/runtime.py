"""What every service needs, built once per process: settings, database, security helpers, mail."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from convergences.db import create_engine, create_sessionmaker
from convergences.mail.services import Mailer
from convergences.security.passwords import PasswordService
from convergences.security.sessions import SessionManager
from convergences.security.throttle import Throttle
from convergences.security.tokens import Signer
from convergences.settings import Settings

TEMPLATES_DIR = Path(__file__).parent / "templates"


def mail_environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    maker: async_sessionmaker[AsyncSession]
    passwords: PasswordService
    sessions: SessionManager
    throttle: Throttle
    mailer: Mailer
    invitations: Signer
    # Background deliveries in flight (strong references, so none is garbage-collected mid-way).
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Values read once from the database and constant afterwards (e.g. the OIDC subject salt).
    cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings.database)
        maker = create_sessionmaker(engine)
        return cls(
            settings=settings, engine=engine, maker=maker,
            passwords=PasswordService(settings.passwords),
            sessions=SessionManager(settings.sessions, settings.secret_key),
            throttle=Throttle(settings.throttle),
            mailer=Mailer(settings.mail, maker, mail_environment(), keep_bodies=settings.demo),
            invitations=Signer(settings.secret_key, "convergences.invitation"),
        )

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.mailer.wait_quietly()
        await self.engine.dispose()
