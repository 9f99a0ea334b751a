# Two commands do everything: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first and on its own so that pip takes this exact build; change it where
# another build (CUDA, a newer release) is wanted: make test TORCH_SPEC='torch==2.14.1'
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,ray
BIN := $(VENV)/bin
export NUMBA_CACHE_DIR := $(CURDIR)/build/numba-cache
export EVOLVE_CACHE_DIR := $(CURDIR)/build/evolve-cache

.PHONY: venv demo test lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: venv
	$(BIN)/evolve demo

test: venv
	$(BIN)/ruff check evolve primitives fitness tests scripts
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: venv
	$(BIN)/ruff check evolve primitives fitness tests scripts

clean:
	rm -rf build .pytest_cache
