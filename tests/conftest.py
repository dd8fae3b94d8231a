"""Shared fixtures: a real SQLite file (and a real PostgreSQL cluster), the app, a real SMTP server.

``db_url`` is parametrized over both backends: every test that uses the app runs on SQLite and on a
throwaway PostgreSQL 15 cluster started with initdb/pg_ctl (see ``tests/pg.py``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

import convergences.models  # noqa: F401  (registers every table)
from convergences.app import create_app
from convergences.db import Base
from convergences.runtime import Runtime
from convergences.seed import seed_demo
from convergences.settings import DatabaseSettings, MailSettings, Settings
from tests.helpers import Browser
from tests.mailbox import Mailbox
from tests.pg import PostgresCluster

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster | None]:
    # Not under pytest's private temp root: the postgres user must be able to reach it.
    import tempfile

    cluster = PostgresCluster.start(Path(tempfile.mkdtemp(prefix="convergences-pg-")))
    if cluster is None:
        yield None
        return
    try:
        yield cluster
    finally:
        cluster.stop()


def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh database for ``request.param`` ("sqlite" or "postgresql")."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/convergences.db"
    cluster: PostgresCluster | None = request.getfixturevalue("pg_cluster")
    if cluster is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are required under CI=true")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: PostgreSQL tests skipped")
    return cluster.create_database(f"t{os.getpid()}_{next(_counter)}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def settings(db_url: str, mailbox: Mailbox) -> Settings:
    return Settings(secret_key="test-secret-key-" + "x" * 32, base_url="http://testserver.local",
                    database=DatabaseSettings(url=db_url),
                    mail=MailSettings(smtp_host="127.0.0.1", smtp_port=mailbox.port,
                                      sender="Convergences <ne-pas-repondre@cig-demo.fr>"))


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The test's own view of the database (schema, demo seed, assertions).

    The app builds its own Runtime: Litestar's test client runs the app on another event loop, and a
    connection pool must not cross loops.
    """
    rt = Runtime.build(settings)
    async with rt.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await seed_demo(rt)
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def browser(app: Litestar) -> AsyncIterator[Browser]:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        yield Browser(client)


@pytest.fixture
async def make_browser(app: Litestar) -> AsyncIterator[object]:
    """Several independent visitors of the same app, each with its own cookie jar.

    They share one test client (one event loop serving the app), as real browsers share one server.
    """
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:

        async def factory() -> Browser:
            return Browser(client, own_cookies=True)

        yield factory


def settings_with(settings: Settings, **changes: object) -> Settings:
    return replace(settings, **changes)  # type: ignore[arg-type]
