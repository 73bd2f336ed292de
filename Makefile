# `make demo` and `make test` do all the set-up on a fresh machine: a virtualenv in .venv, the
# project installed in it with its dev tools, then the demo or the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DB := demo.db
IMPORTER := $(BIN)/importer --db sqlite:///$(DEMO_DB)
OWNER := olive.owner@acme.example
# The demo's links open the portal that `importer serve` runs on this machine.
BASE_URL := http://127.0.0.1:8000
# For the demo database only: the Owner's password, set from the link `org create` printed.
DEMO_PASSWORD := demo-owner-2026

.PHONY: venv demo test lint bench screenshots clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A real import of the demo sheets on SQLite: an organization with teams, pending members,
# reports under reports/, and activation emails in outbox/. Exit 3 (some rows rejected) is expected.
# The Owner signs up like anyone: `org create` prints the Owner's activation link once; the demo
# follows it with a demo password (only an active Owner may import), and ends by printing the link
# and how to sign in.
demo: $(STAMP)
	rm -rf $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm $(DEMO_DB).progress $(DEMO_DB).queue* $(DEMO_DB).secret-key reports outbox demo-owner-link.txt
	$(IMPORTER) org create "Acme Corp" --owner-email $(OWNER) --owner-name "Olive Owner" \
		--base-url $(BASE_URL) | tee demo-owner-link.txt
	tail -n 1 demo-owner-link.txt | sed 's/$$/\n$(DEMO_PASSWORD)/' | $(IMPORTER) activate --password-stdin
	$(IMPORTER) team create --org "Acme Corp" Sales Support Engineering Warehouse
	$(IMPORTER) import sample_files/demo-portal-users.csv --org "Acme Corp" --as $(OWNER) --type portal || test $$? -eq 3
	$(IMPORTER) import sample_files/demo-no-portal-users.xlsx --org "Acme Corp" --as $(OWNER) --type no-portal || test $$? -eq 3
	$(IMPORTER) send-activations --org "Acme Corp" --as $(OWNER) --transport file --outbox outbox \
		--from "Acme Corp <no-reply@acme.example>" --base-url $(BASE_URL)
	$(IMPORTER) members --org "Acme Corp"
	@echo
	@echo "Reports: $$(ls -d reports/*/ | tr '\n' ' ')"
	@echo "Activation emails: $$(ls outbox/*.eml | wc -l) in outbox/"
	@echo "The Owner's activation link, as \`org create\` printed it (the demo has followed it, with the"
	@echo "password $(DEMO_PASSWORD)): $$(tail -n 1 demo-owner-link.txt)"
	@echo "Open the portal on the demo database:"
	@echo "    IMPORTER_DATABASE_URL=sqlite:///$(DEMO_DB) IMPORTER_BASE_URL=$(BASE_URL) $(BIN)/importer serve"
	@echo "then sign in at $(BASE_URL)/login as $(OWNER) with the password $(DEMO_PASSWORD);"
	@echo "a member's link is in any .eml of outbox/ (it opens the set-password page of that portal)."

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy importer
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -n 2 -q

# issue 4's benchmark: the importer against its floors and peers on a generated 1,000,000-row sheet
# (cached in benchmarks/data/), with the importer of commit a80d016 (before migration 0008's leaner
# members table) timed alongside (--before); the table goes to benchmarks/out/results.md. Then issue 13's
# members page at page 1 and at the last page of a million members (benchmarks/members_page.py); the
# portal under 50 clients and the 1M-row API import with 1 and 2 workers (benchmarks/portal_load.py);
# issue 15's activation sends over SMTP with 1 and 4 connections (benchmarks/sends.py). Options through
# BENCH_ARGS, e.g. `make bench BENCH_ARGS="--quick --skip-postgres"`. The peers are benchmark-only.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet 'frictionless>=5.18' 'django-import-export>=4.0'
	$(BIN)/python benchmarks/run.py --before $(BENCH_ARGS)
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/members_page.py
	$(BIN)/python benchmarks/portal_load.py
	$(BIN)/python benchmarks/sends.py

# The portal's screenshots in docs/ (shown in the README), taken by the browser journeys.
screenshots: $(STAMP)
	IMPORTER_SCREENSHOTS=1 $(BIN)/pytest -q tests/web/test_journeys.py

clean:
	rm -rf $(VENV) reports outbox demo-owner-link.txt $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
