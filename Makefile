# Every target creates the virtual environment on first use, so a fresh clone needs
# nothing but Python:  `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
EXTRAS := dev,cli,httpx,prometheus,redis,diagrams

.PHONY: install test lint bench demo diagrams soak mutation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/python -m pytest --cov --cov-report=term-missing --cov-fail-under=95

lint: $(STAMP)
	$(BIN)/ruff check breaker_fsm tests
	$(BIN)/ruff format --check breaker_fsm tests
	$(BIN)/mypy breaker_fsm

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS),bench]"
	touch $(BENCH_STAMP)

# breaker_fsm against pybreaker, circuitbreaker, aiobreaker and purgatory, in one process:
# writes bench-results/results.md, results.json and overhead.png (BENCH_ROUNDS=31 by default).
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py --out bench-results
	$(BIN)/python benchmarks/bench_redis.py --out bench-results  # shared state on a real redis-server

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
# machine, policy, breaker and audit modules, runs the fast tests against each mutant, then
# prints every surviving mutant and the score (`.venv/bin/mutmut browse` to inspect them).
# Results are cached in mutants/: a second run only retests what changed.
mutation: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-mutation} $(BIN)/mutmut run --max-children $$(nproc)
	$(BIN)/mutmut results
	$(BIN)/python tests/mutation_score.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage bench-results
