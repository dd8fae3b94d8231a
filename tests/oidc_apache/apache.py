"""Apache httpd + mod_auth_openidc as a real third-party OpenID Connect relying party, on a temp dir.

Debian's ``apache2`` binary is started directly with our own config (``-f``), in the foreground, so
Debian's ``/etc/apache2`` and its ``envvars`` are never used. As root (CI), Apache refuses to serve
requests from root: the children run as ``www-data`` and the temp dir is made readable.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.browser.live import answers, free_port

APACHE = os.environ.get("CONVERGENCES_APACHE", "/usr/sbin/apache2")
MODULES = Path(os.environ.get("CONVERGENCES_APACHE_MODULES", "/usr/lib/apache2/modules"))
NEEDED_MODULES = ["mpm_event", "authz_core", "authz_user", "authn_core", "auth_openidc", "headers", "mime",
                  "alias", "dir", "env", "log_config", "unixd"]

PROTECTED_MARKER = "Contenu protégé de BIP (derrière mod_auth_openidc)"


def _compiled_in() -> set[str]:
    done = subprocess.run([APACHE, "-l"], capture_output=True, text=True, timeout=30)
    return {line.strip().removesuffix(".c") for line in done.stdout.splitlines() if line.strip().endswith(".c")}


def missing() -> str | None:
    """Why Apache + mod_auth_openidc cannot run here, or None."""
    if not Path(APACHE).exists():
        return f"Apache httpd not found at {APACHE}"
    built_in = _compiled_in()
    for name in NEEDED_MODULES:
        if f"mod_{name}" not in built_in and not (MODULES / f"mod_{name}.so").exists():
            return f"Apache module mod_{name}.so not found in {MODULES}"
    return None


@dataclass
class OidcClient:
    client_id: str
    client_secret: str


@dataclass
class Apache:
    directory: Path
    metadata_url: str
    client: OidcClient
    port: int = field(default_factory=free_port)
    token_endpoint_auth: str = "client_secret_basic"
    passphrase: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/protected/redirect_uri"

    @property
    def backchannel_logout_uri(self) -> str:
        return f"{self.redirect_uri}?logout=backchannel"

    @property
    def logged_out_url(self) -> str:
        return f"{self.url}/public/logged-out.html"

    @property
    def conf_path(self) -> Path:
        return self.directory / "httpd.conf"

    @property
    def error_log_path(self) -> Path:
        return self.directory / "logs" / "error.log"

    @property
    def access_log_path(self) -> Path:
        return self.directory / "logs" / "access.log"

    def config(self) -> str:
        d = self.directory
        as_root = os.geteuid() == 0
        # Debian builds log_config and unixd in: loading them again is an error, hence the IfModule.
        modules = "\n".join(f"<IfModule !mod_{name}.c>\n    LoadModule {name}_module {MODULES}/mod_{name}.so\n"
                            "</IfModule>" for name in NEEDED_MODULES)
        return f"""\
ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile "{d}/run/httpd.pid"
DefaultRuntimeDir "{d}/run"
Mutex file:{d}/run default
ErrorLog "{d}/logs/error.log"
LogLevel warn auth_openidc:debug
{modules}
{"User www-data" if as_root else ""}
{"Group www-data" if as_root else ""}
StartServers 1
ServerLimit 1
ThreadsPerChild 25
MaxRequestWorkers 25
MinSpareThreads 1
MaxSpareThreads 25
LogFormat "%h %l %u %t \\"%r\\" %>s %b" common
CustomLog "{d}/logs/access.log" common
TypesConfig /dev/null
AddType text/html .html
AddDefaultCharset utf-8
DocumentRoot "{d}/htdocs"
DirectoryIndex index.html
<Directory />
    Require all denied
    AllowOverride None
</Directory>
<Directory "{d}/htdocs">
    Require all granted
</Directory>

