# Convergences — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export CONVERGENCES_DATABASE_URL ?= sqlite+aiosqlite:///var/convergences.db

.PHONY: run test test-fast bench lint migrate seed system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

migrate: $(STAMP)
	$(VENV)/bin/convergences migrate

seed: migrate
	CONVERGENCES_DEMO=1 $(VENV)/bin/convergences seed

# The demo applications (convergences demo-apps) run in the background; Ctrl-C stops them with the portal.
run: seed
	@$(VENV)/bin/convergences demo
	@echo "Boîte aux lettres de démonstration : http://127.0.0.1:$${PORT:-8000}/demo/boite-mail"
	@echo "Applications de démonstration (connexion avec Convergences) : BIP http://127.0.0.1:8001/ ; Net Cotisations http://127.0.0.1:8002/"
	@trap 'kill $$demo_apps 2>/dev/null; wait $$demo_apps 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/convergences demo-apps & demo_apps=$$!; \
	CONVERGENCES_DEMO=1 $(VENV)/bin/convergences serve

# System packages the real-component tests need (Chromium for browser journeys; PostgreSQL 15 server).
system-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
	@test -x /usr/sbin/apache2 -a -f /usr/lib/apache2/modules/mod_auth_openidc.so || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2 libapache2-mod-auth-openidc >/dev/null)

test: $(TEST_STAMP) system-deps
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(TEST_STAMP)
	$(PY) bench/run.py

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) var
