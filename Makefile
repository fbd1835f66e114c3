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
MLFLOW_PORT ?= 5000
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup demo test test-fast test-production test-ui dev serve mlflow lint bench clean \
	install-browser screenshots mutation

setup:  ## install uv if missing, then the locked environment
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv
	$(UV) sync --locked --quiet
	@mkdir -p "$(DAGSTER_HOME)"

demo: setup  ## every shipped use case end to end on embedded defaults (fraud, then flights)
	$(UV) run ml-platform demo

test: setup install-browser  ## the whole test suite (the UI tests need chromium)
	$(UV) run pytest

test-fast: setup  ## unit tests only
	$(UV) run pytest ml_platform_tests/unit

test-production: setup  ## real PostgreSQL + Redis, reliability, static deploy checks
	CI=$${CI:-true} $(UV) run pytest ml_platform_tests/production -m production

install-browser:  ## Debian's chromium for the UI tests (apt-get; Playwright downloads nothing)
	@if [ ! -x "$(CHROMIUM)" ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

test-ui: setup install-browser  ## the Dagster UI driven in headless Chromium (starts dagster dev)
	$(UV) run pytest ml_platform_tests/ui -m ui

screenshots: setup install-browser  ## regenerate docs/images/*.png from a fresh dagster dev
	$(UV) run python docs/screenshots.py

dev: setup  ## Dagster UI + daemon (sensors and schedules live)
	$(UV) run ml-platform prepare
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT)

serve: setup  ## the real-time API (ML_PLATFORM_SERVING_HOST/_PORT, default 127.0.0.1:3001)
	$(UV) run bentoml serve ml_platform.serving.service:FraudDetector

# One worker and no background job runner: a browsing UI on a laptop, not a shared server.
mlflow: setup  ## MLflow UI on the platform's tracking store (http://127.0.0.1:5000)
	uri="$$($(UV) run ml-platform mlflow-uri)" && \
	artifacts="$$($(UV) run ml-platform mlflow-uri --artifacts)" && \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(UV) run mlflow ui --backend-store-uri "$$uri" \
		--default-artifact-root "$$artifacts" --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

MUTATION_CHILDREN ?= 2
# Workers are forked from a process that already trained models: OpenMP/BLAS thread pools
# do not survive fork(), so they are kept single-threaded (else the gate's workers hang).
mutation: setup  ## mutmut over the feature engines, metrics, gate, policy, validation (not in `make test`)
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(UV) run mutmut run --max-children $(MUTATION_CHILDREN)
	@$(UV) run mutmut results --all true | awk -F': ' '\
		{ m = $$1; sub(/^ +/, "", m); sub(/\.x.*$$/, "", m); n[m]++; total++; \
		  if ($$2 == "killed" || $$2 == "timeout") { k[m]++; killed++ } \
		  else if ($$2 == "survived") { s[m]++ } else { o[m]++ } } \
		END { printf "%-40s %7s %7s %7s %7s %7s\n", "module", "killed", "surviv", "other", "total", "score"; \
		  for (m in n) printf "%-40s %7d %7d %7d %7d %6.1f%%\n", m, k[m], s[m], o[m], n[m], 100 * k[m] / n[m]; \
		  printf "%-40s %7d %7s %7s %7d %6.1f%%\n", "overall", killed, "", "", total, 100 * killed / total }'
	@echo "survivors: uv run mutmut results; one diff: uv run mutmut show <name>; equivalents: docs/MUTATION.md"

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(UV) run python $$b; done

clean:  ## remove generated data and state (never committed)
	rm -rf data .dagster_home dbt_project/target dbt_project/logs dbt_project/models/use_cases
