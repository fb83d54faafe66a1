# Every target creates and uses .venv in the project root: a fresh clone needs nothing else.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Kubernetes version deploy/k8s/*.yaml are validated against: one whose schemas the pinned
# kubernetes-validate ships (1.25.0 to 1.37.0), named here so that upgrading the tool does not move it.
K8S_VERSION ?= 1.37.0

.DEFAULT_GOAL := help
.PHONY: help install promtool chromium run test test-unit test-chaos test-package bench bench-compare bench-tables bench-parking bench-signals lint lint-deploy fmt sandbox clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,local]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev tools

promtool: ## Install promtool and prometheus (Debian package prometheus) when missing, for the alert and dashboard tests
	@{ command -v promtool && command -v prometheus; } >/dev/null || { \
		echo "installing promtool (Debian package prometheus)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus >/dev/null; }

chromium: ## Install Chromium (Debian package chromium) when missing, for the signals report's browser test
	@command -v chromium >/dev/null || { \
		echo "installing chromium (Debian package chromium)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP) ## Run the embedded default: local broker, Graph API sandbox, sample traffic, summary
	$(BIN)/capi-consumer demo

test: $(STAMP) promtool chromium ## Install, then run the whole test suite (unit, integration on a real broker, end to end)
	$(BIN)/python -m pytest -n 3 --dist worksteal -m "not chaos and not package"

test-unit: $(STAMP) ## Unit tests only (nothing running)
	$(BIN)/python -m pytest tests/unit

test-chaos: $(STAMP) ## The slow fault-injection suite
	$(BIN)/python -m pytest -m chaos

test-package: $(STAMP) ## The wheel built, installed in a fresh venv, and its `demo` run (about a minute)
	$(BIN)/python -m pytest -m package

bench: $(STAMP) ## The benchmark: drain, slow Graph API, latency at fixed load, plain-loop ceiling, Meta SDK
	$(BIN)/python -m pip install --quiet -e '.[dev,local,bench]'
	$(BIN)/python bench/bench.py

bench-compare: $(STAMP) ## This tree's drain against commit BASE's, interleaved rounds in one run (BASE=<rev>)
	$(BIN)/python -m pip install --quiet -e '.[dev,local,bench]'
	$(BIN)/python bench/compare.py --base $(or $(BASE),HEAD~1)

bench-tables: $(STAMP) ## Benchmark the reference tables: 1,000,000 contacts bootstrapped and looked up
	$(BIN)/python bench/tables_bench.py

bench-signals: $(STAMP) ## Benchmark `capi-consumer signals`: a week of aggregates at 100 events/s (252,000 records)
	$(BIN)/python bench/signals_bench.py

bench-parking: $(STAMP) ## Memory while one dataset is throttled for an hour at 5,000 events/s offered (MINUTES=60)
	$(BIN)/python bench/parking_bench.py --minutes $(or $(MINUTES),60)

lint: $(STAMP) promtool ## Ruff, format check and mypy --strict, then lint-deploy; changes nothing
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@$(MAKE) --no-print-directory lint-deploy

lint-deploy: $(STAMP) promtool ## hadolint, kubernetes-validate --strict, compose-spec schema, promtool on deploy/
	$(BIN)/hadolint --no-color deploy/Dockerfile
	$(BIN)/kubernetes-validate --strict --kubernetes-version $(K8S_VERSION) deploy/k8s/*.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	promtool check rules deploy/prometheus/alerts.yaml deploy/prometheus/signal-alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml deploy/prometheus/signal-alerts_test.yaml
	promtool check config --syntax-only deploy/prometheus/prometheus.yml

fmt: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

sandbox: $(STAMP) ## Run the Graph API sandbox on localhost:8800
	$(BIN)/capi-consumer sandbox --port 8800

clean: ## Remove the venv, caches and local state
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache .hypothesis
