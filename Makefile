# Both targets set up .venv on a fresh machine first (idempotent; fast once done).
.PHONY: demo test lint typecheck unit venv browser clean

VENV := .venv
PY := $(VENV)/bin/python
# `make demo` starts from these offline ImageNet weights where they are (this project's
# machines); elsewhere from ImageNet weights off the model hub, else from random init.
DEMO_WEIGHTS ?= ../shared/weights/efficientnet_lite0_imagenet.safetensors
DEMO_BACKBONE ?= efficientnet_lite0

venv:  # every extra too (serve, export, dev): the tests use them all
	@bash scripts/bootstrap.sh

browser:  # headless Chromium for the browser tests: Debian's package, as root; else a note
	@bash scripts/install-browser.sh

demo: venv
	$(VENV)/bin/simclr-ad demo --out demo$(if $(wildcard $(DEMO_WEIGHTS)), --backbone $(DEMO_BACKBONE) --weights $(DEMO_WEIGHTS))

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
