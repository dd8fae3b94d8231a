"""Figure 1: password logins per second on ONE uvicorn worker, next to raw argon2id verifies per second.

The server is the real app (``convergences serve --workers 1``) on a temporary SQLite file, migrated and
seeded with the CLI. Each login is what a browser does: GET /login (CSRF cookie + form), then POST /login
with the demo password, which must answer 303 and set a session cookie.

The /login POST carries Litestar's rate limiter (60 requests/minute per client IP, ``auth_rate_limit``).
Left alone it would cap the bench at 1 login/s, measuring the limiter rather than the login. Each client
therefore connects from its own loopback address (127.0.0.11, 127.0.0.12, …; uvicorn reports the real
peer address, and ``convergences serve`` only trusts X-Forwarded-For from 127.0.0.1), and the number of
addresses is chosen so that no address exceeds 50 POSTs in the run. The per-account/IP throttle only
counts failures, and every login here succeeds.

The baseline is the same argon2id verification, in this process, against a hash read from the seeded
database (so the parameters are exactly the server's): sequentially, then with a thread pool of
cpu_count threads (the server's own concurrency bound for hashing). The logins run in ROUNDS rounds with
a short verify burst before the first and after each round, and the figure is the median of the per-round
ratios, so that background load on a shared machine affects figure and baseline alike. CPU time (server
process from /proc, verifier from process_time) gives a second, load-independent view: the share of the
server's CPU per login that is the argon2id verify itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import VAR, bench_env, cpu_count, csrf_token, process_cpu_seconds, run_cli, serve, summary_ms
from convergences.seed import DEMO_ACCOUNTS, DEMO_PASSWORD

ROUNDS = 4              # timed rounds, each between two baseline bursts (background load drifts)
LOGINS_PER_ROUND = 50   # 200 timed logins in all (bounded)
WARMUP_PER_CLIENT = 1   # untimed logins per client before the clock starts
CONCURRENCY = 8         # concurrent clients
MAX_POSTS_PER_IP = 50   # stays under the 60/minute limiter with margin for the warm-up
TIME_CAP_S = 60.0       # hard stop for the timed phase
VERIFY_SEQ = 8          # sequential raw verifies per burst
VERIFY_POOL = 16        # raw verifies through the thread pool per burst
VERIFY_SERVICE = 32     # PasswordService.verify calls (once, after the rounds)


def _hasher_and_hash(db_path: Path) -> tuple[Any, str]:
    from convergences.security.passwords import PasswordService
    from convergences.settings import load_settings

    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT password_hash FROM account WHERE email = ?",
                           (DEMO_ACCOUNTS[0].email,)).fetchone()
    stored = row[0]
    service = PasswordService(load_settings().passwords)
    if service.hasher.check_needs_rehash(stored):
        raise RuntimeError("the seeded hash does not match the configured argon2 parameters")
    return service, stored


class RawVerifier:
    """Bursts of argon2id verifies in this process, against the server's own stored hash."""

    def __init__(self, db_path: Path) -> None:
        self.service, self.stored = _hasher_and_hash(db_path)
        self.threads = cpu_count()
        self.pool = ThreadPoolExecutor(self.threads)
        self.seq_n = self.seq_s = self.pool_n = self.pool_s = self.cpu_s = 0.0
        self._verify()  # warm-up
        list(self.pool.map(self._verify, range(self.threads)))

    def _verify(self, _: object = None) -> None:
        self.service.hasher.verify(self.stored, DEMO_PASSWORD)

    def burst(self) -> float:
        """One sequential and one pooled burst; returns the pooled rate (verifies/s) of this burst."""
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(VERIFY_SEQ):
            self._verify()
        self.seq_s += time.perf_counter() - start
        self.seq_n += VERIFY_SEQ
        start = time.perf_counter()
        list(self.pool.map(self._verify, range(VERIFY_POOL)))
        elapsed = time.perf_counter() - start
        self.pool_s += elapsed
        self.pool_n += VERIFY_POOL
        self.cpu_s += time.process_time() - cpu  # all threads of this process
        return VERIFY_POOL / elapsed

    def service_rate(self) -> float:
        """The app's own path without HTTP or database: PasswordService.verify on an event loop."""
        async def go() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(self.service.verify(self.stored, DEMO_PASSWORD)
                                   for _ in range(VERIFY_SERVICE)))
            return time.perf_counter() - start

        return VERIFY_SERVICE / asyncio.run(go())

    def summary(self) -> dict[str, Any]:
        params = self.service.settings
        return {
            "argon2": {"type": "argon2id", "memory_kib": params.memory_kib, "time_cost": params.time_cost,
                       "parallelism": params.parallelism},
            "sequential_per_s": round(self.seq_n / self.seq_s, 2), "sequential_n": int(self.seq_n),
            "pool_threads": self.threads, "pool_per_s": round(self.pool_n / self.pool_s, 2),
            "pool_n": int(self.pool_n),
            "ms_per_verify_sequential": round(1000 * self.seq_s / self.seq_n, 2),
            "cpu_ms_per_verify": round(1000 * self.cpu_s / (self.seq_n + self.pool_n), 2),
        }

    def close(self) -> None:
        self.pool.shutdown()


