"""Figure 2: the agents-grid fragment (htmx) for an employer of 10,000 agents in 100,000 accounts.

The database is migrated with ``convergences.cli.migrate`` then filled with bulk inserts (SQLAlchemy
Core ``insert`` + executemany). It is cached under var/bench/ keyed by ``DATA_VERSION`` and a hash of
the migration files, so reruns only copy it. Each run works on a copy (logins write sessions).

A référent of the big employer logs in for real (POST /login), then GETs
/employeurs/<id>/agents?q=<term>&page=<n> with ``HX-Request: true`` (the table fragment), sequentially,
over terms that match many, some, one or no agents, and over several pages. The baseline is the p50
of GET /healthz (one trivial query) against the same server, interleaved with the grid requests (two
after each) so that background load weighs on both alike. The server's CPU time (/proc) is summed over
each kind of request as a load-independent second view.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import sqlite3
import tempfile
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, VAR, csrf_token, process_cpu_seconds, serve, sqlite_url, summary_ms
from convergences.seed import APPLICATIONS, DEMO_PASSWORD

DATA_VERSION = "grid-v2"
ACCOUNTS = 100_000
BIG_AGENTS = 10_000
OTHER_EMPLOYERS = 450          # the other 90,000 accounts, 200 per employer
APPS_PER_EMPLOYER = 3
REFERENT_EMAIL = "referent@grand-employeur.example"
SEED = 20260101

GIVEN = ["Marie", "Jean", "Pierre", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Philippe", "Michel",
         "Françoise", "Nicolas", "Christophe", "Sophie", "Stéphane", "Sandrine", "Laurent", "Valérie",
         "Frédéric", "Céline", "David", "Julien", "Aurélie", "Olivier", "Émilie", "Thomas", "Camille",
         "Hélène", "Antoine", "Julie", "Karim", "Nadia", "Lucas", "Emma", "Léa", "Hugo", "Chloé", "Louis",
         "Inès", "Yanis", "Manon"]
FAMILY = ["Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
          "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier",
          "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefèvre",
          "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François",
          "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry",
          "Roussel", "Mathieu", "Gautier", "Masson", "Marchand", "Duval", "Denis", "Dumont", "Marie",
          "Lemaire", "Noël", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud", "Joly", "Rivière",
          "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud", "Martinez", "Gérard", "Roche", "Renard",
          "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron", "Picard", "Roger", "Fabre", "Aubert",
          "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît",
          "Rey", "Leclerc", "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte", "Haddad", "Nguyen",
          "Diallo", "Traoré", "Kowalski", "Da Silva", "Ferreira", "Benali", "Mansouri", "Yilmaz"]

# (label, q, pages): what a référent types. "tous" is the unfiltered grid; "000123" is one agent number.
QUERIES: list[tuple[str, str, list[int]]] = [
    ("tous (aucun filtre)", "", [1, 2, 200, 400]),
    ("« e » (toutes les adresses)", "e", [1, 50]),
    ("« an » (beaucoup)", "an", [1, 20]),
    ("« mar » (plusieurs noms)", "mar", [1, 10]),
    ("« martin »", "martin", [1, 2]),
    ("« nadia »", "nadia", [1]),
    ("« dupont » + prénom", "dupont", [1]),
    ("« 004217 » (un agent)", "004217", [1]),
    ("« zzqx » (aucun)", "zzqx", [1]),
]
REPEATS = 6          # each (term, page) is fetched this many times, after one untimed warm-up
HEALTHZ_PER_GRID = 2  # /healthz requests timed after each grid request


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _migrations_digest() -> str:
    h = hashlib.sha256(DATA_VERSION.encode())
    for path in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cached_db_path() -> Path:
    return VAR / f"grid-{ACCOUNTS}-{_migrations_digest()}.db"


def _build(path: Path) -> dict[str, Any]:
    """Migrate a fresh file with the project's migrations, then bulk-insert the data set."""
    from sqlalchemy import create_engine, insert

    import convergences.models  # noqa: F401 - registers every table
    from convergences.cli import migrate
    from convergences.db import Base
    from convergences.security.passwords import PasswordService
    from convergences.settings import load_settings

    migrate(sqlite_url(path))
    t = Base.metadata.tables
    rnd = random.Random(SEED)
    now = datetime.now(UTC).replace(microsecond=0)
    password_hash = PasswordService(load_settings().passwords).hasher.hash(DEMO_PASSWORD)

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(insert(t["application"]), [
            {"id": i, "slug": a["slug"], "name": a["name"], "description": a["description"],
             "launch_url": a["launch_url"], "roles": a["roles"], "position": i, "created_at": now}
            for i, a in enumerate(APPLICATIONS, start=1)])
        app_ids = list(range(1, len(APPLICATIONS) + 1))
        employers = [{"id": 1, "name": "Métropole du Grand Bench", "siret": "20000000000001", "kind": "epci",
                      "created_at": now}]
        employers += [{"id": i, "name": f"Commune n° {i}", "siret": f"2193{i:010d}", "kind": "commune",
                       "created_at": now} for i in range(2, OTHER_EMPLOYERS + 2)]
        conn.execute(insert(t["employer"]), employers)
        # The big employer has the three applications that show a role selector and plain checkboxes.
        subscriptions = [{"employer_id": 1, "application_id": a, "created_at": now}
                         for a in (app_ids[1], app_ids[2], app_ids[0])]
        for e in range(2, OTHER_EMPLOYERS + 2):
            subscriptions += [{"employer_id": e, "application_id": a, "created_at": now}
                              for a in rnd.sample(app_ids, APPS_PER_EMPLOYER)]
        conn.execute(insert(t["subscription"]), subscriptions)
        subscribed: dict[int, list[int]] = {}
        for s in subscriptions:
            subscribed.setdefault(s["employer_id"], []).append(s["application_id"])

        accounts: list[dict[str, Any]] = []
        memberships: list[dict[str, Any]] = []
        grants: list[dict[str, Any]] = []
        per_other = (ACCOUNTS - BIG_AGENTS) // OTHER_EMPLOYERS
        for n in range(1, ACCOUNTS + 1):
            employer_id = 1 if n <= BIG_AGENTS else 2 + (n - BIG_AGENTS - 1) // per_other
            given, family = rnd.choice(GIVEN), rnd.choice(FAMILY)
            referent = n == 1
            invited = not referent and rnd.random() < 0.15
            slug = _ascii(f"{given}.{family}".lower().replace(" ", "-"))
            email = REFERENT_EMAIL if referent else f"{slug}.{n:06d}@employeur-{employer_id}.example"
            accounts.append({
                "id": n, "email": email, "given_name": given, "family_name": family,
                "password_hash": None if invited else password_hash, "is_cig_admin": False,
                "is_correspondent": False, "phone_contact": None,
                "last_login_at": None if invited or rnd.random() < 0.2
                else now - timedelta(minutes=rnd.randrange(1, 60 * 24 * 365)),
                "activated_at": None if invited else now - timedelta(days=rnd.randrange(1, 900)),
                "default_employer_id": None, "created_at": now - timedelta(days=rnd.randrange(1, 1000))})
            memberships.append({
                "id": n, "account_id": n, "employer_id": employer_id,
                "is_referent": referent or rnd.random() < 0.002, "is_authority": rnd.random() < 0.001,
                "suspended_at": None if referent or rnd.random() > 0.05 else now - timedelta(days=3),
                "created_at": now})
            for app_id in subscribed[employer_id]:
                if rnd.random() < 0.5:
                    app_roles = APPLICATIONS[app_id - 1]["roles"]
                    grants.append({"membership_id": n, "application_id": app_id,
                                   "role": rnd.choice(app_roles)["code"] if app_roles else None,
                                   "created_at": now})
        conn.execute(insert(t["account"]), accounts)
        conn.execute(insert(t["membership"]), memberships)
        conn.execute(insert(t["grant"]), grants)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return {"accounts": len(accounts), "memberships": len(memberships), "grants": len(grants),
            "employers": len(employers), "subscriptions": len(subscriptions)}


