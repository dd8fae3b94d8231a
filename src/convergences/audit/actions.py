"""Action tags of the journal, with their French labels."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    LOGIN_SUCCESS = "account:login:success"
    LOGIN_FAILURE = "account:login:failure"
    LOGOUT = "account:logout"
    PASSWORD_SET = "account:password:set"  # noqa: S105 - an action tag, not a password
    INVITATION_SEND = "account:invitation:send"
    ACCOUNT_CREATE = "account:create"
    ACCOUNT_UPDATE = "account:update"
    ACCOUNT_DELETE = "account:delete"
    THROTTLE_CLEAR = "account:throttle:clear"
    MEMBERSHIP_ATTACH = "membership:attach"
    MEMBERSHIP_SUSPEND = "membership:suspend"
    MEMBERSHIP_REACTIVATE = "membership:reactivate"
    MEMBERSHIP_DELETE = "membership:delete"
    REFERENT_DESIGNATE = "membership:referent:designate"
    REFERENT_REVOKE = "membership:referent:revoke"
    AUTHORITY_DESIGNATE = "membership:authority:designate"
    GRANT_ADD = "grant:add"
    GRANT_CHANGE = "grant:change"
    GRANT_REVOKE = "grant:revoke"
    EMPLOYER_CREATE = "employer:create"
    EMPLOYER_UPDATE = "employer:update"
    SUBSCRIPTION_ADD = "subscription:add"
    SUBSCRIPTION_REMOVE = "subscription:remove"
    PORTFOLIO_ADD = "portfolio:add"
    PORTFOLIO_REMOVE = "portfolio:remove"
    APPLICATION_CREATE = "application:create"
    APPLICATION_UPDATE = "application:update"
    STAFF_CREATE = "staff:create"
    CLIENT_CREATE = "client:create"
    CLIENT_UPDATE = "client:update"
    CLIENT_SECRET_ROTATE = "client:secret:rotate"  # noqa: S105 - an action tag, not a secret
    CLIENT_DELETE = "client:delete"
    REVIEW_OPEN = "review:open"
    REVIEW_DECIDE = "review:decide"
    REVIEW_COMPLETE = "review:complete"
    # RGPD (issue 5)
    DATA_EXPORT = "account:data:export"
    ERASURE_REQUEST = "account:erasure:request"
    ERASURE_CONFIRM = "account:erasure:confirm"
    ERASURE_REFUSE = "account:erasure:refuse"
    EMPLOYER_DELETE = "employer:delete"
    JOURNAL_PURGE = "journal:purge"
    JOURNAL_PURGED = "journal:purged"
    MFA_FAILURE = "account:mfa:failure"
    MFA_TOTP_ADD = "account:mfa:totp:add"
    MFA_PASSKEY_ADD = "account:mfa:passkey:add"
    MFA_FACTOR_REMOVE = "account:mfa:factor:remove"
    MFA_RECOVERY_REGENERATE = "account:recovery_codes:regenerate"
    MFA_RECOVERY_USED = "account:recovery_codes:used"
    MFA_RESET = "account:mfa:reset"
    REAUTH_SUCCESS = "account:reauth:success"
    REAUTH_FAILURE = "account:reauth:failure"
    EMPLOYER_MFA_POLICY = "employer:mfa:policy"
    PASSWORD_RESET_REQUEST = "account:password:reset_request"  # noqa: S105 - an action tag
    PASSWORD_RESET_SEND = "account:password:reset_send"  # noqa: S105 - an action tag
    PASSWORD_RESET = "account:password:reset"  # noqa: S105 - an action tag
    PASSWORD_CHANGE = "account:password:change"  # noqa: S105 - an action tag
    EMAIL_CHANGE_REQUEST = "account:email:change_request"
    EMAIL_CHANGE = "account:email:change"
    LOGIN_ALERT = "account:login:alert"
    SESSION_END = "account:session:end"
    SESSIONS_END_OTHERS = "account:sessions:end_others"
    SESSIONS_END_ALL = "account:sessions:end_all"


LABELS: dict[str, str] = {
    Action.LOGIN_SUCCESS: "Connexion réussie",
    Action.LOGIN_FAILURE: "Échec de connexion",
    Action.LOGOUT: "Déconnexion",
    Action.PASSWORD_SET: "Mot de passe défini",
    Action.INVITATION_SEND: "Invitation envoyée",
    Action.ACCOUNT_CREATE: "Compte créé",
    Action.ACCOUNT_UPDATE: "Compte modifié",
    Action.ACCOUNT_DELETE: "Compte supprimé",
    Action.THROTTLE_CLEAR: "Blocage de connexion levé",
    Action.MEMBERSHIP_ATTACH: "Compte existant rattaché",
    Action.MEMBERSHIP_SUSPEND: "Agent suspendu",
    Action.MEMBERSHIP_REACTIVATE: "Agent réactivé",
    Action.MEMBERSHIP_DELETE: "Agent retiré de l'employeur",
    Action.REFERENT_DESIGNATE: "Référent désigné",
    Action.REFERENT_REVOKE: "Référent retiré",
    Action.AUTHORITY_DESIGNATE: "Autorité territoriale désignée",
    Action.GRANT_ADD: "Droit accordé",
    Action.GRANT_CHANGE: "Rôle applicatif modifié",
    Action.GRANT_REVOKE: "Droit retiré",
    Action.EMPLOYER_CREATE: "Employeur créé",
    Action.EMPLOYER_UPDATE: "Employeur modifié",
    Action.SUBSCRIPTION_ADD: "Abonnement ajouté",
    Action.SUBSCRIPTION_REMOVE: "Abonnement retiré",
    Action.PORTFOLIO_ADD: "Employeur ajouté au portefeuille",
    Action.PORTFOLIO_REMOVE: "Employeur retiré du portefeuille",
    Action.APPLICATION_CREATE: "Application créée",
    Action.APPLICATION_UPDATE: "Application modifiée",
    Action.STAFF_CREATE: "Compte CIG créé",
    Action.CLIENT_CREATE: "Client OpenID Connect créé",
    Action.CLIENT_UPDATE: "Client OpenID Connect modifié",
    Action.CLIENT_SECRET_ROTATE: "Secret d'un client OpenID Connect régénéré",
    Action.CLIENT_DELETE: "Client OpenID Connect supprimé",
    Action.REVIEW_OPEN: "Revue des droits ouverte",
    Action.REVIEW_DECIDE: "Décision de revue des droits",
    Action.REVIEW_COMPLETE: "Revue des droits terminée (certificat)",
    Action.DATA_EXPORT: "Export de mes données",
    Action.ERASURE_REQUEST: "Demande d'effacement du compte",
    Action.ERASURE_CONFIRM: "Demande d'effacement acceptée",
    Action.ERASURE_REFUSE: "Demande d'effacement refusée",
    Action.EMPLOYER_DELETE: "Employeur supprimé",
    Action.JOURNAL_PURGE: "Purge du journal (durée de conservation échue)",
    Action.JOURNAL_PURGED: "Entrée purgée (durée de conservation échue)",
    Action.MFA_FAILURE: "Échec du second facteur",
    Action.MFA_TOTP_ADD: "Application d'authentification enregistrée",
    Action.MFA_PASSKEY_ADD: "Clé d'accès enregistrée",
    Action.MFA_FACTOR_REMOVE: "Second facteur supprimé",
    Action.MFA_RECOVERY_REGENERATE: "Codes de secours régénérés",
    Action.MFA_RECOVERY_USED: "Code de secours utilisé",
    Action.MFA_RESET: "Double authentification réinitialisée",
    Action.REAUTH_SUCCESS: "Réauthentification réussie",
    Action.REAUTH_FAILURE: "Échec de réauthentification",
    Action.EMPLOYER_MFA_POLICY: "Règle de double authentification de l'employeur modifiée",
    Action.PASSWORD_RESET_REQUEST: "Réinitialisation du mot de passe demandée",
    Action.PASSWORD_RESET_SEND: "Lien de réinitialisation du mot de passe envoyé",
    Action.PASSWORD_RESET: "Mot de passe réinitialisé",
    Action.PASSWORD_CHANGE: "Mot de passe modifié",
    Action.EMAIL_CHANGE_REQUEST: "Changement d'adresse électronique demandé",
    Action.EMAIL_CHANGE: "Adresse électronique modifiée",
    Action.LOGIN_ALERT: "Alerte d'échecs de connexion envoyée",
    Action.SESSION_END: "Session fermée",
    Action.SESSIONS_END_OTHERS: "Autres sessions fermées",
    Action.SESSIONS_END_ALL: "Toutes les sessions fermées",
}
