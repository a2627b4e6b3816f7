# The two commands a new machine needs: `make demo` (the main job) and `make test`.
# Both create .venv and install the project into it first when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# The demo's data: $ARNN_DATA_DIR when set, else the data root arnn uses by default.
DEMO_FLAGS := --task mnist --model antisymmetric --hidden 128 --eps 0.1 --gamma 0.01 \
	--optimizer adam --lr 0.003 --subset 6000 --epochs 2 --batch-size 128

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/arnn train $(DEMO_FLAGS)

bench: install
	$(BIN)/arnn bench

clean:
	rm -rf $(VENV) mlflow.db mlruns mlartifacts .pytest_cache
