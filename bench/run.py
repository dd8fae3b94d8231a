"""`make bench`: every figure next to a baseline measured in the same run; results in var/bench/results.json.

The ratios are the figures to compare between machines and commits; nothing here asserts a timing.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, Python puts bench/ itself first on sys.path: bench/token.py would then shadow the
# standard library's "token" module (imported by tokenize, inspect…). Only the project root stays.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import SECRET_KEY, VAR, cpu_count  # noqa: E402

# The in-process measurements read the same settings loader as the server (never var/secret_key).
os.environ["CONVERGENCES_SECRET_KEY"] = SECRET_KEY

from bench import grid, login, token  # noqa: E402


def _row(figure: str, value: str, baseline: str, ratio: str) -> tuple[str, str, str, str]:
    return figure, value, baseline, ratio


def table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("Figure", "Value", "Baseline (same run)", "Ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main() -> int:
    started = time.perf_counter()
    VAR.mkdir(parents=True, exist_ok=True)
    print(f"Convergences bench — {platform.python_implementation()} {platform.python_version()}, "
          f"{cpu_count()} CPU, {platform.machine()}", flush=True)

    print("[1/3] password logins (real server, one uvicorn worker)…", flush=True)
    lg = login.run()
    print("[2/3] agents grid fragment (10 000 agents / 100 000 accounts)…", flush=True)
    gr = grid.run()
    print("[3/3] OpenID Connect token endpoint and login-to-application round trip (one worker)…", flush=True)
    tk = token.run()

    h, raw = lg["http"], lg["raw"]
    a = raw["argon2"]
    hz = gr["healthz"]["p50_ms"]
    rows = [
        _row(f"Logins/s, 1 worker ({h['concurrency']} clients, GET+POST /login → 303)",
             f"{h['logins_per_s']:.1f}/s",
             f"argon2id verifies/s, pool of {raw['pool_threads']} threads: {raw['pool_per_s']:.1f}/s",
             f"{lg['ratio_vs_pool']:.2f}"),
        _row("", "", f"argon2id verifies/s, sequential: {raw['sequential_per_s']:.1f}/s",
             f"{lg['ratio_vs_sequential']:.2f}"),
    ]
    if lg["argon2_share_of_server_cpu"] is not None:
        rows.append(_row("Server CPU per login", f"{h['server_cpu_ms_per_login']:.1f} ms",
                         f"CPU per argon2id verify: {raw['cpu_ms_per_verify']:.1f} ms",
                         f"{1 / lg['argon2_share_of_server_cpu']:.2f}"))
    rows += [
        _row(f"Agents grid fragment p50 ({gr['grid']['n']} requests)", f"{gr['grid']['p50_ms']:.1f} ms",
             f"GET /healthz p50 (interleaved): {hz:.2f} ms", f"{gr['ratio_p50']:.1f}"),
        _row("Agents grid fragment p95", f"{gr['grid']['p95_ms']:.1f} ms",
             f"GET /healthz p50 (interleaved): {hz:.2f} ms", f"{gr['ratio_p95']:.1f}"),
    ]
    if "server_cpu_ms" in gr:
        c = gr["server_cpu_ms"]
        rows.append(_row("Server CPU per grid fragment", f"{c['grid']:.1f} ms",
                         f"Server CPU per /healthz: {c['healthz']:.2f} ms",
                         f"{c['grid'] / c['healthz']:.1f}" if c["healthz"] else "n/a"))
    t, tr = tk["http"], tk["raw"]
    floor = tk["crypto_floor_ms"]
    trip_base = f"1 ES256 sign + 1 client-secret check in-process: {floor['round_trip']:.2f} ms"
    rows += [
        _row(f"Token endpoint req/s, 1 worker ({t['concurrency']} clients, code → 200 + ES256 id_token)",
             f"{t['token_per_s']:.1f}/s",
             f"raw ES256 signs/s (oidc.keys new_key + sign, 1 thread): {tr['es256_signs_per_s']:.0f}/s",
             f"{tk['ratio_vs_sign']:.4f}"),
    ]
    if tk["sign_share_of_server_cpu"] is not None:
        rows.append(_row("Server CPU per token request", f"{t['server_cpu_ms_per_token']:.1f} ms",
                         f"CPU per ES256 sign: {tr['cpu_ms_per_sign']:.2f} ms",
                         f"{1 / tk['sign_share_of_server_cpu']:.1f}"))
    rows += [
        _row(f"Authorize + token round trip p50 ({t['round_trip']['n']})", f"{t['round_trip']['p50_ms']:.1f} ms",
             trip_base, f"{tk['ratio_round_trip_p50']:.1f}"),
        _row("Authorize + token round trip p95", f"{t['round_trip']['p95_ms']:.1f} ms",
             trip_base, f"{tk['ratio_round_trip_p95']:.1f}"),
        _row(f"Full login-to-application round trip p50 ({t['full_login']['n']} fresh visitors)",
             f"{t['full_login']['p50_ms']:.1f} ms",
             f"1 argon2id verify (password) + 1 sign + 1 check in-process: {floor['full_login']:.1f} ms",
             f"{tk['ratio_full_login_p50']:.2f}"),
        _row("Full login-to-application round trip p95", f"{t['full_login']['p95_ms']:.1f} ms",
             f"1 argon2id verify (password) + 1 sign + 1 check in-process: {floor['full_login']:.1f} ms",
             f"{tk['ratio_full_login_p95']:.2f}"),
    ]
    print()
    print(table(rows))
    print()
    rounds = ", ".join(f"{r['ratio']:.2f}" for r in h["rounds"])
    print(f"Logins: {h['logins']} in {h['wall_s']:.1f} s from {h['source_addresses']} loopback addresses "
          f"(≤ {h['max_posts_per_address']} POSTs each; the limiter allows 60/min/IP); latency p50 "
          f"{h['latency']['p50_ms']:.0f} ms, p95 {h['latency']['p95_ms']:.0f} ms. Ratio = median of the per-round "
          f"ratios ({rounds}); overall {lg['ratio_vs_pool_overall']:.2f}.")
    print(f"argon2id m={a['memory_kib']} KiB t={a['time_cost']} p={a['parallelism']}: "
          f"{raw['ms_per_verify_sequential']:.1f} ms/verify; PasswordService.verify in-process "
          f"{raw['service_verify_per_s']:.1f}/s; the HTTP client used {h['client_cpu_ms_per_login']:.1f} ms CPU "
          f"per login on the same {cpu_count()} cores.")
    d = gr["dataset"]
    print(f"Grid data: {d['accounts']} accounts, {d['employer_agents']} agents in the employer "
          f"({d['employer_grants']} grants), {d['cache_file']}"
          + (f" (built in {d['build_s']:.1f} s)" if d["built_now"] else " (cached)"))
    tr_rounds = ", ".join(f"{r['ratio_vs_sign']:.4f}" for r in t["rounds"])
    cpu_note = ""
    if tk["sign_share_of_server_cpu"] is not None:
        cpu_note = (f" The signature is {100 * tk['sign_share_of_server_cpu']:.1f} % of the server's "
                    f"{t['server_cpu_ms_per_token']:.1f} ms CPU per request"
                    + (f", and the worker was on CPU {100 * t['server_cpu_busy']:.0f} % of the timed wall time"
                       if t["server_cpu_busy"] is not None else "") + ".")
    share = tk["sign_share_of_server_cpu"]
    rest = ("the rest of the request (HTTP and form parsing, three SQLite transactions: client lookup, burning "
            "the code, writing the access token; the claims)")
    bound = (f"neither bounds the endpoint, {rest} does" if share is not None and share < 0.5
             else f"the signature bounds the endpoint, then {rest}" if share is not None
             else f"the server's CPU per request is not available here to split signature and {rest}")
    print(f"Token endpoint: {t['token_requests']} code exchanges in {t['wall_s']:.1f} s (ratio to the signing rate "
          f"per round: {tr_rounds}). Each checks the client secret with a keyed SHA-256 "
          f"({tr['client_secret_check_us']:.1f} µs, no argon2id) and signs one ES256 ID token "
          f"({tr['ms_per_sign']:.2f} ms incl. key unwrap): {bound}.{cpu_note} "
          f"Full login: one argon2id verify of the password "
          f"({tr['ms_per_password_verify']:.1f} ms in-process, m={tr['argon2']['memory_kib']} KiB "
          f"t={tr['argon2']['time_cost']} p={tr['argon2']['parallelism']}).")
    print()
    term_rows = [(q["label"], ",".join(map(str, q["pages"])), str(q["matches"]), f"{q['p50_ms']:.1f}",
                  f"{q['p95_ms']:.1f}") for q in gr["per_query"]]
    head = ("Search term", "Pages", "Matches", "p50 ms", "p95 ms")
    widths = [max(len(r[i]) for r in [head, *term_rows]) for i in range(5)]
    print("  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)))
    for r in term_rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))

    results = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": cpu_count(),
               "python": platform.python_version(), "login": lg, "grid": gr, "token": tk,
               "elapsed_s": round(time.perf_counter() - started, 1)}
    (VAR / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nTotal {results['elapsed_s']:.0f} s; results in {(VAR / 'results.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
