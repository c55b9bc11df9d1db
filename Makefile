# convmon developer commands. `make test` is self-sufficient on a fresh machine: it creates
# the venv, installs the project with its test extras and the external components the tests
# need (anvil from npm; Prometheus and Alertmanager from Debian packages when root).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
TOOLS := .tools
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(TOOLS)/node_modules/.bin:$(PATH)

.PHONY: install tools test lint bench run demo clean chaos chaos-short

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,zmq]'
	touch $(STAMP)

install: $(STAMP)

tools:
	bash scripts/install-tools.sh $(TOOLS)

test: install tools
	$(BIN)/pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check convmon tests bench chaos
	$(BIN)/mypy
	$(BIN)/mypy chaos

bench: install tools
	$(PY) bench/run_all.py

run: install
	$(BIN)/convmon run

demo: install
	$(BIN)/convmon demo

# The chaos suite (not part of `make test`): the daemon as its own process under kills,
# Redis crashes, websocket drops, garbage and a receiver outage; see chaos/README.md.
chaos: install
	$(PY) -m chaos

chaos-short: install
	$(PY) -m chaos --short

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
