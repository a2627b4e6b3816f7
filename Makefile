# The two commands a new machine needs: `make demo` (the main job) and `make test`.
# Both create .venv and install the project into it first when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# The main job: a sweep of 8 trials on a pixel-MNIST subset (search_spaces/demo.yaml), on an
# embedded Ray, tracked in sqlite:///mlflow.db. The data root is $ARNN_DATA_DIR when set.
DEMO_SPEC := search_spaces/demo.yaml

.PHONY: install browser test demo bench overhead gpu-check load-test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The UI tests drive a real headless browser: Debian's chromium, installed here when
# missing (as root, or with sudo). Where it cannot be, those tests skip and say why.
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "chromium could not be installed: the browser tests will skip"; }

test: install browser
	$(BIN)/python -m pytest

demo: install
	$(BIN)/arnn sweep $(DEMO_SPEC)

bench: install
	$(BIN)/arnn bench

# On a machine with a GPU whose Python already has torch, triton and pytest (no install,
# no network): the fused kernel's full-shape tests, then the benchmark at both shapes.
gpu-check:
	PYTHONPATH=platform $(PYTHON) -m pytest -p no:cacheprovider -q -m gpu tests/kernels
	PYTHONPATH=platform $(PYTHON) -m arnn.bench --repeats 20

overhead: install
	$(BIN)/python -m arnn.sweep.overhead

# The tracking load test (slow: not in `make test` nor CI): `mlflow server` (4 workers) on a
# private PostgreSQL in a temp dir, 64 logger processes x 100 epochs, every point checked.
# Installs Debian's postgresql (apt) when /usr/lib/postgresql is missing, and psycopg2.
load-test: install
	@test -d /usr/lib/postgresql || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q postgresql; }
	$(BIN)/python -m pip install --quiet -e '.[test,load]'
	$(BIN)/python -m pytest -m slow tests/load -q -s

clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts ray_results .pytest_cache
