"""The data inventory: every table, the personal fields it holds, why, and how long (GDPR art. 5(1)(c)/(e)).

The privacy notice, the record of processing and docs/data-minimisation.md all read from here; a test
fails when a table of the metadata is missing (a new table must say what personal data it keeps).
Retention texts are computed from the same settings the purges use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from convergences.settings import Settings

Retention = Callable[[Settings], str]


def _days(n: int) -> str:
    return f"{n} jour{'s' if n > 1 else ''}"


def account_retention(s: Settings) -> str:
    r = s.retention
    return (f"tant que la personne est rattachée à au moins un employeur (ou membre du personnel du CIG) ; "
            f"prévenue après {r.inactivity_warning_months} mois sans connexion, rattachements suspendus après "
            f"{r.inactivity_suspension_months} mois ; compte supprimé quand son dernier rattachement est retiré")


def journal_retention(s: Settings) -> str:
    # The journal purge (audit/retention.py): its content is removed, a tombstone keeps the chain verifiable.
    r = s.retention
    return (f"connexions (réussies ou non) : {r.connection_months} mois ; actions d'administration : "
            f"{r.journal_years} ans ; puis le contenu de l'entrée est supprimé (seule reste l'empreinte qui "
            f"garde le chaînage vérifiable)")


def session_retention(s: Settings) -> str:
    return (f"jusqu'à la déconnexion, {s.sessions.idle_minutes} minutes d'inactivité ou "
            f"{s.sessions.absolute_hours} heures au plus ; supprimée par la maintenance une fois expirée")


def oidc_retention(s: Settings) -> str:
    return (f"jusqu'à expiration (code : {s.oidc.code_seconds} s, "
            f"jeton d'accès : {s.oidc.access_token_seconds // 60} min, "
            f"jeton de rafraîchissement : {s.oidc.refresh_days} jours), puis {_days(s.retention.oidc_days)}")


@dataclass(frozen=True)
class Field:
    name: str
    why: str


@dataclass(frozen=True)
class TableEntry:
    table: str
    label: str
    fields: tuple[Field, ...]  # the personal fields only (empty: no personal data)
    retention: Retention

    def retention_text(self, settings: Settings) -> str:
        return self.retention(settings)


def _same_as_account(s: Settings) -> str:
    return "comme le compte ou le rattachement concerné (supprimé avec lui)"


def _none(s: Settings) -> str:
    return "sans objet (aucune donnée personnelle)"


INVENTORY: tuple[TableEntry, ...] = (
    TableEntry("account", "Compte", (
        Field("email", "identifiant de connexion et adresse des courriels de service (professionnelle)"),
        Field("given_name, family_name", "identifier la personne auprès de ses référents et des applications"),
        Field("password_hash", "authentification (argon2id ; le mot de passe n'est jamais conservé)"),
        Field("phone_contact", "personnel du CIG uniquement : contact montré aux référents (refusé pour un agent "
                               "par la base de données ; aucun second facteur ne demande de téléphone)"),
        Field("last_login_at, activated_at, created_at", "comptes inactifs, avancement du déploiement"),
    ), account_retention),
    TableEntry("invitation", "Invitation", (
        Field("account_id, purpose, new_email, nonce_hash, expires_at, used_at",
              "liens à usage unique : invitation, réinitialisation du mot de passe, confirmation d'une nouvelle "
              "adresse (seule une empreinte du lien est conservée)"),
    ), lambda s: f"{_days(s.retention.invitation_days)} après son expiration, son utilisation ou son annulation"),
    TableEntry("employer", "Employeur", (), _none),
    TableEntry("membership", "Rattachement", (
        Field("account_id, employer_id, rôles, suspended_at", "qui administre quoi pour quel employeur"),
    ), lambda s: "tant que la personne sert l'employeur ; supprimé quand le référent la retire"),
    TableEntry("portfolio_entry", "Portefeuille de correspondant", (
        Field("correspondent_id", "quel correspondant CIG accompagne quel employeur"),
    ), lambda s: "tant que le correspondant suit l'employeur"),
    TableEntry("application", "Application du catalogue", (), _none),
    TableEntry("subscription", "Abonnement", (), _none),
    TableEntry("grant", "Droit d'accès", (
        Field("membership_id, application_id, role", "ouvrir à l'agent les applications décidées par son référent"),
    ), lambda s: "tant que le référent ne le retire pas (revue périodique des droits)"),
    TableEntry("audit_event", "Journal", (
        Field("actor_label, target_label, before, after", "traçabilité des actions d'administration et de sécurité"),
        Field("ip", "sécurité : origine des connexions et des actions"),
    ), journal_retention),
    TableEntry("audit_chain_head", "Tête de chaîne du journal", (), _none),
    TableEntry("audit_person_key", "Clé de pseudonymisation du journal", (
        Field("account_id, secret, pseudonym", "sceller les données personnelles du journal ; la clé est détruite "
                                               "à l'effacement de la personne (le pseudonyme reste)"),
    ), lambda s: "tant que le compte existe ; la clé est détruite à l'effacement, le pseudonyme suit le journal"),
    TableEntry("mfa_factor", "Second facteur d'authentification", (
        Field("account_id, label, secret_encrypted (chiffré), credential_id, public_key, last_used_at",
              "double authentification (application TOTP ou clé d'accès) ; aucun numéro de téléphone"),
    ), lambda s: "tant que la personne le garde ; supprimé avec le compte ou à la réinitialisation"),
    TableEntry("mfa_recovery_code", "Code de secours", (
        Field("account_id, code_hash", "se connecter sans son second facteur (empreinte seulement)"),
    ), lambda s: "jusqu'à leur régénération ; supprimés avec le compte"),
    TableEntry("rgpd_erasure_request", "Demande d'effacement", (
        Field("account_id, employer_id, message, decision_reason", "traiter la demande d'effacement (art. 17)"),
    ), lambda s: "jusqu'à la décision ; supprimée avec le compte"),
    TableEntry("outbox_mail", "Courriels à envoyer", (
        Field("recipient, subject, body_text, body_html", "envoi des courriels de service (le corps, qui peut "
                                                          "contenir un lien à usage unique, est effacé à l'envoi)"),
    ), lambda s: f"{_days(s.retention.mail_days)} après l'envoi"),
    TableEntry("login_session", "Session de connexion", (
        Field("account_id, ip, user_agent", "sécurité de la session (liste des connexions, déconnexion à distance)"),
    ), session_retention),
    TableEntry("login_throttle", "Compteur d'échecs de connexion", (
        Field("key (adresse électronique ou IP)", "ralentir les attaques par essais de mots de passe"),
    ), lambda s: f"{_days(s.retention.throttle_days)} sans nouvel échec"),
    TableEntry("oidc_signing_key", "Clé de signature", (), _none),
    TableEntry("oidc_subject_salt", "Sel des identifiants pseudonymes", (), _none),
    TableEntry("oidc_client", "Client OpenID Connect", (), _none),
    TableEntry("oidc_authorization_code", "Code d'autorisation", (
        Field("account_id, nonce, redirect_uri", "connexion unique à une application"),
    ), oidc_retention),
    TableEntry("oidc_token", "Jeton d'accès ou de rafraîchissement", (
        Field("account_id, scope (empreinte du jeton seulement)", "accès d'une application aux informations "
                                                                  "de la personne"),
    ), oidc_retention),
    TableEntry("oidc_rp_session", "Session d'application", (
        Field("account_id, sid", "déconnecter l'application quand la personne se déconnecte, est suspendue ou perd "
                                 "le droit"),
    ), lambda s: f"{_days(s.retention.oidc_days)} après sa fin"),
    TableEntry("oidc_logout_delivery", "Déconnexion d'application à remettre", (
        Field("logout_token (identifiant pseudonyme)", "remettre la déconnexion à l'application"),
    ), lambda s: f"{_days(s.retention.oidc_days)} après sa remise"),
    TableEntry("inactivity_warning", "Avertissement d'inactivité", (
        Field("account_id, warned_at", "n'avertir qu'une fois par période d'inactivité"),
    ), _same_as_account),
    TableEntry("review_campaign", "Campagne de revue des droits", (
        Field("opened_by_id", "qui a ouvert la campagne"),
    ), lambda s: "tant que la campagne est utile au contrôle interne (l'ouverture reste au journal)"),
    TableEntry("review_scope", "Revue d'un employeur", (
        Field("completed_by_label", "qui a terminé la revue (certificat)"),
    ), lambda s: "comme la campagne"),
    TableEntry("review_decision", "Décision de revue", (
        Field("membership_id, decided_by_id", "décision « conserver » ou « retirer » sur un droit"),
    ), _same_as_account),
)


def entries_with_personal_data() -> list[TableEntry]:
    return [entry for entry in INVENTORY if entry.fields]
