"""`alembic upgrade head` on an empty SQLite file and an empty PostgreSQL database, then no drift
between the models and the migrations (alembic's own autogenerate comparison)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

import convergences.models  # noqa: F401  (registers every table)
from convergences.cli import alembic_config, migrate
from convergences.db import Base


def _compare(connection: Any, metadata: MetaData = Base.metadata) -> tuple[list[Any], str | None, set[str]]:
    context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                           "compare_server_default": True})
    diff = compare_metadata(context, metadata)
    return diff, context.get_current_revision(), set(inspect(connection).get_table_names())


async def _inspect(url: str, metadata: MetaData = Base.metadata) -> tuple[list[Any], str | None, set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare, metadata)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _foreign_keys_enforced(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            try:
                await connection.execute(text(
                    "INSERT INTO membership (account_id, employer_id, is_referent, is_authority, created_at) "
                    "VALUES (424242, 434343, false, false, CURRENT_TIMESTAMP)"))
            except Exception:  # noqa: BLE001 - the driver's IntegrityError, whatever its class
                return True
            return False
    finally:
        await engine.dispose()


def test_upgrade_head_on_an_empty_database_has_no_drift(db_url: str) -> None:
    # db_url is a brand-new SQLite file, or a brand-new PostgreSQL database.
    assert asyncio.run(_tables(db_url)) == set()
    migrate(db_url)
    diff, revision, tables = asyncio.run(_inspect(db_url))
    assert diff == [], f"models and migrations differ: {diff}"
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert revision == head
    assert set(Base.metadata.tables) <= tables
    assert tables - set(Base.metadata.tables) == {"alembic_version"}
    assert asyncio.run(_foreign_keys_enforced(db_url))
    # Running it again is a no-op.
    migrate(db_url)
    assert asyncio.run(_inspect(db_url))[0] == []
    # The comparison does see drift: a model column the migrations lack is reported.
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["account"].append_column(Column("nickname", String(40), nullable=True))
    diff = asyncio.run(_inspect(db_url, drifted))[0]
    assert [d[0] for d in diff] == ["add_column"] and diff[0][3].name == "nickname"


def test_migrations_form_a_single_line() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite:///unused.db"))
    heads = script.get_heads()
    assert len(heads) == 1, heads
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
