"""Settings: frozen dataclasses per section, read from ``CONVERGENCES_*`` environment variables once.

Every variable is documented in README.md (Configuration). ``HOST``/``PORT``/``WEB_CONCURRENCY`` are
read without prefix, as Procfile platforms set them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "CONVERGENCES_"


def _env(name: str, default: str = "", *, prefix: bool = True) -> str:
    return os.environ.get((PREFIX if prefix else "") + name, default)


def _env_int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw.strip() else default


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name).strip().lower()
    if not raw:
        return default
    return raw in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///var/convergences.db"
    echo: bool = False
    pool_size: int = 10

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


@dataclass(frozen=True)
class PasswordSettings:
    # OWASP's minimum argon2id profile: m=19 MiB, t=2, p=1.
    memory_kib: int = 19 * 1024
    time_cost: int = 2
    parallelism: int = 1
    min_length: int = 12
    max_length: int = 1024


@dataclass(frozen=True)
class SessionSettings:
    idle_minutes: int = 30
    absolute_hours: int = 12
    cookie_name: str = "cvg_session"


@dataclass(frozen=True)
class ThrottleSettings:
    # Failures allowed before a delay applies, per account and per IP.
    account_free_failures: int = 5
    ip_free_failures: int = 20
    max_delay_seconds: int = 15 * 60
    # Failures on one account from every address together before browsers that never logged in to it
    # are slowed down too (known devices never are: see convergences.security.throttle).
    account_global_free_failures: int = 20
    # Failures on one account after which its owner is warned by email (once per burst).
    alert_after_failures: int = 10


@dataclass(frozen=True)
class MailSettings:
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    smtp_tls: bool = False
    sender: str = "Convergences <ne-pas-repondre@convergences.localhost>"


@dataclass(frozen=True)
class OidcSettings:
    code_seconds: int = 60
    access_token_seconds: int = 600
    id_token_seconds: int = 600
    refresh_days: int = 30
    # A rotated key is published this long before it signs (JWKS caches), and kept as long after.
    key_publish_hours: int = 24


@dataclass(frozen=True)
class RetentionSettings:
    """How long each kind of personal data is kept (docs/data-minimisation.md; CNIL-aligned defaults)."""

    # Invitations expired, used or revoked for this long are deleted.
    invitation_days: int = 30
    # Delivered mail is deleted after this long (its body, holding one-time links, is already erased).
    mail_days: int = 30
    # Expired or ended OIDC codes, tokens, application sessions and delivered logout tokens.
    oidc_days: int = 7
    # Login throttling counters (email, IP) with no failure for this long.
    throttle_days: int = 1
    # No login for this long: the person and their référents are warned; then memberships are suspended.
    inactivity_warning_months: int = 6
    inactivity_suspension_months: int = 12
    # Access review reminders: this many days before the deadline.
    review_reminder_days: int = 7
    # The journal: connection logs (login and logout entries), then every entry (administrative journal).
    connection_months: int = 12
    journal_years: int = 5


@dataclass(frozen=True)
class PrivacySettings:
    """The controller named in the privacy notice and the record of processing (art. 13 and 30 GDPR)."""

    controller_name: str = "CIG de démonstration"
    controller_address: str = "1 place de la Démonstration, 75000 Paris"
    dpo_email: str = "dpo@cig-demo.fr"
    dpo_address: str = "Délégué à la protection des données, 1 place de la Démonstration, 75000 Paris"


@dataclass(frozen=True)
class Settings:
    secret_key: str = field(repr=False, default="")
    base_url: str = "http://127.0.0.1:8000"
    demo: bool = False
    invitation_days: int = 7
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cig_name: str = "CIG de démonstration"
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.base_url).scheme == "https"

    @property
    def session_cookie(self) -> str:
        # The __Host- prefix pins the cookie to this host, path / and https (ASVS 3.3.3).
        return ("__Host-" if self.secure_cookies else "") + self.sessions.cookie_name

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _secret_key(demo: bool) -> str:
    key = _env("SECRET_KEY")
    if key:
        return key
    # Without a configured key, a local key file keeps sessions valid across restarts and workers
    # (every worker of one machine reads the same file). Production sets CONVERGENCES_SECRET_KEY.
    path = Path(_env("SECRET_KEY_FILE", "var/secret_key"))
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def load_settings() -> Settings:
    """Read the environment once; raise ValueError on an unusable value."""
    demo = _env_bool("DEMO", False)
    return Settings(
        secret_key=_secret_key(demo),
        base_url=_env("BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
        demo=demo,
        invitation_days=_env_int("INVITATION_DAYS", 7),
        log_level=_env("LOG_LEVEL", "INFO"),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        workers=int(os.environ.get("WEB_CONCURRENCY", "1")),
        cig_name=_env("CIG_NAME", "CIG de démonstration"),
        database=DatabaseSettings(
            url=_env("DATABASE_URL", "sqlite+aiosqlite:///var/convergences.db"),
            echo=_env_bool("DATABASE_ECHO", False),
            pool_size=_env_int("DATABASE_POOL_SIZE", 10),
        ),
        passwords=PasswordSettings(
            memory_kib=_env_int("ARGON2_MEMORY_KIB", 19 * 1024),
            time_cost=_env_int("ARGON2_TIME_COST", 2),
            parallelism=_env_int("ARGON2_PARALLELISM", 1),
        ),
        sessions=SessionSettings(
            idle_minutes=_env_int("SESSION_IDLE_MINUTES", 30),
            absolute_hours=_env_int("SESSION_ABSOLUTE_HOURS", 12),
        ),
        throttle=ThrottleSettings(
            account_free_failures=_env_int("THROTTLE_ACCOUNT_FREE_FAILURES", 5),
            ip_free_failures=_env_int("THROTTLE_IP_FREE_FAILURES", 20),
            max_delay_seconds=_env_int("THROTTLE_MAX_DELAY_SECONDS", 15 * 60),
            account_global_free_failures=_env_int("THROTTLE_ACCOUNT_GLOBAL_FREE_FAILURES", 20),
            alert_after_failures=_env_int("THROTTLE_ALERT_AFTER_FAILURES", 10),
        ),
        mail=MailSettings(
            smtp_host=_env("SMTP_HOST"),
            smtp_port=_env_int("SMTP_PORT", 25),
            smtp_username=_env("SMTP_USERNAME"),
            smtp_password=_env("SMTP_PASSWORD"),
            smtp_starttls=_env_bool("SMTP_STARTTLS", False),
            smtp_tls=_env_bool("SMTP_TLS", False),
            sender=_env("MAIL_FROM", "Convergences <ne-pas-repondre@convergences.localhost>"),
        ),
        oidc=OidcSettings(
            access_token_seconds=_env_int("OIDC_ACCESS_TOKEN_SECONDS", 600),
            id_token_seconds=_env_int("OIDC_ID_TOKEN_SECONDS", 600),
            refresh_days=_env_int("OIDC_REFRESH_DAYS", 30),
            key_publish_hours=_env_int("OIDC_KEY_PUBLISH_HOURS", 24),
        ),
        retention=RetentionSettings(
            invitation_days=_env_int("RETENTION_INVITATION_DAYS", 30),
            mail_days=_env_int("RETENTION_MAIL_DAYS", 30),
            oidc_days=_env_int("RETENTION_OIDC_DAYS", 7),
            throttle_days=_env_int("RETENTION_THROTTLE_DAYS", 1),
            inactivity_warning_months=_env_int("RETENTION_INACTIVITY_WARNING_MONTHS", 6),
            inactivity_suspension_months=_env_int("RETENTION_INACTIVITY_SUSPENSION_MONTHS", 12),
            review_reminder_days=_env_int("RETENTION_REVIEW_REMINDER_DAYS", 7),
            connection_months=_env_int("RETENTION_CONNECTION_MONTHS", 12),
            journal_years=_env_int("RETENTION_JOURNAL_YEARS", 5),
        ),
        privacy=PrivacySettings(
            controller_name=_env("PRIVACY_CONTROLLER_NAME", _env("CIG_NAME", "CIG de démonstration")),
            controller_address=_env("PRIVACY_CONTROLLER_ADDRESS", PrivacySettings.controller_address),
            dpo_email=_env("PRIVACY_DPO_EMAIL", PrivacySettings.dpo_email),
            dpo_address=_env("PRIVACY_DPO_ADDRESS", PrivacySettings.dpo_address),
        ),
    )
