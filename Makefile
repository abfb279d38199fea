# The front door. `make run` and `make test` are the README's quick start: both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python compiles from source; pip caches the wheel, so only the first install pays for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install run test unit lint typecheck bench eval clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/fanout run examples/suppliers \
		--question "Who is the account manager?"

test: $(STAMP) lint typecheck
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest -m "not integration"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/fanout bench --out bench.json

eval: $(STAMP)
	$(VENV)/bin/fanout eval --suite keyvalue --strategies isolated,monolithic,mti \
		--instances 1,5,10 --groups 4 --doc-tokens 100 --out eval-out/keyvalue

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
