"""Figure 3: the OpenID Connect token endpoint on ONE uvicorn worker, and the login-to-application round trip.

The server is the real app (``convergences serve --workers 1``) on a temporary SQLite file, migrated and
seeded with the CLI; a confidential client is registered with the CLI too (``convergences client create
--application bip --redirect-uri https://bench.invalid/cb --alg ES256``, same environment as the server),
which prints its client_id and secret once. agent@bellerive.example (a grant on BIP) logs in once; then:

* token endpoint: codes are minted with GET /oidc/authorize (untimed, in batches well inside the code
  lifetime), then redeemed with POST /oidc/token (client_secret_basic, code, redirect_uri, code_verifier)
  by CONCURRENCY concurrent clients: requests/s. Each answer must be 200 JSON with an id_token.
* authorize + token round trip, sequential: p50 / p95.
* full login-to-application round trip of a fresh visitor (no cookie): authorize → 303 /login → GET the
  form → POST /login → 303 back to authorize → 303 with the code → POST /oidc/token: p50 / p95.

Baseline, in this process and in the same run: the raw ES256 signing rate of a key of the same kind,
through ``convergences.oidc.keys`` (``new_key`` then ``sign``: the same AES-GCM unwrap + JWS as the
server), on one thread like the server's single worker. Bursts of it run before the first token round and
after each round; the figure is the median of the per-round ratios, so that background load on a shared
machine affects figure and baseline alike.

Client secrets are 256-bit random values stored as a keyed SHA-256 (``hash_client_secret``:
"hmac-sha256$<hex>") and checked with ``client_secret_matches``; the bench checks that the stored value
is of that form and matches, and times that check too (microseconds). So a token request pays one ES256
signature and no argon2id: the rest of its cost — HTTP and form parsing, three SQLite transactions
(client lookup, burning the code, writing the access token), the claims — is what bounds the endpoint,
and the server's CPU per request next to the CPU of one signature says how much of it is cryptography.

The full login does verify the user's password with argon2id; its in-process floor is one sequential
argon2id verify against the agent's own stored hash (read from the seeded database, so the parameters
are exactly the server's) + one signature + one client-secret check, with verify bursts before and after
the full logins. Loopback only; every loop is bounded by a count, the timed phases also by TIME_CAP_S.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bench.common import (
    SECRET_KEY,
    VAR,
    bench_env,
    csrf_token,
    process_cpu_seconds,
    run_cli,
    serve,
    summary_ms,
)
from convergences.seed import DEMO_PASSWORD

AGENT = "agent@bellerive.example"
REDIRECT_URI = "https://bench.invalid/cb"
ROUNDS = 3              # timed token rounds, each between two signing bursts
CODES_PER_ROUND = 100   # 300 timed token requests in all (codes live 60 s: a round is minted then redeemed)
CONCURRENCY = 4         # concurrent token clients
WARMUP = 5              # untimed authorize + token round trips
ROUND_TRIPS = 60        # sequential authorize + token
FULL_LOGINS = 15        # fresh visitors (the /login limiter allows 60/min/IP: one address is enough)
TIME_CAP_S = 45.0       # hard stop for the timed phases
SIGN_N = 200            # ES256 signatures per baseline burst
SECRET_CHECKS = 2000    # client_secret_matches calls per baseline burst
VERIFY_SEQ = 4          # sequential argon2id verifies of the user's password, before and after the full logins


class Baseline:
    """Raw ES256 signing (convergences.oidc.keys) and the client-secret check, in this process; argon2id
    verifies of the agent's password hash for the full login's floor."""

    def __init__(self, db_path: Path, client_id: str, secret: str) -> None:
        from convergences.oidc import keys
        from convergences.oidc.services import client_secret_matches
        from convergences.security.passwords import PasswordService
        from convergences.settings import Settings, load_settings

        self.keys, self.secret, self.matches = keys, secret, client_secret_matches
        self.settings = Settings(secret_key=SECRET_KEY)  # the server's secret key (bench_env)
        self.rt = SimpleNamespace(settings=self.settings)  # all client_secret_matches reads of the runtime
        self.key = keys.new_key(self.settings, "ES256")
        with sqlite3.connect(db_path) as conn:
            self.stored = conn.execute("SELECT secret_hash FROM oidc_client WHERE client_id = ?",
                                       (client_id,)).fetchone()[0]
            self.password_hash = conn.execute("SELECT password_hash FROM account WHERE email = ?",
                                              (AGENT,)).fetchone()[0]
        if not self.stored.startswith("hmac-sha256$") or not self._check():
            raise RuntimeError("the client's stored secret is not the keyed SHA-256 this bench describes")
        self.service = PasswordService(load_settings().passwords)
        if self.service.hasher.check_needs_rehash(self.password_hash):
            raise RuntimeError("the agent's stored hash does not match the configured argon2 parameters")
        self.sign_n = self.sign_s = self.sign_cpu = 0.0
        self.check_n = self.check_s = 0.0
        self.verify_n = self.verify_s = self.verify_cpu = 0.0
        self._sign()  # warm-up
        self._verify()

    def _claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": "http://127.0.0.1", "sub": secrets.token_urlsafe(18), "aud": "cvg-bench", "iat": now,
                "exp": now + 600, "auth_time": now, "amr": ["pwd"], "sid": secrets.token_urlsafe(24),
                "azp": "cvg-bench", "at_hash": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
                "employer": {"siret": "21930999900015", "name": "Commune de Bellerive-sur-Marne"},
                "roles": ["consultation"]}

    def _sign(self) -> None:
        self.keys.sign(self.settings, self.key, self._claims())

    def _check(self) -> bool:
        return bool(self.matches(self.rt, self.stored, self.secret))

    def _verify(self) -> None:
        self.service.hasher.verify(self.password_hash, DEMO_PASSWORD)

    def burst(self) -> float:
        """One signing burst (and a client-secret check burst); returns this burst's signs/s."""
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(SIGN_N):
            self._sign()
        elapsed = time.perf_counter() - start
        self.sign_s += elapsed
        self.sign_n += SIGN_N
        self.sign_cpu += time.process_time() - cpu
        start = time.perf_counter()
        for _ in range(SECRET_CHECKS):
            self._check()
        self.check_s += time.perf_counter() - start
        self.check_n += SECRET_CHECKS
        return SIGN_N / elapsed

    def verify_burst(self) -> None:
        """Sequential argon2id verifies of the agent's password (the full login pays one)."""
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(VERIFY_SEQ):
            self._verify()
        self.verify_s += time.perf_counter() - start
        self.verify_n += VERIFY_SEQ
        self.verify_cpu += time.process_time() - cpu

    def summary(self) -> dict[str, Any]:
        p = self.service.settings
        out: dict[str, Any] = {
            "es256_signs_per_s": round(self.sign_n / self.sign_s, 1), "signs": int(self.sign_n),
            "ms_per_sign": round(1000 * self.sign_s / self.sign_n, 3),
            "cpu_ms_per_sign": round(1000 * self.sign_cpu / self.sign_n, 3),
            "client_secret_check_us": round(1e6 * self.check_s / self.check_n, 2),
            "client_secret_hash": "hmac-sha256",
            "argon2": {"type": "argon2id", "memory_kib": p.memory_kib, "time_cost": p.time_cost,
                       "parallelism": p.parallelism},
        }
        if self.verify_n:
            out.update({"password_verifies": int(self.verify_n),
                        "ms_per_password_verify": round(1000 * self.verify_s / self.verify_n, 2),
                        "cpu_ms_per_password_verify": round(1000 * self.verify_cpu / self.verify_n, 2)})
        return out


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(client_id: str, challenge: str) -> str:
    return "/oidc/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "scope": "openid",
        "state": secrets.token_urlsafe(12), "code_challenge": challenge, "code_challenge_method": "S256"})


