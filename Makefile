# Warden. `make run` and `make test` do all set-up on a bare machine (Python 3.11+).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint format typecheck check lock stop clean ci

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	@touch $(STAMP)

install: $(STAMP)

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

# Re-pin every transitive dependency from what is installed in the venv.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^warden' > requirements.lock

# Stop embedded services left running by a killed `make run` or test run.
stop: $(STAMP)
	$(BIN)/python -c 'from pathlib import Path; from config.embedded import services_stop; services_stop(Path("var")); services_stop(Path("var/test"))'

clean: stop
	rm -rf var .pytest_cache
