# One command each on a fresh machine: `make demo` and `make test`.
# Both create .venv (if missing), install torch first (the local CPU wheel,
# torch==2.13.0), then medglass with its dev extra, then do their job.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medglass-installed

.PHONY: demo test lint bench clean orthanc monailabel monailabel-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medglass demo --out runs/demo

# MONAI Label 0.8.5 needs numpy < 2 and pydicom < 3, so it has its own venv (apps/monailabel/):
# the local CPU torch first, then uv (parallel downloads) installs monailabel without its
# heavy extras, the modules it and the served bundles import, and medglass itself.
ML_VENV  := .venv-monailabel
ML_STAMP := $(ML_VENV)/.installed
ML_UV    := $(ML_VENV)/bin/uv pip install -q --python $(ML_VENV)/bin/python

$(ML_STAMP): pyproject.toml apps/monailabel/requirements.txt apps/monailabel/constraints.txt
	test -x $(ML_VENV)/bin/python || $(PYTHON) -m venv $(ML_VENV)
	$(ML_VENV)/bin/pip install --disable-pip-version-check -q torch==2.13.0 uv
	$(ML_UV) --no-deps monailabel==0.8.5
	$(ML_UV) -c apps/monailabel/constraints.txt -r apps/monailabel/requirements.txt
	$(ML_UV) --no-deps -e .
	touch $(ML_STAMP)

monailabel-venv: $(ML_STAMP)

# the MONAI Label server over the repository's bundles and the images in STUDIES
# (make monailabel STUDIES=path/to/images; medglass label-server --help for more)
STUDIES ?= runs/label-studies
monailabel: $(STAMP) $(ML_STAMP)
	mkdir -p $(STUDIES)
	$(BIN)/medglass label-server --studies $(STUDIES)

# The tests' PACS (tests/orthanc_server.py): Debian's Orthanc and its DICOMweb plugin, installed
# only when missing (as root, or through sudo). A policy-rc.d that answers 101 keeps the packaged
# service from starting while apt runs; the tests start their own instance on 127.0.0.1.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

orthanc:
	@if command -v Orthanc >/dev/null 2>&1 && dpkg -s orthanc-dicomweb >/dev/null 2>&1; then :; else \
	  echo "installing orthanc and orthanc-dicomweb (Debian packages) for the tests"; \
	  own_policy=0; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && \
	    $(SUDO) chmod 755 /usr/sbin/policy-rc.d && own_policy=1; \
	  fi; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends orthanc orthanc-dicomweb; \
	  status=$$?; \
	  if [ $$own_policy = 1 ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
	  if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now orthanc >/dev/null 2>&1 || true; fi; \
	  exit $$status; \
	fi

test: $(STAMP) $(ML_STAMP) orthanc
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP) orthanc
	$(BIN)/python bench/bench_phantoms.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_ingest_dicomweb.py
	$(BIN)/python bench/bench_units.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_infill.py

clean:
	rm -rf runs .pytest_cache