OIDCProviderMetadataURL {self.metadata_url}
OIDCClientID {self.client.client_id}
OIDCClientSecret {self.client.client_secret}
OIDCRedirectURI {self.redirect_uri}
OIDCCryptoPassphrase {self.passphrase}
OIDCScope "openid email profile"
OIDCProviderTokenEndpointAuth {self.token_endpoint_auth}
OIDCRemoteUserClaim email
OIDCPassClaimsAs environment
OIDCPassIDTokenAs claims serialized
OIDCPassUserInfoAs claims json
OIDCSessionType server-cache
OIDCCacheType shm
OIDCDefaultLoggedOutURL {self.logged_out_url}
OIDCHTTPTimeoutLong 10
OIDCHTTPTimeoutShort 5

<Location /protected>
    AuthType openid-connect
    Require valid-user
    Header set X-Remote-User "expr=%{{REMOTE_USER}}"
    Header set X-Claim-Sub "%{{OIDC_CLAIM_sub}}e"
    Header set X-Claim-Email "%{{OIDC_CLAIM_email}}e"
    Header set X-Claim-Name "%{{OIDC_CLAIM_name}}e"
    Header set X-Claim-Employer "%{{OIDC_CLAIM_employer}}e"
    Header set X-Claim-Amr "%{{OIDC_CLAIM_amr}}e"
    Header set X-Claim-Iss "%{{OIDC_CLAIM_iss}}e"
    Header set X-Id-Token "%{{OIDC_id_token}}e"
    Header set X-Userinfo-Json "%{{OIDC_userinfo_json}}e"
</Location>
"""

    def write(self) -> None:
        for sub in ("logs", "run", "htdocs/protected", "htdocs/public"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "htdocs/protected/index.html").write_text(
            f"<!doctype html><title>BIP</title><p>{PROTECTED_MARKER}</p>\n", encoding="utf-8")
        (self.directory / "htdocs/public/logged-out.html").write_text(
            "<!doctype html><title>BIP</title><p>Déconnecté de BIP.</p>\n", encoding="utf-8")
        (self.directory / "htdocs/public/ping.html").write_text("pong\n", encoding="utf-8")
        self.conf_path.write_text(self.config(), encoding="utf-8")
        if os.geteuid() == 0:  # the children (www-data) read the documents
            for path in [self.directory, *self.directory.rglob("*")]:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def configtest(self) -> subprocess.CompletedProcess[str]:
        self.write()
        return subprocess.run([APACHE, "-d", str(self.directory), "-f", str(self.conf_path), "-t"],
                              capture_output=True, text=True, timeout=30, env=_env())

    def start(self, timeout: float = 20.0) -> Apache:
        self.write()
        stdout = (self.directory / "logs" / "stdout.log").open("wb")
        self.process = subprocess.Popen([APACHE, "-d", str(self.directory), "-f", str(self.conf_path),
                                         "-DFOREGROUND"], stdout=stdout, stderr=subprocess.STDOUT, env=_env())
        if answers(self.process, self.url + "/public/ping.html", timeout, "apache2", self.log):
            return self
        self.stop()
        raise RuntimeError(f"Apache did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        parts = []
        for path in (self.directory / "logs" / "stdout.log", self.error_log_path):
            if path.exists():
                parts.append(f"--- {path.name}\n" + path.read_text(errors="replace"))
        return "\n".join(parts)

    def error_log_tail(self, lines: int = 60, *, level: str | None = None) -> str:
        text = self.error_log_path.read_text(errors="replace") if self.error_log_path.exists() else ""
        kept = [line for line in text.splitlines() if level is None or f":{level}]" in line]
        return "\n".join(kept[-lines:])

    def mark(self) -> tuple[int, int]:
        """Where the access and error logs end now, for :meth:`since`."""
        return tuple(p.stat().st_size if p.exists() else 0  # type: ignore[return-value]
                     for p in (self.access_log_path, self.error_log_path))

    def since(self, mark: tuple[int, int]) -> tuple[list[str], list[str]]:
        """The access and error log lines written after ``mark``."""
        out = []
        for path, offset in zip((self.access_log_path, self.error_log_path), mark, strict=True):
            with path.open("rb") as f:
                f.seek(offset)
                out.append(f.read().decode(errors="replace").splitlines())
        return out[0], out[1]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM to the parent: it stops its children, removes its pid file
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _env() -> dict[str, str]:
    # The Debian binary needs none of /etc/apache2/envvars with our own config; keep the locale neutral.
    env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_")}
    env["LANG"] = "C"
    return env