def _code_from(response: httpx.Response) -> str:
    location = response.headers.get("location", "")
    if response.status_code != 303 or not location.startswith(REDIRECT_URI):
        raise RuntimeError(f"authorize answered {response.status_code} {location!r}: {response.text[:300]}")
    query = parse_qs(urlsplit(location).query)
    if "code" not in query:
        raise RuntimeError(f"authorize gave no code: {location}")
    return query["code"][0]


async def mint_code(http: httpx.AsyncClient, client_id: str) -> tuple[str, str]:
    verifier, challenge = _pkce()
    return _code_from(await http.get(authorize_url(client_id, challenge))), verifier


async def redeem(http: httpx.AsyncClient, client_id: str, secret: str, code: str, verifier: str) -> None:
    response = await http.post("/oidc/token", auth=(client_id, secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
    if response.status_code != 200:
        raise RuntimeError(f"token answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    if body.get("id_token", "").count(".") != 2 or not body.get("access_token"):
        raise RuntimeError(f"token answer without an id_token: {body}")


async def login(http: httpx.AsyncClient, next_url: str = "/") -> httpx.Response:
    page = await http.get("/login", params={"next": next_url})
    if page.status_code != 200:
        raise RuntimeError(f"GET /login answered {page.status_code}")
    response = await http.post("/login", data={"_csrf_token": csrf_token(page.text), "next": next_url,
                                               "email": AGENT, "password": DEMO_PASSWORD})
    if response.status_code != 303 or "cvg_session" not in response.cookies:
        raise RuntimeError(f"login answered {response.status_code}")
    return response


async def full_round_trip(base_url: str, client_id: str, secret: str) -> float:
    """A fresh visitor: authorize → login form → login → authorize → code → token."""
    verifier, challenge = _pkce()
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as http:
        start = time.perf_counter()
        first = await http.get(authorize_url(client_id, challenge))
        location = first.headers.get("location", "")
        if first.status_code != 303 or not location.startswith("/login?"):
            raise RuntimeError(f"authorize without a session answered {first.status_code} {location!r}")
        page = await http.get(location)
        next_url = parse_qs(urlsplit(location).query)["next"][0]
        posted = await http.post("/login", data={"_csrf_token": csrf_token(page.text), "next": next_url,
                                                 "email": AGENT, "password": DEMO_PASSWORD})
        back = posted.headers.get("location", "")
        if posted.status_code != 303 or not back.startswith("/oidc/authorize?"):
            raise RuntimeError(f"login answered {posted.status_code} {back!r}")
        code = _code_from(await http.get(back))
        await redeem(http, client_id, secret, code, verifier)
        return time.perf_counter() - start


async def drive(base_url: str, server_pid: int, client_id: str, secret: str, raw: Baseline) -> dict[str, Any]:
    deadline = time.perf_counter() + TIME_CAP_S
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as browser:
        await login(browser)
        for _ in range(WARMUP):
            code, verifier = await mint_code(browser, client_id)
            await redeem(browser, client_id, secret, code, verifier)
        token_clients = [httpx.AsyncClient(base_url=base_url, timeout=60.0) for _ in range(CONCURRENCY)]
        rounds: list[dict[str, float]] = []
        done = 0
        wall = server_cpu = 0.0
        try:
            for client in token_clients:  # open the connections (untimed)
                await client.get("/healthz")
            before = raw.burst()
            for _ in range(ROUNDS):
                if time.perf_counter() > deadline:
                    break
                codes = [await mint_code(browser, client_id) for _ in range(CODES_PER_ROUND)]
                queue = iter(codes)

                async def worker(http: httpx.AsyncClient, queue: Any = queue) -> int:
                    n = 0
                    for code, verifier in queue:
                        await redeem(http, client_id, secret, code, verifier)
                        n += 1
                    return n

                cpu = process_cpu_seconds(server_pid)
                start = time.perf_counter()
                n = sum(await asyncio.gather(*(worker(c) for c in token_clients)))
                elapsed = time.perf_counter() - start
                after_cpu = process_cpu_seconds(server_pid)
                if cpu is not None and after_cpu is not None:
                    server_cpu += after_cpu - cpu
                wall += elapsed
                done += n
                after = raw.burst()
                rate, sign_rate = n / elapsed, (before + after) / 2
                rounds.append({"token_per_s": round(rate, 2), "es256_signs_per_s": round(sign_rate, 1),
                               "ratio_vs_sign": round(rate / sign_rate, 4)})
                before = after
        finally:
            for client in token_clients:
                await client.aclose()

        trips: list[float] = []
        for _ in range(ROUND_TRIPS):
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            code, verifier = await mint_code(browser, client_id)
            await redeem(browser, client_id, secret, code, verifier)
            trips.append(time.perf_counter() - start)

    raw.verify_burst()
    fulls: list[float] = []
    for _ in range(FULL_LOGINS):
        if time.perf_counter() > deadline and fulls:
            break
        fulls.append(await full_round_trip(base_url, client_id, secret))
    raw.verify_burst()
    if not rounds or not trips:
        raise RuntimeError("the token bench hit its time cap before measuring anything")
    return {"token_requests": done, "wall_s": round(wall, 3), "token_per_s": round(done / wall, 2),
            "concurrency": CONCURRENCY, "rounds": rounds,
            "median_ratio_vs_sign": round(statistics.median(r["ratio_vs_sign"] for r in rounds), 4),
            "server_cpu_ms_per_token": round(1000 * server_cpu / done, 2) if server_cpu and done else None,
            # Share of the timed wall time the single worker spent on CPU (1.0 = one core saturated).
            "server_cpu_busy": round(server_cpu / wall, 2) if server_cpu and wall else None,
            "round_trip": summary_ms(trips), "full_login": summary_ms(fulls)}


def run() -> dict[str, Any]:
    os.environ.setdefault("CONVERGENCES_SECRET_KEY", SECRET_KEY)  # the in-process settings loader
    VAR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="token-", dir=VAR) as tmp:
        db_path = Path(tmp) / "token.db"
        env = bench_env(db_path)
        run_cli(["migrate"], env)
        run_cli(["seed"], env)
        created = json.loads(run_cli(["client", "create", "--application", "bip", "--redirect-uri", REDIRECT_URI,
                                      "--alg", "ES256"], env).splitlines()[-1])
        client_id, secret = created["client_id"], created["client_secret"]
        raw = Baseline(db_path, client_id, secret)
        with serve(db_path, Path(tmp) / "server.log") as server:
            http = asyncio.run(drive(server.base_url, server.process.pid, client_id, secret, raw))
    base = raw.summary()
    sign_ms, check_ms = base["ms_per_sign"], base["client_secret_check_us"] / 1000
    # Irreducible crypto: a token request pays one client-secret check (keyed SHA-256) + one ES256
    # signature (ID token); a full login adds the argon2id verify of the user's password.
    floor_trip = sign_ms + check_ms
    floor_full = base["ms_per_password_verify"] + sign_ms + check_ms
    share = None
    if http["server_cpu_ms_per_token"]:
        share = round(base["cpu_ms_per_sign"] / http["server_cpu_ms_per_token"], 3)
    return {"http": http, "raw": base,
            "ratio_vs_sign": http["median_ratio_vs_sign"],
            "ratio_vs_sign_overall": round(http["token_per_s"] / base["es256_signs_per_s"], 4),
            "crypto_floor_ms": {"round_trip": round(floor_trip, 3), "full_login": round(floor_full, 2)},
            "ratio_round_trip_p50": round(http["round_trip"]["p50_ms"] / floor_trip, 2),
            "ratio_round_trip_p95": round(http["round_trip"]["p95_ms"] / floor_trip, 2),
            "ratio_full_login_p50": round(http["full_login"]["p50_ms"] / floor_full, 2),
            "ratio_full_login_p95": round(http["full_login"]["p95_ms"] / floor_full, 2),
            # Load-independent: the share of the server's CPU per token request that is the ES256 signature
            # (the client-secret check is microseconds and left out).
            "sign_share_of_server_cpu": share}

if __name__ == "__main__":  # python -m bench.token (not bench/token.py: it would shadow the stdlib "token")
    print(json.dumps(run(), indent=2))
