# proxbench — every target sets up what it needs and is fast when there is nothing to do.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.proxbench-setup
APT_PACKAGES := g++ pkg-config libturbojpeg0-dev libopencv-dev dataset-fashion-mnist
GRID ?= default
EXECUTOR ?= local
CLUSTER ?= slurm/local.toml
DATASET ?= fashion-mnist
PARALLEL ?= 2
# make bench's records and leaderboards (git-ignored); results/ keeps the committed reference
BENCH_DIR ?= work/bench

.PHONY: help setup system-packages bench bench-w1a1 test results grid data slurm-up slurm-down perf clean

help:
	@echo "make bench    set up, train the default grid (Fashion-MNIST, every method, CPU) into work/bench, print its"
	@echo "              leaderboard and each method against the committed reference (results/default) and its spread"
	@echo "make bench-w1a1  the same for the eight W1A1 (binary weights and activations) methods of BiBench"
	@echo "make test     set up and run the test suite"
	@echo "make results  rebuild every leaderboard and figure from the run records"
	@echo "make grid GRID=NAME EXECUTOR=local|debug|slurm [CLUSTER=slurm/v100.toml]"
	@echo "make data DATASET=NAME   write FFCV .beton files"
	@echo "make slurm-up / slurm-down   start/stop a single-node SLURM on localhost"
	@echo "make perf     performance benchmarks (ratios measured in one run)"

setup: $(STAMP)

# System packages: FFCV needs a C++ compiler, pkg-config, libturbojpeg and OpenCV at build and run time (the
# compiler also builds the W1A1 quantizers' CPU loops, methods/kernels.c); the default benchmark reads
# Debian's Fashion-MNIST files.
system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "error: missing system packages; run: sudo apt-get install -y $$missing" >&2; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-packages
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ffcv]'
	@touch $(STAMP)

# Train the grid for real into $(BENCH_DIR) (the committed records in results/ are the reference, not a
# cache), print its leaderboard, then each method against the reference and the measured run-to-run spread.
bench: setup
	$(PY) -m bench grid run default --executor local --parallel $(PARALLEL) --results $(BENCH_DIR)
	$(PY) -m bench aggregate default --results $(BENCH_DIR)
	$(PY) -m bench compare default --results $(BENCH_DIR)

bench-w1a1: setup
	$(PY) -m bench grid run default-w1a1 --executor local --parallel $(PARALLEL) --results $(BENCH_DIR)
	$(PY) -m bench aggregate default-w1a1 --results $(BENCH_DIR)
	$(PY) -m bench compare default-w1a1 --results $(BENCH_DIR)

test: setup
	$(PY) -m pytest -q -n auto

results: setup
	$(PY) -m bench aggregate

grid: setup
	$(PY) -m bench grid run $(GRID) --executor $(EXECUTOR) $(if $(filter slurm,$(EXECUTOR)),--cluster $(CLUSTER))

data: setup
	$(PY) -m bench data prepare $(DATASET)

slurm-up:
	bash slurm/local/start.sh

slurm-down:
	bash slurm/local/stop.sh

perf: setup
	$(PY) -m bench perf all

clean:
	rm -rf work
