# Both targets set up .venv on a fresh machine first (idempotent; fast once done).
.PHONY: demo test lint typecheck unit venv browser clean

VENV := .venv
PY := $(VENV)/bin/python

venv:
	@bash scripts/bootstrap.sh

browser:  # headless Chromium for the browser tests (Debian's package, when missing)
	@bash scripts/install-browser.sh

demo: venv
	$(VENV)/bin/simclr-ad demo --out demo

lint: venv
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check

typecheck: venv
	$(PY) -m mypy

unit: venv browser
	$(PY) -m pytest -q

test: lint typecheck unit

clean:
	rm -rf demo .mypy_cache .ruff_cache .pytest_cache