async def _login_once(client: httpx.AsyncClient, email: str) -> tuple[float, int]:
    client.cookies.clear()  # a fresh browser: no session, no CSRF cookie yet
    start = time.perf_counter()
    page = await client.get("/login")
    if page.status_code != 200:
        raise RuntimeError(f"GET /login answered {page.status_code}")
    response = await client.post("/login", data={"_csrf_token": csrf_token(page.text), "next": "/",
                                                 "email": email, "password": DEMO_PASSWORD})
    elapsed = time.perf_counter() - start
    if response.status_code == 303 and "cvg_session" not in response.cookies:
        raise RuntimeError("303 without a session cookie")
    return elapsed, response.status_code


async def drive_logins(base_url: str, server_pid: int, raw: RawVerifier) -> dict[str, Any]:
    """ROUNDS rounds of logins; a raw-verify burst before the first and after every round."""
    total = ROUNDS * LOGINS_PER_ROUND
    emails = [a.email for a in DEMO_ACCOUNTS]
    clients_n = max(CONCURRENCY, -(-(total + CONCURRENCY * WARMUP_PER_CLIENT) // MAX_POSTS_PER_IP))
    addresses = [f"127.0.0.{11 + i}" for i in range(clients_n)]
    clients = [httpx.AsyncClient(base_url=base_url, timeout=60.0,
                                 transport=httpx.AsyncHTTPTransport(local_address=address))
               for address in addresses]
    per_address = dict.fromkeys(addresses, 0)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    rounds: list[dict[str, float]] = []
    wall = server_cpu = client_cpu = 0.0
    try:
        # Warm-up (untimed): connections, templates, the first session writes.
        for i, client in enumerate(clients[:CONCURRENCY]):
            for _ in range(WARMUP_PER_CLIENT):
                per_address[addresses[i]] += 1
                _, status = await _login_once(client, emails[i % len(emails)])
                if status != 303:
                    raise RuntimeError(f"warm-up login answered {status}")
        free: asyncio.Queue[int] = asyncio.Queue()
        # Least-used addresses first, so that every address stays under the limiter's budget.
        for i in sorted(range(len(clients)), key=lambda i: per_address[addresses[i]]):
            free.put_nowait(i)
        deadline = time.perf_counter() + TIME_CAP_S
        before = raw.burst()
        counter = iter(range(total))
        for _ in range(ROUNDS):
            todo = iter(range(LOGINS_PER_ROUND))

            async def worker(todo: Any = todo) -> int:
                done = 0
                while time.perf_counter() < deadline and next(todo, None) is not None:
                    n = next(counter)
                    i = await free.get()
                    per_address[addresses[i]] += 1
                    try:
                        elapsed, status = await _login_once(clients[i], emails[n % len(emails)])
                    finally:
                        free.put_nowait(i)
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(elapsed)
                    done += status == 303
                return done

            cpu_server, cpu_client = process_cpu_seconds(server_pid), time.process_time()
            start = time.perf_counter()
            ok = sum(await asyncio.gather(*(worker() for _ in range(CONCURRENCY))))
            elapsed = time.perf_counter() - start
            client_cpu += time.process_time() - cpu_client
            after_server = process_cpu_seconds(server_pid)
            if cpu_server is not None and after_server is not None:
                server_cpu += after_server - cpu_server
            wall += elapsed
            after = raw.burst()
            rate = ok / elapsed
            rounds.append({"logins_per_s": round(rate, 2), "pool_verifies_per_s": round((before + after) / 2, 2),
                           "ratio": round(rate / ((before + after) / 2), 3)})
            before = after
    finally:
        for client in clients:
            await client.aclose()
    ok = statuses.get(303, 0)
    if ok != sum(statuses.values()):
        raise RuntimeError(f"some logins did not answer 303: {statuses} (a 429 means the rate limiter capped "
                           "the bench)")
    return {"logins": ok, "wall_s": round(wall, 3), "logins_per_s": round(ok / wall, 2),
            "concurrency": CONCURRENCY, "source_addresses": len(addresses),
            "max_posts_per_address": max(per_address.values()),
            "statuses": {str(k): v for k, v in statuses.items()}, "latency": summary_ms(latencies),
            "rounds": rounds, "median_round_ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
            # Where the cores went: the server (argon2 threads + event loop) and this HTTP client.
            "server_cpu_ms_per_login": round(1000 * server_cpu / ok, 2) if server_cpu and ok else None,
            "client_cpu_ms_per_login": round(1000 * client_cpu / ok, 2) if ok else None}


def run() -> dict[str, Any]:
    VAR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="login-", dir=VAR) as tmp:
        db_path = Path(tmp) / "login.db"
        env = bench_env(db_path)
        run_cli(["migrate"], env)
        run_cli(["seed"], env)
        verifier = RawVerifier(db_path)
        try:
            with serve(db_path, Path(tmp) / "server.log") as server:
                http = asyncio.run(drive_logins(server.base_url, server.process.pid, verifier))
            service_rate = verifier.service_rate()
        finally:
            verifier.close()
    raw = {**verifier.summary(), "service_verify_per_s": round(service_rate, 2)}
    cpu_ratio = None
    if http["server_cpu_ms_per_login"]:
        cpu_ratio = round(raw["cpu_ms_per_verify"] / http["server_cpu_ms_per_login"], 3)
    return {"http": http, "raw": raw,
            # The figure: logins/s ÷ pooled verifies/s, per round against the bursts around it.
            "ratio_vs_pool": http["median_round_ratio"],
            "ratio_vs_pool_overall": round(http["logins_per_s"] / raw["pool_per_s"], 3),
            "ratio_vs_sequential": round(http["logins_per_s"] / raw["sequential_per_s"], 3),
            # Load-independent: the share of the server's CPU per login that is the argon2id verify.
            "argon2_share_of_server_cpu": cpu_ratio}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
