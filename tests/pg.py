"""A throwaway PostgreSQL cluster: initdb + pg_ctl on a temp dir, unix socket only.

As root (CI), initdb refuses to run: the cluster is then created and started as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if Path(directory, "initdb").exists():
            return Path(directory)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresCluster:
    bindir: Path
    datadir: Path
    socketdir: Path
    port: int
    run_as: list[str]

    @classmethod
    def start(cls, base: Path) -> PostgresCluster | None:
        bindir = _bindir()
        if bindir is None:
            return None
        run_as: list[str] = []
        if os.geteuid() == 0:
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(base, "postgres", "postgres")
            os.chmod(base, 0o700)
        datadir, socketdir = base / "data", base / "sock"
        socketdir.mkdir()
        if run_as:
            shutil.chown(socketdir, "postgres", "postgres")
        port = 55432 + os.getpid() % 1000
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C"],
                       check=True, capture_output=True)
        options = (f"-k {socketdir} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options, "-w", "-l",
                        str(base / "log"), "start"], check=True, capture_output=True)
        return cls(bindir, datadir, socketdir, port, run_as)

    def psql(self, sql: str) -> None:
        subprocess.run([*self.run_as, str(self.bindir / "psql"), "-h", str(self.socketdir), "-p", str(self.port),
                        "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                       check=True, capture_output=True)

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@/{name}?host={self.socketdir}&port={self.port}"

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "C.utf8" in out or "C.UTF-8" in out
