"""Shared bench helpers: paths, the environment, a real uvicorn server in a subprocess, statistics.

Everything stays on loopback; every loop in the bench is bounded by a count (and some by a time cap).
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench"
BIN = Path(sys.executable).parent
# A fixed key keeps the bench from creating var/secret_key; it signs nothing that outlives the run.
SECRET_KEY = "bench-secret-key-not-for-production-" + "x" * 24
CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def bench_env(db_path: Path, **extra: str) -> dict[str, str]:
    """The server's environment: the real settings loader, pointed at a temporary database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGENCES_")}
    # Keep the argon2 parameters the operator configured (the bench measures those).
    env.update({k: v for k, v in os.environ.items() if k.startswith("CONVERGENCES_ARGON2_")})
    env.update({
        "CONVERGENCES_DATABASE_URL": sqlite_url(db_path),
        "CONVERGENCES_SECRET_KEY": SECRET_KEY,
        "CONVERGENCES_LOG_LEVEL": "WARNING",
        "CONVERGENCES_BASE_URL": "http://127.0.0.1",
        **extra,
    })
    env.pop("WEB_CONCURRENCY", None)
    return env


def run_cli(args: Sequence[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / "convergences"), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"convergences {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def serve(db_path: Path, log_path: Path, *, startup_timeout: float = 30.0) -> Iterator[Server]:
    """`convergences serve --workers 1` (the real app under uvicorn) on a free loopback port."""
    port = free_port()
    env = bench_env(db_path)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "convergences"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(server.base_url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    if match is None:
        raise RuntimeError("no _csrf_token in the page")
    return match.group(1)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
            "max_ms": round(max(ms), 2) if ms else float("nan")}


def cpu_count() -> int:
    return os.cpu_count() or 1


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