def ensure_db() -> tuple[Path, bool, float]:
    """The cached data set (built when missing); returns (path, built_now, seconds)."""
    VAR.mkdir(parents=True, exist_ok=True)
    path = cached_db_path()
    if path.exists():
        return path, False, 0.0
    for stale in VAR.glob(f"grid-{ACCOUNTS}-*.db*"):
        stale.unlink()
    start = time.perf_counter()
    partial = path.with_suffix(".building")
    for leftover in VAR.glob(partial.name + "*"):
        leftover.unlink()
    _build(partial)
    for suffix in ("-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    partial.rename(path)
    return path, True, time.perf_counter() - start


def _dataset_facts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        q = conn.execute
        return {"accounts": q("SELECT count(*) FROM account").fetchone()[0],
                "employer_agents": q("SELECT count(*) FROM membership WHERE employer_id = 1").fetchone()[0],
                "grants": q('SELECT count(*) FROM "grant"').fetchone()[0],
                "employer_grants": q('SELECT count(*) FROM "grant" g JOIN membership m '
                                     'ON m.id = g.membership_id WHERE m.employer_id = 1').fetchone()[0]}


TOTAL = re.compile(r"<p>(\d+) agents?")


def _login(client: httpx.Client) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"_csrf_token": csrf_token(page.text), "next": "/",
                                           "email": REFERENT_EMAIL, "password": DEMO_PASSWORD})
    if response.status_code != 303:
        raise RuntimeError(f"the référent could not log in ({response.status_code})")


