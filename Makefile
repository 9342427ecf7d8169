# Branchline: the two commands of the README are `make dev` and `make test`.
# Each creates the project's virtual environment on first use (Python 3.11+ is all you need).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := $(VENV)/tools
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Python may keep its compiled modules (__pycache__/, ignored by git) even where the environment
# says not to: without them each pytest-xdist worker compiles and assertion-rewrites the whole
# suite again at collection (13-14 s CPU a worker instead of 5, docs/performance.md, #12).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: dev test lint typecheck imports compose-check schemas-check pytest bench clean browser-deps translations

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

# check-jsonschema ships the Compose Specification's JSON Schema; it lives in its own small
# environment, apart from the product's pins (it once needed a newer click than Faust took).
$(TOOLS)/bin/check-jsonschema: | $(STAMP)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet check-jsonschema==0.38.2

dev: $(STAMP)
	$(BIN)/branchline dev

test: lint typecheck imports compose-check schemas-check pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

compose-check: $(TOOLS)/bin/check-jsonschema
	$(TOOLS)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

# The JSON Schemas and the AsyncAPI document in schemas/ must match the models (a breaking
# change needs a new schema version and an upcaster). The AsyncAPI document is also checked by
# the AsyncAPI project's own validator where Node.js is installed (CI machines have it). The
# validator is installed once beside check-jsonschema, not fetched by npx into the home
# directory's npm cache each run (60-70 s a run where that cache starts empty, #12); CI=true
# keeps it from sending its usage metrics.
ASYNCAPI_VERSION := 6.2.0
ASYNCAPI := $(TOOLS)/asyncapi-$(ASYNCAPI_VERSION)/node_modules/.bin/asyncapi
schemas-check: $(STAMP)
	$(BIN)/branchline schemas check
	@if command -v npm >/dev/null 2>&1; then \
	  test -x $(ASYNCAPI) || npm install --silent --no-audit --no-fund \
	    --prefix $(TOOLS)/asyncapi-$(ASYNCAPI_VERSION) @asyncapi/cli@$(ASYNCAPI_VERSION); \
	  echo "asyncapi $(ASYNCAPI_VERSION) validate schemas/asyncapi.yaml"; \
	  CI=true $(ASYNCAPI) validate schemas/asyncapi.yaml; \
	else echo "Node.js not found: AsyncAPI validation by @asyncapi/cli skipped (pytest still checks the document)"; fi

# The suite in PYTEST_WORKERS pytest-xdist workers, each with its own embedded PostgreSQL and
# tansu, a test module (or a shared package) whole in one worker, the longest first
# (tests/support/schedule.py). PYTEST_WORKERS=0 runs it serially, as a bare `pytest` does.
PYTEST_WORKERS ?= 3
pytest: $(STAMP) browser-deps
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The console's browser tests drive Debian's chromium through Playwright's executable_path
# (Playwright's own browser downloads are never used); installed here when missing, with the
# CJK fonts its Chinese screenshots need.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and fonts-noto-cjk for the console's browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    chromium fonts-noto-cjk >/dev/null; \
	fi

# The console's strings: extracted from its templates and code, merged into the Chinese
# catalogue (then translate the new entries; a unit test fails on any left empty).
CONSOLE_LOCALE := shared/branchline_shared/console/locale
CONSOLE_SOURCES := shared/branchline_shared/console \
  services/followup/branchline_followup/entrypoints/console \
  services/audit/branchline_audit/entrypoints/console
translations: $(STAMP)
	$(BIN)/pybabel extract -F shared/branchline_shared/console/babel.cfg -k N_ --no-location \
	  --sort-output -o $(VENV)/console-messages.pot $(CONSOLE_SOURCES)
	$(BIN)/pybabel update -i $(VENV)/console-messages.pot -d $(CONSOLE_LOCALE) -l zh \
	  --no-fuzzy-matching --ignore-obsolete -w 100

# The benchmark: its own embedded stack, baselines and the peer library in the same run
# (docs/performance.md). BENCH_ARGS="--profile smoke" runs the short profile `make test` runs.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
