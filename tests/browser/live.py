"""The real app served by uvicorn in a subprocess, on a migrated and seeded SQLite file, for Chromium.

Used by ``tests/browser/conftest.py`` (session fixture) and by ``tests/browser/screenshots.py``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page

from tests.helpers import totp_code_blocking

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CONVERGENCES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(process: subprocess.Popen[bytes], url: str, timeout: float, name: str, log: Callable[[], str]) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout`` seconds pass (False); a process that exits
    meanwhile raises, with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _bin(name: str) -> str:
    """A console script of the interpreter running the tests (the project's virtualenv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else shutil.which(name) or name


@dataclass
class LiveServer:
    directory: Path
    smtp_port: int | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "uvicorn.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGENCES_")}
        env.update({
            "CONVERGENCES_DATABASE_URL": f"sqlite+aiosqlite:///{self.directory}/convergences.db",
            "CONVERGENCES_SECRET_KEY": "browser-tests-" + secrets.token_urlsafe(32),
            "CONVERGENCES_BASE_URL": self.url,
            "CONVERGENCES_DEMO": "1",
            "CONVERGENCES_LOG_LEVEL": "WARNING",
        })
        if self.smtp_port is not None:
            env.update({"CONVERGENCES_SMTP_HOST": "127.0.0.1", "CONVERGENCES_SMTP_PORT": str(self.smtp_port)})
        return env

    def start(self, timeout: float = 30.0) -> LiveServer:
        env = self.env()
        for command in ("migrate", "seed"):
            done = subprocess.run([_bin("convergences"), command], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"`convergences {command}` failed:\n{done.stdout}\n{done.stderr}")
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "convergences.asgi:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if answers(self.process, self.url + "/healthz", timeout, "uvicorn", self.log):
            return self
        self.stop()
        raise RuntimeError(f"the server did not answer /healthz within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def login(page: Page, email: str, password: str) -> None:
    """Log in through the form with the keyboard only (tab order: address, then password)."""
    page.goto("/login")
    page.get_by_label("Adresse électronique professionnelle").focus()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    if "/login/second-facteur" in page.url:
        # The second factor of a staff account: the code of its demo secret (tests.helpers.totp_code_blocking).
        page.get_by_label("Code de vérification").fill(totp_code_blocking(origin(page), email))
        with page.expect_navigation():
            page.get_by_role("button", name="Valider").click()


def origin(page: Page) -> str:
    """Names the live server's database for the TOTP helpers (one server, one database)."""
    parts = urlsplit(page.url)
    return f"{parts.scheme}://{parts.netloc}"
