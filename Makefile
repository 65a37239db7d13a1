# The two quick-start commands are `make demo` and `make test`; both bootstrap .venv from the lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | md5sum | cut -c1-12)

.PHONY: install lock demo test lint unit manifest browser ui benchmark benchmark-bie benchmark-nevada db-start db-stop clean \
	clean-warehouse-data

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# requirements.lock is `pip freeze` of a fresh venv holding the project with its dev extras (pyproject.toml).
# The current lock constrains that install, so packages keep their pins and only new or changed requirements
# resolve afresh; to upgrade a package, delete its line from the lock first.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -c requirements.lock -e '.[dev]'
	$(LOCK_VENV)/bin/pip freeze --exclude-editable > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)

# dbt's manifest, which Dagster's asset graph is built from (prepared here, never by hand).
manifest: install
	$(BIN)/attendance-sync db start >/dev/null
	cd dbt_project && ../$(BIN)/dbt parse --quiet --profiles-dir ../profiles

browser:
	bash .ci/install_browser.sh

demo: install
	$(BIN)/attendance-sync demo

# SQL lint: dbt_project/.sqlfluff (jinja templater, no database needed).
lint: install
	$(BIN)/ruff check orchestration tests
	$(BIN)/sqlfluff lint dbt_project --disable-progress-bar --nocolor

test: install lint browser
	$(BIN)/pytest

ui: install manifest
	$(BIN)/attendance-sync ui

benchmark: install
	$(BIN)/attendance-sync benchmark --size demo

benchmark-bie: install
	$(BIN)/attendance-sync benchmark --size bie

# Nevada: 17 districts, about 460,000 students (two thirds in one district), a full school year. Takes most
# of an hour and tens of GB of disk; NEVADA_SCALE=0.05 runs the same shape at a twentieth of the size.
NEVADA_SCALE ?= 1
benchmark-nevada: install
	$(BIN)/attendance-sync benchmark --size nevada --scale $(NEVADA_SCALE)

db-start: install
	$(BIN)/attendance-sync db start

db-stop: install
	$(BIN)/attendance-sync db stop

# Build output only (dbt artifacts and logs, caches, packaging metadata, test artifacts). The warehouse's
# data in .local/ is never touched here: it goes only with `make clean-warehouse-data`.
clean:
	rm -rf dbt_project/target dbt_project/logs logs .pytest_cache .ruff_cache \
		.hypothesis test-artifacts *.egg-info
	find orchestration tests -type d -name __pycache__ -prune -exec rm -rf {} +

# Deletes the warehouse: everything in .local/ (the embedded PostgreSQL data with landing, state and reports,
# the demo district databases, the demo registry, Dagster's run history). Stops the embedded server first;
# refuses to delete anything when it cannot be stopped.
clean-warehouse-data:
	@echo "deleting the warehouse data in .local/: landing, state and reports, demo district databases," \
		"Dagster run history"
	if [ -x $(BIN)/attendance-sync ]; then $(BIN)/attendance-sync db stop; fi
	rm -rf .local
