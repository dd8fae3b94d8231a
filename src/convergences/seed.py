"""Demo data: fictional but realistic. Loaded by ``make run`` when the database is empty.

``DEMO_ACCOUNTS`` is the single source for the seed and for ``convergences demo --json``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from convergences.accounts.models import Account
from convergences.applications.models import Application, Grant, Subscription
from convergences.db import transaction, utcnow
from convergences.employers.models import Employer, Membership, PortfolioEntry
from convergences.mfa.models import SecondFactor
from convergences.mfa.totp import encrypt_secret
from convergences.runtime import Runtime

DEMO_PASSWORD = "Convergences demo 2026 !"  # noqa: S105 - the documented demo-only password

APPLICATIONS: list[dict[str, Any]] = [
    {"slug": "site", "name": "Site Internet — contenus restreints",
     "description": "Les pages réservées aux employeurs du site du CIG.",
     "launch_url": "https://www.cig-demo.example/espace-employeurs", "roles": []},
    {"slug": "bip", "name": "BIP", "description": "La banque de données sur le personnel.",
     "launch_url": "http://127.0.0.1:8001/login", "roles": []},
    {"slug": "net-cotisations", "name": "Net Cotisations", "description": "Le logiciel des cotisations.",
     "launch_url": "http://127.0.0.1:8002/login",
     "roles": [{"code": "consultation", "label": "Consultation"}, {"code": "saisie", "label": "Saisie"}]},
    {"slug": "snapi-coll", "name": "SNAPI-Coll", "description": "Application métier des collectivités.",
     "launch_url": "https://snapi-coll.cig-demo.example/", "roles": []},
    {"slug": "cr-cm", "name": "Commission de Réforme / Comité Médical",
     "description": "Saisine et suivi des dossiers des instances médicales.",
     "launch_url": "https://cr-cm.cig-demo.example/", "roles": []},
]

# The demo relying parties started by `make run` (convergences demo-apps): fixed, documented credentials.
DEMO_CLIENTS: list[dict[str, Any]] = [
    {"application_slug": "bip", "client_id": "demo-bip", "client_secret": "demo-bip-secret",  # noqa: S105
     "port": 8001, "name": "BIP (démo)"},
    {"application_slug": "net-cotisations", "client_id": "demo-net-cotisations",
     "client_secret": "demo-net-cotisations-secret", "port": 8002, "name": "Net Cotisations (démo)"},  # noqa: S105
]

# Real-format SIRETs (14 digits, valid Luhn key), fictional establishments.
EMPLOYERS: list[dict[str, Any]] = [
    {"key": "bellerive", "name": "Commune de Bellerive-sur-Marne", "siret": "21930999900015", "kind": "commune",
     "applications": ["site", "bip", "net-cotisations"], "correspondents": ["c.bernard@cig-demo.fr"]},
    {"key": "ccas", "name": "CCAS de Bellerive-sur-Marne", "siret": "26930999900010", "kind": "ccas",
     "applications": ["site", "bip", "net-cotisations", "cr-cm"], "correspondents": ["c.bernard@cig-demo.fr"]},
    {"key": "sivom", "name": "SIVOM des Coteaux", "siret": "25930999900011", "kind": "syndicat",
     "applications": ["site", "net-cotisations", "snapi-coll"], "correspondents": ["a.petit@cig-demo.fr"]},
    {"key": "valfleuri", "name": "Commune de Val-Fleuri", "siret": "21930888800011", "kind": "commune",
     "applications": ["site", "bip"], "correspondents": ["a.petit@cig-demo.fr"]},
]


@dataclass
class DemoAccount:
    email: str
    given_name: str
    family_name: str
    staff: list[str] = field(default_factory=list)  # cig_admin / correspondent
    # employer key -> (roles, {application slug: role or None})
    memberships: dict[str, tuple[list[str], dict[str, str | None]]] = field(default_factory=dict)
    phone: str | None = None


DEMO_ACCOUNTS: list[DemoAccount] = [
    DemoAccount("admin@cig-demo.fr", "Hélène", "Garnier", staff=["cig_admin"]),
    DemoAccount("c.bernard@cig-demo.fr", "Claire", "Bernard", staff=["correspondent"], phone="01 56 96 80 81"),
    DemoAccount("a.petit@cig-demo.fr", "Antoine", "Petit", staff=["correspondent"], phone="01 56 96 80 82"),
    DemoAccount("maire@bellerive.example", "Jacques", "Lemoine",
                memberships={"bellerive": (["authority"], {})}),
    DemoAccount("rh@bellerive.example", "Sophie", "Martin",
                memberships={"bellerive": (["referent"], {"bip": None, "net-cotisations": "saisie"})}),
    DemoAccount("paie@bellerive.example", "Karim", "Haddad",
                memberships={"bellerive": (["referent"], {"net-cotisations": "saisie"})}),
    DemoAccount("agent@bellerive.example", "Julie", "Moreau",
                memberships={"bellerive": ([], {"site": None, "bip": None, "net-cotisations": "consultation"})}),
    DemoAccount("secretariat@coteaux.example", "Nadia", "Roussel",
                memberships={"sivom": (["referent"], {"site": None, "net-cotisations": "saisie"}),
                             "valfleuri": ([], {"site": None, "bip": None})}),
    DemoAccount("president@coteaux.example", "Marc", "Fabre", memberships={"sivom": (["authority"], {})}),
    DemoAccount("direction@ccas-bellerive.example", "Isabelle", "Chevalier",
                memberships={"ccas": (["authority", "referent"], {"cr-cm": None, "bip": None})}),
    DemoAccount("accueil@ccas-bellerive.example", "Léa", "Dumas",
                memberships={"ccas": ([], {"cr-cm": None, "net-cotisations": "consultation"})}),
    DemoAccount("technique@coteaux.example", "Hugo", "Lambert",
                memberships={"sivom": ([], {"snapi-coll": None, "site": None})}),
    # Val-Fleuri has not designated its référent yet: the deployment progress shows it.
    DemoAccount("maire@valfleuri.example", "Paul", "Renaud", memberships={"valfleuri": (["authority"], {})}),
]


# Demo only: staff accounts (CIG, autorités, référents: 2FA is mandatory for them) come with a TOTP
# factor already enrolled, from a fixed secret published by `convergences demo` so that an evaluator can
# add it to any authenticator app (or run `oathtool --totp -b SECRET`).
def demo_totp_secret(email: str) -> str:
    """The fixed demo TOTP secret of a demo account (base32)."""
    return base64.b32encode(hashlib.sha256(b"convergences-demo-totp:" + email.encode()).digest()[:20]).decode()


def demo_needs_totp(account: DemoAccount) -> bool:
    return bool(account.staff) or any({"referent", "authority"} & set(roles)
                                      for roles, _ in account.memberships.values())


def demo_accounts_json() -> dict[str, Any]:
    """What ``convergences demo --json`` prints: the contract integrators script against."""
    siret = {e["key"]: e["siret"] for e in EMPLOYERS}
    accounts = []
    for a in DEMO_ACCOUNTS:
        roles = set(a.staff)
        apps: list[str] = []
        for member_roles, grants in a.memberships.values():
            roles |= {"agent", *member_roles}
            apps += [slug for slug in grants if slug not in apps]
        accounts.append({"email": a.email, "password": DEMO_PASSWORD,
                         "name": f"{a.given_name} {a.family_name}",
                         "roles": sorted(roles), "employers": [siret[k] for k in a.memberships],
                         "applications": apps,
                         "totp_secret": demo_totp_secret(a.email) if demo_needs_totp(a) else None})
    return {"accounts": accounts}


async def seed_demo(rt: Runtime) -> bool:
    """Load the demo data when the database holds no account; return whether it did."""
    async with transaction(rt.maker) as db:
        if await db.scalar(select(func.count()).select_from(Account)):
            return False
    password_hash = await rt.passwords.hash(DEMO_PASSWORD)
    now = utcnow()
    async with transaction(rt.maker) as db:
        apps = {}
        for position, data in enumerate(APPLICATIONS, start=1):
            apps[data["slug"]] = Application(position=position, **data)
            db.add(apps[data["slug"]])
        accounts = {}
        for a in DEMO_ACCOUNTS:
            accounts[a.email] = Account(email=a.email, given_name=a.given_name, family_name=a.family_name,
                                        password_hash=password_hash, activated_at=now,
                                        is_cig_admin="cig_admin" in a.staff,
                                        is_correspondent="correspondent" in a.staff, phone_contact=a.phone)
            db.add(accounts[a.email])
        employers = {}
        for data in EMPLOYERS:
            employer = Employer(name=data["name"], siret=data["siret"], kind=data["kind"])
            employers[data["key"]] = employer
            db.add(employer)
        await db.flush()
        for data in EMPLOYERS:
            employer = employers[data["key"]]
            for slug in data["applications"]:
                db.add(Subscription(employer_id=employer.id, application_id=apps[slug].id))
            for email in data["correspondents"]:
                db.add(PortfolioEntry(correspondent_id=accounts[email].id, employer_id=employer.id))
        for a in DEMO_ACCOUNTS:
            for key, (roles, grants) in a.memberships.items():
                membership = Membership(account_id=accounts[a.email].id, employer_id=employers[key].id,
                                        is_referent="referent" in roles, is_authority="authority" in roles)
                db.add(membership)
                await db.flush()
                for slug, role in grants.items():
                    db.add(Grant(membership_id=membership.id, application_id=apps[slug].id, role=role))
        for a in DEMO_ACCOUNTS:
            if demo_needs_totp(a):
                db.add(SecondFactor(account_id=accounts[a.email].id, kind="totp", label="Démo (clé publiée)",
                                    secret_encrypted=encrypt_secret(rt.settings.secret_key,
                                                                    demo_totp_secret(a.email))))
        # A few invited agents, so that the grid shows every status.
        for given, family, email in [("Lucas", "Girard", "l.girard@bellerive.example"),
                                     ("Emma", "Faure", "e.faure@bellerive.example")]:
            account = Account(email=email, given_name=given, family_name=family)
            db.add(account)
            await db.flush()
            db.add(Membership(account_id=account.id, employer_id=employers["bellerive"].id))
    from convergences.oidc.services import register_client

    for client in DEMO_CLIENTS:
        base = f"http://127.0.0.1:{client['port']}"
        await register_client(rt, application_slug=client["application_slug"], client_id=client["client_id"],
                              client_secret=client["client_secret"], name=client["name"],
                              redirect_uris=[f"{base}/callback"], post_logout_redirect_uris=[f"{base}/"],
                              backchannel_logout_uri=f"{base}/backchannel-logout", alg="ES256")
    return True
