"""The portal for the relying-party tests: ``tests/browser/live.py``'s live server, plus its CLI."""

from __future__ import annotations

import subprocess

from tests.browser.live import ROOT, LiveServer, _bin


class Portal(LiveServer):
    """The live server with one environment for its whole life: the CLI must share its secret key."""

    _frozen_env: dict[str, str] | None = None

    def env(self) -> dict[str, str]:
        if self._frozen_env is None:
            self._frozen_env = super().env()
        return dict(self._frozen_env)

    def cli(self, *args: str) -> str:
        done = subprocess.run([_bin("convergences"), *args], cwd=ROOT, env=self.env(), capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"`convergences {' '.join(args)}` failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}")
        return done.stdout
