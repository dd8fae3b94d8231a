"""The ``convergences`` command: serve, migrate, seed, demo, create-admin, maintenance, audit verify."""

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
        if account.get("totp_secret"):
            click.echo(f"  {'':<36} double authentification, clé TOTP : {account['totp_secret']}")
    click.echo("Code à 6 chiffres : toute application d'authentification, ou oathtool --totp -b CLÉ")


@main.command("mfa-reset")
@click.option("--email", required=True)
def mfa_reset_cmd(email: str) -> None:
    """Reset a person's second factors (e.g. CIG staff): re-enrolment at next login, journaled, mailed."""
    from convergences.mfa.services import MfaService
    from convergences.runtime import Runtime

    async def run() -> str | None:
        import convergences.models  # noqa: F401 - every mapper

        rt = Runtime.build(load_settings())
        try:
            account = await MfaService(rt).reset_by_operator(email)
            await rt.mailer.deliver_pending()
            return account.full_name if account else None
        finally:
            await rt.close()

    name = asyncio.run(run())
    if name is None:
        raise click.ClickException("Aucun compte avec cette adresse.")
    click.echo(f"Double authentification réinitialisée : {name} (nouvel enrôlement à la prochaine connexion).")


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
@click.option("--now", "now_text", default=None, metavar="INSTANT",
              help="Run as if it were this instant (ISO 8601, e.g. 2027-06-01T00:00:00Z); default: the clock.")
@click.option("--every", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Run again every SECONDS seconds, forever (the Procfile worker).")
def maintenance_cmd(now_text: str | None, every: int | None) -> None:
    """Periodic jobs (idempotent): retention purges, inactive accounts, review reminders, then the mail and
    back-channel logout outboxes. Prints what each job did."""
    import time

    import convergences.models  # noqa: F401 - every mapper
    from convergences.db import utcnow
    from convergences.maintenance.clock import parse_instant
    from convergences.maintenance.jobs import run_maintenance
    from convergences.runtime import Runtime

    if now_text is not None and every is not None:
        raise click.UsageError("--now et --every ne peuvent pas être combinés.")
    try:
        fixed_now = parse_instant(now_text) if now_text is not None else None
    except ValueError:
        raise click.BadParameter("instant invalide (format attendu : 2027-06-01T00:00:00Z)",
                                 param_hint="--now") from None

    async def run() -> bool:
        rt = Runtime.build(load_settings())
        try:
            results, mails, logouts = await run_maintenance(rt, fixed_now or utcnow())
        finally:
            await rt.close()
        for result in results:
            outcome = f"échec ({result.error})" if result.error else str(result.count)
            click.echo(f"{result.job.name:<26} {outcome:>8}  {result.job.label}")
        click.echo(f"Courriels remis : {mails} ; déconnexions d'applications remises : {logouts}")
        return all(result.error is None for result in results)

    while True:
        ok = asyncio.run(run())
        if every is None:
            if not ok:
                sys.exit(1)
            return
        time.sleep(every)


@main.group("audit")
def audit_group() -> None:
    """The journal (append-only, hash-chained)."""


@audit_group.command("verify")
def audit_verify_cmd() -> None:
    """Recompute the journal's hash chain; exit 1 and name the first broken link, 0 when intact."""
    import convergences.models  # noqa: F401 - every mapper
    from convergences.audit.services import ChainReport, verify
    from convergences.db import transaction
    from convergences.runtime import Runtime

    async def run() -> ChainReport:
        rt = Runtime.build(load_settings())
        try:
            async with transaction(rt.maker) as db:
                return await verify(db)
        finally:
            await rt.close()

    report = asyncio.run(run())
    if report.intact:
        click.echo(f"Journal intègre : {report.checked} entrée(s) vérifiée(s).")
        return
    where = f"entrée n° {report.broken_id}" if report.broken_id is not None else "fin du journal"
    seq = f" (séquence {report.broken_seq})" if report.broken_seq is not None else ""
    click.echo(f"Journal altéré : premier maillon rompu à l'{where}{seq} : {report.problem}. "
               f"{report.checked} entrée(s) intègre(s) avant elle.", err=True)
    sys.exit(1)


@main.group("client")
def client_group() -> None:
    """OpenID Connect clients (the protocol side of an application)."""


@client_group.command("create")
@click.option("--application", "application", required=True, help="Application slug, e.g. bip.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--public", is_flag=True, help="Public client (no secret, PKCE S256 required).")
@click.option("--backchannel-logout-uri", default=None)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--alg", type=click.Choice(["ES256", "RS256"]), default="ES256", show_default=True)
@click.option("--refresh", is_flag=True, help="Allow refresh tokens.")
@click.option("--pairwise", is_flag=True, help="A different sub for this application.")
@click.option("--claims", default="employer,roles", show_default=True,
              help="Convergences claims the application receives.")
@click.option("--name", default=None)
def client_create_cmd(application: str, redirect_uris: tuple[str, ...], public: bool,
                      backchannel_logout_uri: str | None, post_logout: tuple[str, ...], alg: str, refresh: bool,
                      pairwise: bool, claims: str, name: str | None) -> None:
    """Register a client; print {"client_id", "client_secret"} (the secret is shown once, stored hashed)."""
    import convergences.models  # noqa: F401
    from convergences.forms import url_problem
    from convergences.oidc.services import register_client
    from convergences.runtime import Runtime

    for uri in (*redirect_uris, *post_logout, *([backchannel_logout_uri] if backchannel_logout_uri else [])):
        problem = url_problem(uri)
        if problem:
            raise click.ClickException(f"{uri} : {problem}")

    async def run() -> tuple[str, str | None]:
        rt = Runtime.build(load_settings())
        try:
            return await register_client(rt, application_slug=application, redirect_uris=list(redirect_uris),
                                         public=public, backchannel_logout_uri=backchannel_logout_uri,
                                         post_logout_redirect_uris=list(post_logout), alg=alg,
                                         allow_refresh=refresh, pairwise=pairwise, name=name,
                                         claims=[c.strip() for c in claims.split(",") if c.strip()])
        finally:
            await rt.close()

    try:
        client_id, secret = asyncio.run(run())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))


