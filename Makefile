# One command each on a fresh machine: `make demo` and `make test`.
# Both create .venv (if missing), install torch first (the local CPU wheel,
# torch==2.13.0), then medglass with its dev extra, then do their job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medglass-installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medglass demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/bench_phantoms.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_units.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_infill.py

clean:
	rm -rf runs .pytest_cache
