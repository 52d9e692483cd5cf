# Two commands: `make run` (set up and serve the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test serve clean

run: $(VENV)/.installed var/tongka.env
	@# Production is tongka's default; the demo runs in dev (an install made before that gets the line once).
	@grep -q '^TONGKA_ENV=' var/tongka.env || echo 'TONGKA_ENV=dev' >> var/tongka.env
	$(BIN)/tongka db upgrade
	$(BIN)/tongka demo load
	@echo ""
	@echo "  tongka is serving on http://127.0.0.1:8000   (API docs: http://127.0.0.1:8000/docs)"
	@echo "  demo login: demo / demo-password   ·   spare lines: $(BIN)/tongka lines list --unbound"
	@echo "  SMS and email the demo sends: http://127.0.0.1:8000/dev/outbox"
	@echo "  offers running: http://127.0.0.1:8000/api/v1/offers   ·   demo coupon code: TONGKA-DEMO"
	@echo ""
	$(BIN)/tongka serve

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tongka needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

# Secrets and sandbox provider keys are made on this machine at first start, never committed.
var/tongka.env: | $(VENV)/.installed
	mkdir -p var
	umask 077 && { echo 'TONGKA_ENV=dev'; $(BIN)/tongka keys generate; } > $@.tmp && mv $@.tmp $@

clean:
	rm -rf $(VENV) var