@main.group("keys")
def keys_group() -> None:
    """OpenID Connect signing keys."""


@keys_group.command("rotate")
def keys_rotate_cmd() -> None:
    """Add a key per algorithm: published now, used after the publish delay; old keys stay published."""
    import convergences.models  # noqa: F401
    from convergences.db import transaction
    from convergences.oidc import keys
    from convergences.runtime import Runtime

    async def run() -> list[str]:
        settings = load_settings()
        rt = Runtime.build(settings)
        try:
            async with transaction(rt.maker) as db:
                added = await keys.rotate(db, settings)
                return [f"{k.kid} ({k.alg}) utilisée à partir du {k.activated_at:%Y-%m-%d %H:%M} UTC" for k in added]
        finally:
            await rt.close()

    for line in asyncio.run(run()):
        click.echo(f"Nouvelle clé publiée : {line}")


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


@main.command("demo-apps")
def demo_apps_cmd() -> None:
    """Serve the two demo applications signing in with the portal (BIP on 8001, Net Cotisations on 8002).

    Environment: CONVERGENCES_DEMO_APPS_HOST (127.0.0.1), CONVERGENCES_DEMO_BIP_PORT (8001),
    CONVERGENCES_DEMO_NET_COTISATIONS_PORT (8002), CONVERGENCES_DEMO_<APP>_URL (their public URL,
    http://host:port), CONVERGENCES_DEMO_<APP>_CLIENT_ID / _CLIENT_SECRET (the demo seed's), and the
    portal's CONVERGENCES_BASE_URL (the issuer).
    """
    import contextlib
    import os
    import signal

    import uvicorn

    from convergences.demo_rp import DEMO_APPS, create_demo_rp

    class Server(uvicorn.Server):
        # Several servers share this process: the signal handlers below stop them all.
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield

    host = os.environ.get("CONVERGENCES_DEMO_APPS_HOST", "127.0.0.1")
    portal_url = os.environ.get("CONVERGENCES_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    log_level = os.environ.get("CONVERGENCES_LOG_LEVEL", "INFO").lower()
    servers = []
    for demo in DEMO_APPS:
        env = f"CONVERGENCES_DEMO_{demo.env_key}_"
        port = int(os.environ.get(env + "PORT", str(demo.port)))
        public_url = os.environ.get(env + "URL", f"http://{host}:{port}")
        app = create_demo_rp(demo.name, os.environ.get(env + "CLIENT_ID", demo.client_id),
                             os.environ.get(env + "CLIENT_SECRET", demo.client_secret), portal_url, public_url)
        servers.append(Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")))
        click.echo(f"{demo.name} : {public_url}/ (fournisseur d'identité : {portal_url})")

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        results = await asyncio.gather(*(server.serve() for server in servers), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    asyncio.run(run())
    if any(not server.started for server in servers):
        raise click.ClickException("une application de démonstration n'a pas pu démarrer (port occupé ?)")


if __name__ == "__main__":
    main()
