# Every target creates what it needs on first use, so a fresh clone needs nothing but Python:
# `make demo` runs the main job, `make test` runs the tests.
#
# Environments are built by uv (pinned below, installed into .tools/ by pip on first use):
#   .venv            the locked environment: exactly the versions in uv.lock (`make lock`)
#   .venv-X.Y        the same lock on another Python             (`make test-matrix`)
#   .venv-latest     the newest versions pyproject.toml's ranges allow (`make test-latest`)
#   .venv-lowest     the lowest versions those ranges allow       (`make test-lowest`)
PYTHON   ?= python3
UV_VERSION := 0.13.8
TOOLS    := .tools
UV       := $(TOOLS)/bin/uv
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.synced
# The Pythons the classifiers name; the first is the default (.venv) and the lowest's.
PYTHONS  := 3.11 3.12 3.13
# uv never downloads an interpreter here. Each Python is pyenv's own binary when pyenv has
# it (its shims answer only for the global version), else whatever uv finds on PATH.
export UV_PYTHON_DOWNLOADS := never
PYENV_ROOT ?= $(HOME)/.pyenv
python-for = $(or $(lastword $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1))),$(1))
PYTEST_ARGS ?=
# The extras the test suite needs (not bench's pinned peers, not mutmut): test-latest and
# test-lowest resolve these, so mutmut's own click>=8.4.2 does not hide our click>=8.1.
TEST_EXTRAS := dev cli httpx prometheus redis diagrams plot

.PHONY: install lock test test-latest test-lowest test-matrix lint bench bench-compare demo \
	diagrams soak \
	mutation clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The locked environment, re-synced whenever the lock or the project's metadata changes.
$(STAMP): uv.lock pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --all-extras --python $(call python-for,$(word 1,$(PYTHONS))) --quiet
	touch $(STAMP)

install: $(STAMP)

# Re-resolve uv.lock against pyproject.toml's ranges (the newest versions they allow), on
# purpose: review `git diff uv.lock`, run `make test`, commit both together.
lock: | $(UV)
	$(UV) lock --upgrade

test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest --cov --cov-report=term-missing --cov-fail-under=95 $(PYTEST_ARGS)

# The suite on every Python the classifiers name, each from the same lock. The default
# Python's run is `make test` (with the coverage floor and the `slow` failover cases); the
# others run without coverage and without the `slow` cases (Redis failovers, whose logic
# does not vary by Python version and which `make test` runs).
test-matrix: | $(UV)
	@set -e; $(foreach v,$(wordlist 2,$(words $(PYTHONS)),$(PYTHONS)), \
		echo "== Python $(v) (uv.lock): $(call python-for,$(v))"; \
		UV_PROJECT_ENVIRONMENT=.venv-$(v) $(UV) sync --locked --all-extras --quiet \
			--python $(call python-for,$(v)); \
		HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} .venv-$(v)/bin/python -m pytest -q \
			-p no:cacheprovider --no-cov -m "not slow" $(PYTEST_ARGS);)

# Drift you can see: the same suite against the newest and the lowest versions that
# pyproject.toml admits, resolved now (not from uv.lock). A new upstream release that breaks
# us fails test-latest by name; a lower bound that is not true fails test-lowest.
test-latest: | $(UV)
	$(call unlocked-run,.venv-latest,highest)

test-lowest: | $(UV)
	$(call unlocked-run,.venv-lowest,lowest-direct)

# $(1): the environment's folder, $(2): uv's resolution strategy.
define unlocked-run
	$(UV) venv --quiet --allow-existing --python $(call python-for,$(word 1,$(PYTHONS))) $(1)
	$(UV) pip compile pyproject.toml $(TEST_EXTRAS:%=--extra %) --quiet --python $(1)/bin/python \
		--resolution $(2) --no-header --output-file $(1)/requirements.txt
	$(UV) pip sync --quiet --python $(1)/bin/python $(1)/requirements.txt
	$(UV) pip install --quiet --python $(1)/bin/python --no-deps -e .
	@grep -iE '^(pydantic|python-statemachine|redis|httpx|click|rich|prometheus-client|pydot|pytest|hypothesis)==' $(1)/requirements.txt
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(1)/bin/python -m pytest -q -p no:cacheprovider --no-cov $(PYTEST_ARGS)
endef

lint: $(STAMP)
	$(BIN)/ruff check breaker_fsm tests
	$(BIN)/ruff format --check breaker_fsm tests
	$(BIN)/mypy breaker_fsm

# breaker_fsm against pybreaker, circuitbreaker, aiobreaker and purgatory, in one process:
# writes bench-results/results.md, results.json and overhead.png (BENCH_ROUNDS=31 by default).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out bench-results
	$(BIN)/python benchmarks/bench_redis.py --out bench-results  # shared state on a real redis-server
	$(BIN)/python benchmarks/bench_replay.py --out bench-results  # replay: 1,000,000 calls, 3 policies

# This checkout against another revision (BASE=rev, default HEAD~1), path by path, both
# timed in the same run in alternating fresh processes: bench-results/compare.md.
BASE ?= HEAD~1
bench-compare: $(STAMP)
	$(BIN)/python benchmarks/compare.py --base $(BASE) --out bench-results

demo: $(STAMP)
	$(BIN)/python -m breaker_fsm demo

# The committed diagrams, derived from BreakerMachine (the SVG needs Graphviz's `dot`);
# tests/test_diagram.py fails when the .mmd or .dot files are stale.
diagrams: $(STAMP)
	$(BIN)/python -m breaker_fsm diagram --format mermaid --output diagrams/breaker.mmd
	$(BIN)/python -m breaker_fsm diagram --format dot --output diagrams/breaker.dot
	$(BIN)/python -m breaker_fsm diagram --format svg --output diagrams/breaker.svg

# Long runs, not part of `make test`: 50,000 examples per Hypothesis state machine, then ten
# million calls through one breaker and through 10,000 per-host breakers (tracemalloc).
soak: $(STAMP)
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest tests/test_stateful.py -p no:cacheprovider -q --no-cov
	$(BIN)/python tests/soak.py

# Mutation testing (mutmut 3, configured in [tool.mutmut] of pyproject.toml): mutates the
# runner's modules, runs the tests that reach each mutant against it, then prints every
# surviving mutant and the score (`.venv/bin/mutmut show NAME` for one). Results are cached
# in mutants/: a second run only retests what changed. MUTANTS= restricts a run to some
# mutants (globs: MUTANTS='breaker_fsm._policy.*'); MUTATION_JOBS= sets the workers.
# docs/mutation.md has the last full run's figures.
mutation: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-mutation} $(BIN)/mutmut run --max-children $${MUTATION_JOBS:-$$(nproc)} $(MUTANTS)
	$(BIN)/mutmut results
	$(BIN)/python tests/mutation_score.py

clean:
	rm -rf $(VENV) $(TOOLS) .venv-* .pytest_cache .mypy_cache .ruff_cache .coverage bench-results
