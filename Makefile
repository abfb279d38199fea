# The front door. `make run` and `make test` are the README's quick start: both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# mypy reads the package through links laid out here (it cannot follow an editable install's
# import hook); the folders are linked whole, so new modules need no rebuild.
TYPECHECK_TREE := build/typecheck/fanout
# llama-cpp-python compiles from source; pip caches the wheel, so only the first install pays for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install run test unit lint typecheck typecheck-tree bench eval clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(MAKE) --no-print-directory typecheck-tree
	touch $(STAMP)

typecheck-tree:
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)
	for f in fanout/*.py fanout/py.typed; do ln -s "$(CURDIR)/$$f" $(TYPECHECK_TREE)/; done
	for p in agents orchestrator evals; do ln -s "$(CURDIR)/$$p" $(TYPECHECK_TREE)/$$p; done

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

typecheck: $(STAMP) typecheck-tree
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/fanout bench --out bench.json

eval: $(STAMP)
	$(VENV)/bin/fanout eval --suite keyvalue --strategies isolated,monolithic,mti \
		--instances 1,5,10 --groups 4 --doc-tokens 100 --out eval-out/keyvalue

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
