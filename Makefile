# Two commands matter: `make run` and `make test`. Everything else is a step they use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config.example.toml

.PHONY: install run test lint bench profile clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	GATEWAY_CONFIG=$(CONFIG) $(BIN)/gateway init
	GATEWAY_CONFIG=$(CONFIG) $(BIN)/gateway serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check gateway adapters keys tests bench

# `make bench` runs every benchmark; `make bench ingest replicas` runs the named ones.
# wrk (the ingest load generator) comes from Debian, installed where missing.
BENCH_NAMES := $(filter-out bench,$(MAKECMDGOALS))
ifeq (bench,$(firstword $(MAKECMDGOALS)))
$(eval $(BENCH_NAMES):;@:)
endif
bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; }
	$(BIN)/python -m bench $(BENCH_NAMES)

# Where one gateway's CPU goes under wrk load: per-thread CPU per webhook and the top
# functions by own time (py-spy; README "Profiling"). PROFILE_ARGS="--seconds 15 --by-caller".
profile: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; }
	@test -x $(BIN)/py-spy || $(BIN)/pip install --quiet py-spy
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
