# canon's two commands: `make demo` and `make test`. Both install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $@

install: $(VENV)/.installed

# Write the bundled weather example into demo/, run it end to end, show it is clean.
demo: install
	rm -rf demo
	$(BIN)/canon init demo --example weather
	cd demo && PATH="$(abspath $(BIN)):$$PATH" canon apply
	cd demo && PATH="$(abspath $(BIN)):$$PATH" canon status

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q

# Lint, import layering, mypy --strict on src/, then the whole test suite.
test: lint typecheck unit

bench: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/run.py --md docs/benchmarks.md

clean:
	rm -rf $(VENV) demo .mypy_cache .ruff_cache .pytest_cache
