# Two commands: `make run` (set up and serve the demo) and `make test` (the house's checks, then
# the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Every dependency pinned with its hashes, made by `make lock` from pyproject.toml: run.txt for
# the service, dev.txt for it and the tests (a superset, at the same versions).
RUN_LOCK := requirements/run.txt
DEV_LOCK := requirements/dev.txt
# uv (makes the lock files) and pip-audit live in a venv of their own, also installed by hash.
TOOLS  := .venv-tools
# The web site's CSS and scripts (Pico CSS, htmx, uPlot) and the browser tests' axe-core: from the
# npm registry at the versions package-lock.json pins with their hashes, copied to where tongka
# serves them (/static/vendor). No page loads anything from another host.
ASSETS := src/tongka/static/vendor/.installed
VENDOR := src/tongka/static/vendor

.PHONY: run test check serve clean lock audit screenshots

run: $(VENV)/.installed $(ASSETS) var/tongka.env var/nrf-dev-key.pem
	@# Production is tongka's default; the demo runs in dev (an install made before that gets the line once).
	@grep -q '^TONGKA_ENV=' var/tongka.env || echo 'TONGKA_ENV=dev' >> var/tongka.env
	$(BIN)/tongka db upgrade
	$(BIN)/tongka demo load
	@echo ""
	@echo "  tongka is serving on http://127.0.0.1:8000   (API docs: http://127.0.0.1:8000/docs)"
	@echo "  demo login: demo / demo-password   ·   spare lines: $(BIN)/tongka lines list --unbound"
	@echo "  store counter and console: http://127.0.0.1:8000/staff/login   ·   agent-lowu, manager-lowu, agent-harbour, admin / demo-password"
	@echo "     the code their authenticator app would show: $(BIN)/tongka staff code agent-lowu"
	@echo "  SMS and email the demo sends: http://127.0.0.1:8000/dev/outbox   ·   is this official? http://127.0.0.1:8000/official"
	@echo "  the network's Nchf API (HTTP/2, h2c): http://$${TONGKA_NCHF_BIND:-127.0.0.1:8001}   ·   play a packet core: $(BIN)/tongka simulate"
	@echo "  offers running: http://127.0.0.1:8000/api/v1/offers   ·   demo coupon code: TONGKA-DEMO"
	@echo "  jobs that run themselves (this server runs them): $(BIN)/tongka jobs list"
	@echo ""
	$(BIN)/tongka serve

test: check
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# The README's and docs/screenshots' pictures: the browser journey, saving the main pages as it goes.
screenshots: $(VENV)/.installed-dev $(ASSETS)
	TONGKA_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -p no:randomly tests/e2e/test_site.py

# The house's rules (issue #12), each failing the target: lint, format, types (mypy keeps its
# cache in .mypy_cache, so a second run takes seconds), the layers' import contracts
# ([tool.importlinter]) and declared dependencies ([tool.deptry]); all read pyproject.toml.
check: $(VENV)/.installed-dev $(ASSETS)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry src

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tongka needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

# pip, setuptools and wheel come from the lock as well, so nothing unhashed is downloaded:
# the project is installed without dependencies and without a build environment of its own.
$(VENV)/.installed: $(RUN_LOCK) pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet --require-hashes -r $(RUN_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: $(DEV_LOCK) pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(VENV)/.installed $@

$(TOOLS)/.installed: requirements/tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes -r requirements/tools.txt
	touch $@

# Remakes the lock files after pyproject.toml changed, keeping every pin that still fits;
# `make lock UPGRADE=1` moves everything to its newest release. Universal: the files hold for
# CPython 3.11 and newer on any platform (markers say where a package applies).
# The dev set is resolved first and the service's is cut from it, so both pin the same versions.
UV_COMPILE = $(TOOLS)/bin/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
# $(call compile,OUTPUT,INPUTS): uv keeps the pins it finds in OUTPUT; OUTPUT is replaced only
# when it changed, so an unchanged lock does not make the next `make` reinstall.
define compile
	@if [ -f $(1) ]; then cp $(1) $(1).new; fi
	$(UV_COMPILE) $(2) -o $(1).new
	@if cmp -s $(1).new $(1); then rm $(1).new; else mv $(1).new $(1); echo "  $(1) changed"; fi
endef
# The tools' lock keeps its extras (cachecontrol[filecache], which pip-audit asks for): pip 23 in
# --require-hashes mode otherwise resolves the extra's requirement apart from the pin, to a newer
# release, and refuses it as unpinned.
lock: $(TOOLS)/.installed
	$(call compile,$(DEV_LOCK),pyproject.toml requirements/build.in --extra dev -c requirements/constraints.in)
	$(call compile,$(RUN_LOCK),pyproject.toml requirements/build.in -c $(DEV_LOCK))
	$(call compile,requirements/tools.txt,requirements/tools.in --no-strip-extras)

# Known vulnerabilities in the pinned set; skipped, saying so, where the advisory database
# cannot be reached.
audit: $(TOOLS)/.installed
	$(TOOLS)/bin/python .ci/audit.py $(DEV_LOCK)

# Secrets and sandbox provider keys are made on this machine at first start, never committed.
var/tongka.env: | $(VENV)/.installed
	mkdir -p var
	umask 077 && { echo 'TONGKA_ENV=dev'; $(BIN)/tongka keys generate; } > $@.tmp && mv $@.tmp $@

# The key the dev NRF signs network functions' access tokens with (tongka plays the NRF in dev).
var/nrf-dev-key.pem: | $(VENV)/.installed
	$(BIN)/tongka keys nrf-dev --out $@

clean:
	rm -rf $(VENV) $(TOOLS) var node_modules $(VENDOR)

$(ASSETS): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/@picocss/pico/css/pico.min.css node_modules/htmx.org/dist/htmx.min.js \
	   node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/
	touch $@
