"""The ``convergences`` command: serve, migrate, seed, demo, create-admin, maintenance."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from pathlib import Path

import click

from convergences.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url or load_settings().database.url)
    return config


def migrate(url: str | None = None) -> None:
    from alembic import command

    url = url or load_settings().database.url
    if url.startswith("sqlite") and ":memory:" not in url:
        path = url.split(":///", 1)[1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


@click.group()
def main() -> None:
    """Convergences: accès unique et gestion déléguée des comptes et des droits."""


@main.command("migrate")
def migrate_cmd() -> None:
    """Apply the Alembic migrations (upgrade head)."""
    migrate()
    click.echo("Base de données à jour.")


@main.command("seed")
def seed_cmd() -> None:
    """Load the demo data when the database is empty."""
    from convergences.runtime import Runtime
    from convergences.seed import seed_demo

    async def run() -> bool:
        rt = Runtime.build(load_settings())
        try:
            return await seed_demo(rt)
        finally:
            await rt.close()

    click.echo("Données de démonstration chargées." if asyncio.run(run()) else
               "La base contient déjà des comptes : rien n'a été ajouté.")


@main.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output for scripts.")
def demo_cmd(as_json: bool) -> None:
    """Print the demo accounts."""
    from convergences.seed import demo_accounts_json

    data = demo_accounts_json()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"Comptes de démonstration (mot de passe commun : {data['accounts'][0]['password']})")
    for account in data["accounts"]:
        click.echo(f"  {account['email']:<36} {', '.join(account['roles'])}")


@main.command("create-admin")
@click.option("--email", required=True)
@click.option("--given-name", required=True)
@click.option("--family-name", required=True)
def create_admin_cmd(email: str, given_name: str, family_name: str) -> None:
    """Create a CIG administrator (the password is typed, or read from stdin when not a terminal)."""
    from convergences.accounts.services import normalize_email
    from convergences.forms import PersonForm
    from convergences.runtime import Runtime
    from convergences.security.passwords import password_problems

    form = PersonForm(given_name.strip(), family_name.strip(), normalize_email(email))
    errors = form.validate()
    if errors:
        raise click.ClickException(" ".join(errors.values()))
    settings = load_settings()
    password = getpass.getpass("Mot de passe : ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    problems = password_problems(password, settings.passwords, context=[given_name, family_name, email])
    if problems:
        raise click.ClickException(" ".join(problems))

    async def run() -> str:
        from sqlalchemy import select

        import convergences.models  # noqa: F401 - every mapper, or Account's relationships cannot resolve
        from convergences.accounts.models import Account
        from convergences.audit.actions import Action
        from convergences.audit.services import record
        from convergences.db import transaction, utcnow

        rt = Runtime.build(settings)
        try:
            password_hash = await rt.passwords.hash(password)
            async with transaction(rt.maker) as db:
                account = await db.scalar(select(Account).where(Account.email == form.email))
                if account is None:
                    account = Account(email=form.email, given_name=form.given_name, family_name=form.family_name)
                    db.add(account)
                account.password_hash = password_hash
                account.activated_at = account.activated_at or utcnow()
                account.is_cig_admin = True
                await db.flush()
                record(db, None, Action.STAFF_CREATE, target_type="account", target_id=account.id,
                       target_label=account.full_name, after={"role": "cig_admin", "via": "cli"})
            return form.email
        finally:
            await rt.close()

    click.echo(f"Administrateur CIG créé : {asyncio.run(run())}")


@main.command("maintenance")
def maintenance_cmd() -> None:
    """Periodic jobs (idempotent): deliver the mail outbox."""
    from convergences.runtime import Runtime

    async def run() -> int:
        rt = Runtime.build(load_settings())
        try:
            return await rt.mailer.deliver_pending()
        finally:
            await rt.close()

    click.echo(f"Courriels remis : {asyncio.run(run())}")


@main.command("serve")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--workers", type=int, default=None)
def serve_cmd(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the portal with uvicorn (HOST, PORT and WEB_CONCURRENCY from the environment)."""
    import uvicorn

    settings = load_settings()
    uvicorn.run("convergences.asgi:app", host=host or settings.host, port=port or settings.port,
                workers=workers or settings.workers, proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
