# canon's two commands: `make demo` and `make test`. Both install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: constraints install demo test lint typecheck unit bench clean system-deps

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]' -c constraints.txt
	touch $@

install: $(VENV)/.installed

# Write the bundled weather example into demo/ (its own Git repository, first commit made
# by canon init), run it end to end: the stages, then the base and model images; show the
# images' layers and sizes, and that everything is up to date.
demo: install
	rm -rf demo
	$(BIN)/canon init demo --example weather
	cd demo && PATH="$(abspath $(BIN)):$$PATH" canon apply
	cd demo && PATH="$(abspath $(BIN)):$$PATH" canon images
	cd demo && PATH="$(abspath $(BIN)):$$PATH" canon status

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q

# System tools the image tests start for real (COMPONENTS.md): the CNCF registry, skopeo,
# podman + runc, debootstrap. As root on a fresh machine (CI), install what is missing
# (one apt-get update first); otherwise say what is missing (those tests then fail, saying so).
SYSTEM_TOOLS := docker-registry skopeo podman runc debootstrap
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_TOOLS); \
	else echo "missing (image tests will fail):$$missing"; fi

# Lint, import layering, mypy --strict on src/, then the whole test suite.
test: system-deps lint typecheck unit

bench: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python bench/run.py --md docs/benchmarks.md

clean:
	rm -rf $(VENV) demo .mypy_cache .ruff_cache .pytest_cache

# Refresh constraints.txt from a fresh resolution of every extra (run after changing dependencies).
constraints:
	rm -rf .venv-constraints && $(PY) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q --upgrade pip
	.venv-constraints/bin/python -m pip install -q -e '.[all,dev]'
	{ echo "# Known-good versions of canon's dependencies (all extras + dev), used by \`make install\`"; \
	  echo "# so that pip resolves instantly and CI is reproducible. Regenerate with: make constraints"; \
	  .venv-constraints/bin/pip freeze | grep -v -E '^(-e|canon)'; } > constraints.txt
	rm -rf .venv-constraints
