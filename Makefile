# Wraps commands a user could also type. `make demo` and `make test` install what they need.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
STAMP := .venv-installed

.PHONY: install demo test test-all lint bench clean

$(STAMP): pyproject.toml
	@command -v iverilog >/dev/null || (apt-get update -qq && apt-get install -y -qq iverilog) \
		|| echo "warning: could not install iverilog (Icarus tests will fail)"
	$(PIP) install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m spikezip.demo

test: $(STAMP)
	$(PYTHON) -m pytest -n 2 -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-all: $(STAMP)
	$(PYTHON) -m pytest -n 2

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench: $(STAMP)
	$(PYTHON) bench/bench_reference.py
	$(PYTHON) bench/bench_layer_core.py
	$(PYTHON) bench/bench_network.py
	$(PYTHON) bench/bench_vit.py

clean:
	rm -rf build $(STAMP) .pytest_cache