def drive(base_url: str, server_pid: int) -> dict[str, Any]:
    fragment = {"HX-Request": "true"}
    healthz: list[float] = []
    cpu = {"grid": 0.0, "healthz": 0.0}

    def timed(client: httpx.Client, url: str, **kwargs: Any) -> tuple[float, float, httpx.Response]:
        """(wall seconds, server CPU seconds, response) of one request."""
        cpu_before = process_cpu_seconds(server_pid)
        start = time.perf_counter()
        response = client.get(url, **kwargs)
        elapsed = time.perf_counter() - start
        cpu_after = process_cpu_seconds(server_pid)
        used = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else 0.0
        return elapsed, used, response

    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        _login(client)
        for _ in range(20):
            client.get("/healthz")
        all_times: list[float] = []
        per_query: list[dict[str, Any]] = []
        for label, q, pages in QUERIES:
            times: list[float] = []
            total = None
            for page in pages:
                params = {"q": q, "page": str(page)}
                for attempt in range(REPEATS + 1):
                    elapsed, used, response = timed(client, "/employeurs/1/agents", params=params,
                                                    headers=fragment)
                    if response.status_code != 200:
                        raise RuntimeError(f"grid answered {response.status_code} for {params}")
                    if "<html" in response.text[:500].lower():
                        raise RuntimeError("the grid answered a whole page, not the htmx fragment")
                    match = TOTAL.search(response.text)
                    if match is None:
                        raise RuntimeError(f"no agent count in the fragment for {params}")
                    total = int(match.group(1))
                    if not attempt:  # the first fetch of each (term, page) is the warm-up
                        continue
                    times.append(elapsed)
                    cpu["grid"] += used
                    for _ in range(HEALTHZ_PER_GRID):
                        elapsed, used, response = timed(client, "/healthz")
                        cpu["healthz"] += used
                        if response.status_code != 200:
                            raise RuntimeError(f"/healthz answered {response.status_code}")
                        healthz.append(elapsed)
            all_times += times
            per_query.append({"label": label, "q": q, "pages": pages, "matches": total, **summary_ms(times)})
    result: dict[str, Any] = {"grid": summary_ms(all_times), "per_query": per_query, "healthz": summary_ms(healthz)}
    if process_cpu_seconds(server_pid) is not None:
        result["server_cpu_ms"] = {"grid": round(1000 * cpu["grid"] / len(all_times), 2),
                                   "healthz": round(1000 * cpu["healthz"] / len(healthz), 2)}
    return result


def run() -> dict[str, Any]:
    cached, built, build_s = ensure_db()
    with tempfile.TemporaryDirectory(prefix="grid-", dir=VAR) as tmp:
        db_path = Path(tmp) / "grid.db"
        shutil.copyfile(cached, db_path)
        facts = _dataset_facts(db_path)
        with serve(db_path, Path(tmp) / "server.log") as server:
            result = drive(server.base_url, server.process.pid)
    result.update({"dataset": {**facts, "cache_file": str(cached.relative_to(ROOT)), "built_now": built,
                               "build_s": round(build_s, 2)},
                   "ratio_p50": round(result["grid"]["p50_ms"] / result["healthz"]["p50_ms"], 2),
                   "ratio_p95": round(result["grid"]["p95_ms"] / result["healthz"]["p50_ms"], 2)})
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2, ensure_ascii=False))
