"""The privacy notice (art. 13-14 GDPR) and the record of processing (art. 30), built from the settings,
the data inventory and the database: each application's claims are computed by the provider's own claim
logic (``oidc.services.user_claims``) on each of its clients' configuration, never listed by hand."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from convergences.accounts.models import Account
from convergences.applications.models import Application
from convergences.audit.services import neutralise
from convergences.authz import Actor, Permission, require
from convergences.db import transaction
from convergences.employers.models import Employer
from convergences.oidc.models import Client
from convergences.oidc.services import SUPPORTED_SCOPES, user_claims
from convergences.privacy.inventory import INVENTORY, TableEntry
from convergences.runtime import Runtime
from convergences.settings import Settings

# Claims of every ID token whatever the scopes (see ProviderService._issue): they identify the login.
PROTOCOL_CLAIMS = ("sub", "sid", "auth_time", "amr")
CLAIM_LABELS = {
    "sub": "identifiant pseudonyme propre à l'application (sub)",
    "sid": "identifiant de la session de connexion",
    "auth_time": "heure de la connexion",
    "amr": "méthode d'authentification",
    "name": "nom complet",
    "given_name": "prénom",
    "family_name": "nom",
    "email": "adresse électronique",
    "email_verified": "adresse électronique vérifiée (oui/non)",
    "employer": "employeur pour lequel la personne agit (SIRET et nom)",
    "roles": "rôle de la personne dans l'application",
}
PURPOSES = (
    "Permettre aux agents des employeurs affiliés de se connecter une seule fois pour accéder aux services en ligne "
    "du CIG (authentification unique).",
    "Permettre aux référents administrateurs de gérer les comptes de leurs agents et leurs droits d'accès, et aux "
    "autorités territoriales de désigner leurs référents.",
    "Tracer les actions d'administration et de sécurité (journal) et revoir périodiquement les droits d'accès.",
    "Protéger les comptes (limitation des essais de mot de passe, suspension des comptes inactifs).",
)


@dataclass
class Recipient:
    application: str
    claims: list[str]
    clients: int


@dataclass(frozen=True)
class Processing:
    """One processing activity of the record (art. 30): what it is for, and which inventory tables it uses."""

    name: str
    purpose: str
    persons: str
    tables: tuple[str, ...]
    recipients: str
    sends_claims: bool = False


PROCESSINGS: tuple[Processing, ...] = (
    Processing("Authentification unique aux services en ligne", PURPOSES[0],
               "agents, référents, autorités territoriales des employeurs affiliés ; personnel du CIG",
               ("account", "invitation", "login_session", "oidc_authorization_code", "oidc_token", "oidc_rp_session",
                "oidc_logout_delivery"), "les applications du catalogue, selon les droits de la personne",
               sends_claims=True),
    Processing("Gestion déléguée des comptes et des droits d'accès", PURPOSES[1],
               "agents, référents, autorités territoriales des employeurs affiliés",
               ("account", "membership", "grant", "portfolio_entry", "outbox_mail"),
               "les référents et l'autorité territoriale de l'employeur ; les correspondants CIG de l'employeur ; "
               "les administrateurs du CIG"),
    Processing("Journal et revue périodique des droits", PURPOSES[2],
               "toute personne ayant un compte ; toute personne agissant sur un compte",
               ("audit_event", "review_campaign", "review_scope", "review_decision"),
               "les référents et l'autorité territoriale de l'employeur ; ses correspondants CIG ; les administrateurs "
               "du CIG"),
    Processing("Sécurité des comptes", PURPOSES[3], "toute personne tentant de se connecter",
               ("login_throttle", "inactivity_warning", "login_session"),
               "les administrateurs du CIG ; les référents (comptes inactifs de leurs agents)"),
)


def client_claims(client: Client) -> list[str]:
    """Every claim this client can receive: the protocol claims and what the provider's claim logic gives
    with every supported scope, on a sample person (nothing of a real person is read)."""
    sample = Account(email="exemple@exemple.invalid", given_name="Prénom", family_name="Nom")
    employer = Employer(name="Employeur", siret="00000000000000", kind="commune")
    application = Application(slug="exemple", name="Exemple", launch_url="https://exemple.invalid/", roles=[])
    given = user_claims(sample, set(SUPPORTED_SCOPES), client, employer, "role", application)
    return [*PROTOCOL_CLAIMS, *given]


def claim_label(name: str) -> str:
    return CLAIM_LABELS.get(name, name)


@dataclass
class Notice:
    settings: Settings
    recipients: list[Recipient]
    inventory: list[tuple[TableEntry, str]]
    processings: list[dict[str, str]] = field(default_factory=list)


async def recipients(rt: Runtime) -> list[Recipient]:
    """Each application of the catalogue and the claims its clients may receive (union over its clients)."""
    async with transaction(rt.maker) as db:
        rows = (await db.execute(select(Application, Client).outerjoin(Client, Client.application_id == Application.id)
                                 .order_by(Application.position, Application.name, Client.id))).all()
    found: dict[int, Recipient] = {}
    for application, client in rows:
        recipient = found.setdefault(application.id, Recipient(application.name, [], 0))
        if client is None:
            continue
        recipient.clients += 1
        for claim in client_claims(client):
            if claim not in recipient.claims:
                recipient.claims.append(claim)
    return list(found.values())


def _processing_rows(settings: Settings, recipients_: list[Recipient]) -> list[dict[str, str]]:
    by_table = {entry.table: entry for entry in INVENTORY}
    privacy = settings.privacy
    rows = []
    for p in PROCESSINGS:
        entries = [by_table[t] for t in p.tables]
        data = "; ".join(f"{e.label} : {', '.join(f.name for f in e.fields)}" for e in entries if e.fields)
        retention = "; ".join(f"{e.label} : {e.retention_text(settings)}" for e in entries if e.fields)
        destinataires = p.recipients
        if p.sends_claims:
            destinataires += " — " + "; ".join(
                f"{r.application} : {', '.join(claim_label(c) for c in r.claims) or 'aucune donnée (simple lien)'}"
                for r in recipients_)
        rows.append({
            "traitement": p.name, "finalite": p.purpose,
            "base_legale": "mission d'intérêt public (art. 6.1.e du RGPD) confiée au CIG par le code général de "
                           "la fonction publique",
            "personnes_concernees": p.persons, "donnees": data, "destinataires": destinataires,
            "transferts_hors_ue": "aucun", "durees_de_conservation": retention,
            "mesures_de_securite": "mots de passe argon2id ; sessions et jetons stockés sous forme d'empreinte ; "
                                   "journal chaîné par empreintes ; cloisonnement par employeur ; HTTPS",
            "responsable": f"{privacy.controller_name}, {privacy.controller_address}",
            "delegue_protection_donnees": f"{privacy.dpo_email} — {privacy.dpo_address}",
        })
    return rows


RECORD_COLUMNS = ("traitement", "finalite", "base_legale", "personnes_concernees", "donnees", "destinataires",
                  "transferts_hors_ue", "durees_de_conservation", "mesures_de_securite", "responsable",
                  "delegue_protection_donnees")


class PrivacyService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def notice(self) -> Notice:
        """Everything the public notice shows (no personal data: the catalogue and the configuration)."""
        settings = self.rt.settings
        found = await recipients(self.rt)
        inventory = [(entry, entry.retention_text(settings)) for entry in INVENTORY if entry.fields]
        return Notice(settings, found, inventory)

    async def record(self, actor: Actor) -> list[dict[str, str]]:
        """The record of processing activities. Raises NotAuthorized (CIG admin only)."""
        require(actor, Permission.PROCESSING_RECORD_EXPORT)
        return _processing_rows(self.rt.settings, await recipients(self.rt))

    async def record_csv(self, actor: Actor) -> str:
        """The record as CSV (semicolon, UTF-8 with BOM), every cell neutralised against formula injection."""
        rows = await self.record(actor)
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(RECORD_COLUMNS)
        for row in rows:
            writer.writerow([neutralise(row[c]) for c in RECORD_COLUMNS])
        return out.getvalue()

    async def record_json(self, actor: Actor) -> str:
        rows = await self.record(actor)
        privacy = self.rt.settings.privacy
        document: dict[str, Any] = {
            "responsable": {"nom": privacy.controller_name, "adresse": privacy.controller_address},
            "delegue_protection_donnees": {"courriel": privacy.dpo_email, "adresse": privacy.dpo_address},
            "traitements": rows}
        return json.dumps(document, ensure_ascii=False, indent=2)
