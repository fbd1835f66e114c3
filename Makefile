# ml_platform: every target bootstraps uv (pip install uv) and syncs the locked environment.
SHELL := /bin/bash
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
# Cold imports of the stack are slow: compile bytecode at install and keep writing it.
export UV_COMPILE_BYTECODE := 1
unexport PYTHONDONTWRITEBYTECODE
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# uv from PATH, or the module pip installed (resolved when each recipe line runs)
UV = $$(command -v uv || echo python3 -m uv)
DAGSTER_PORT ?= 3000

.PHONY: setup demo test test-fast test-production test-ui dev serve lint bench clean

setup:  ## install uv if missing, then the locked environment
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv
	$(UV) sync --locked --quiet
	@mkdir -p "$(DAGSTER_HOME)"

demo: setup  ## the main job end to end on embedded defaults
	$(UV) run ml-platform demo

test: setup  ## the whole test suite
	$(UV) run pytest

test-fast: setup  ## unit tests only
	$(UV) run pytest ml_platform_tests/unit

dev: setup  ## Dagster UI + daemon (sensors and schedules live)
	$(UV) run ml-platform prepare
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT)

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(UV) run python $$b; done

clean:  ## remove generated data and state (never committed)
	rm -rf data .dagster_home dbt_project/target dbt_project/logs
