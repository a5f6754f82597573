# beniful: two commands on a fresh machine with Python 3.11 (README):
#   make reproduce   every notebook on the quick profile (CPU, embedded data) + the book in _build/html
#   make test        unit tests + nbval over the committed, executed notebooks + make smoke
# GPU path: make reproduce PROFILE=paper DATASET=cifar10 (executed notebooks go to notebooks/runs/,
# CSVs to results/paper/cifar10/; the quick ones are left as they are).

SHELL := /bin/bash
comma := ,
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.beniful-installed

PROFILE ?= quick
DATASET ?=
# SEEDS=0,1,2: every notebook over those seeds (tables written as <name>_seeds0-1-2.csv beside the
# single-seed ones; executed notebooks in notebooks/runs/<profile>_<dataset>_seeds0-1-2/)
SEEDS ?=
# EXECUTOR=slurm: run the grid as SLURM jobs (make grid, below); local: as described here
EXECUTOR ?= local

# one model cache, data root and results tree per checkout, whatever the kernel's cwd
export BENIFUL_CACHE := $(CURDIR)/.cache
export BENIFUL_DATA ?= $(CURDIR)/data
export BENIFUL_RESULTS ?= $(CURDIR)/results
export PYDEVD_DISABLE_FILE_VALIDATION := 1

# the table/figure notebooks, in the order the book lists them; book/ pages that are notebooks
NOTEBOOKS := notebooks/table1.ipynb $(filter-out notebooks/table1.ipynb,$(sort $(wildcard notebooks/*.ipynb)))
BOOK_NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

# quick + default dataset: run in place (these are the committed notebooks);
# anything else: beside them in notebooks/runs/<profile>_<dataset>/
ifeq ($(PROFILE)$(DATASET)$(SEEDS),quick)
  RUN_DIR := notebooks
  PM_PARAMS :=
else
  RUN_DIR := notebooks/runs/$(PROFILE)_$(or $(subst $(comma),+,$(DATASET)),default)$(if $(SEEDS),_seeds$(subst $(comma),-,$(SEEDS)))
  PM_PARAMS := -p profile $(PROFILE) $(if $(DATASET),-p dataset $(DATASET)) $(if $(SEEDS),-p seed $(SEEDS))
endif

.PHONY: help install reproduce datasets grid notebooks nbval-table1 nbval-chain-a nbval-chain-b book-notebooks book test unit nbval smoke lint clean-book $(RUN_TARGETS)

help:
	@echo "make install     build .venv ($(PYTHON)) from requirements.txt and install beniful into it"
	@echo "make reproduce   run every notebook with papermill (PROFILE=$(PROFILE) DATASET=$(DATASET)), JOBS=$(JOBS) at a time, and build the book"
	@echo "make reproduce EXECUTOR=slurm   the same as SLURM jobs (GRID_* settings below; book page Running at scale)"
	@echo "make test        unit tests + pytest --nbval-lax notebooks/ + make smoke"
	@echo "make smoke       every notebook on the smoke profile over CIFAR-10/Tiny-ImageNet-shaped data, CSVs checked"
	@echo "make book        jupyter-book build -W -n --keep-going . (into _build/html)"
	@echo "make lint        ruff check . (rules in pyproject.toml)"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or pass PYTHON=/path/to/python3.11" >&2; exit 1; }; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install -e . --no-deps
	touch $(STAMP)

# Notebooks: table1 first (it trains the models every other notebook loads), then the rest as two
# chains run side by side, each kernel on THREADS torch threads: on 2 cores two one-thread kernels
# finish sooner than one two-thread kernel after another (the quick profile's small convolutions do
# not scale to 2 threads: measured 1.5x the throughput). Chain A puts fig3 before table3, which
# reuses fig3's BeniFul repairs from the cache. The three longest notebooks get a second kernel
# (PREFETCH, below): table1 runs beside its prefetch, and table3's and table6's prefetches close
# chain B, which is otherwise done long before chain A's table3 and table6. JOBS=1 runs everything one after the other with torch's
# default threads and no prefetch. Notebooks in neither chain run whenever a slot is free.
JOBS ?= 2
THREADS ?= $(if $(filter 1,$(JOBS)),,1)
CHAIN_A := fig3 table3 fig1 table5 table6
CHAIN_B := table4 fig4 table2 fig2 fig5

reproduce: $(STAMP)
	@$(MAKE) --no-print-directory datasets
ifeq ($(EXECUTOR),local)
	@$(MAKE) --no-print-directory notebooks
	@$(MAKE) --no-print-directory book-notebooks
	@$(MAKE) --no-print-directory book
else
	@$(MAKE) --no-print-directory grid
endif

# EXECUTOR=slurm: the same grid as SLURM jobs through submitit (python -m beniful.grid; the book's
# "Running at scale" page): phase 1 every model as one job array, phase 2 every notebook, phase 3
# the book. Per job: GRID_PARTITION, GRID_GPUS (default 0), GRID_CPUS (1), GRID_TIME (minutes, 120),
# GRID_ARRAY (array parallelism, 64), GRID_SBATCH (extra sbatch options, KEY=VALUE,...),
# GRID_CONFIG (a TOML file of the same settings), GRID_OPTS (any other option of beniful.grid).
GRID_OPTS ?=
grid: $(STAMP)
	$(BIN)/python -m beniful.grid --executor $(EXECUTOR) --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET)) \
	  $(if $(SEEDS),--seeds $(SEEDS)) $(if $(GRID_PARTITION),--partition $(GRID_PARTITION)) \
	  $(if $(GRID_GPUS),--gpus $(GRID_GPUS)) $(if $(GRID_CPUS),--cpus $(GRID_CPUS)) $(if $(GRID_TIME),--time $(GRID_TIME)) \
	  $(if $(GRID_ARRAY),--array-parallelism $(GRID_ARRAY)) $(foreach o,$(subst $(comma), ,$(GRID_SBATCH)),--sbatch $(o)) \
	  $(if $(GRID_CONFIG),--config $(GRID_CONFIG)) $(GRID_OPTS)

# which data sets the notebooks will run (quick: mnist5k, plus Fashion-MNIST when installed; a missing one is
# named with how to get it); fails at once, naming the download command, when a named data set is missing
datasets: $(STAMP)
	@$(BIN)/python -c "from beniful.notebook import setup; r = setup('$(PROFILE)', $(if $(DATASET),'$(DATASET)',None), plot_style=False); \
	  print('>> data sets:', ', '.join(r.datasets)); r.missing and print('>> ' + r.missing_note())"

RUN_TARGETS := $(patsubst notebooks/%.ipynb,run-%,$(NOTEBOOKS))
_exists = $(foreach n,$(1),$(if $(filter notebooks/$(n).ipynb,$(NOTEBOOKS)),$(n)))
LATER_TARGETS := $(addprefix run-,$(call _exists,$(CHAIN_A) $(CHAIN_B))) \
  $(filter-out run-table1 $(addprefix run-,$(CHAIN_A) $(CHAIN_B)),$(RUN_TARGETS))
# PREFETCH: a second kernel for each of these notebooks runs it over its data sets, attacks and seeds
# in reverse order (python -m beniful.notebook.prefetch), executed notebook and tables into a scratch
# directory under .cache/prefetch/; through the cache's per-entry locks it computes what the kept
# kernel has not reached yet, and that one loads it (only the kept notebook and its tables count).
# Only with JOBS >= 2, and only notebooks that exist.
PREFETCH ?= table1 table3 table6
# the attacks a prefetch kernel runs where a notebook's default set is not the headline one
PREFETCH_ATTACKS_table6 := adaptive_blend,adaptive_patch,adv_embedding
_prefetch = $(if $(filter-out 1,$(JOBS)),$(addprefix prefetch-,$(filter $(1),$(call _exists,$(PREFETCH)))))
TABLE1_PREFETCH := $(call _prefetch,table1)
CHAIN_B_PREFETCH := $(call _prefetch,$(filter-out table1,$(PREFETCH)))
PREFETCH_DIR := $(CURDIR)/.cache/prefetch/$(subst /,_,$(RUN_DIR))
PREFETCH_PARAMS = $(BIN)/python -m beniful.notebook.prefetch --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET)) $(if $(SEEDS),--seed $(SEEDS))

notebooks: $(STAMP)
	@$(MAKE) --no-print-directory -j$(JOBS) -Otarget $(if $(THREADS),BENIFUL_NUM_THREADS=$(THREADS)) run-table1 $(TABLE1_PREFETCH)
	@$(MAKE) --no-print-directory -j$(JOBS) -Otarget ORDERED=1 $(if $(THREADS),BENIFUL_NUM_THREADS=$(THREADS)) $(LATER_TARGETS) $(CHAIN_B_PREFETCH)

# inside the parallel run each notebook of a chain waits for the one before it
ifdef ORDERED
_chain = $(if $(word 2,$(1)),$(eval run-$(word 2,$(1)): | run-$(word 1,$(1)))$(call _chain,$(wordlist 2,$(words $(1)),$(1))))
$(call _chain,$(call _exists,$(CHAIN_A)))
$(call _chain,$(call _exists,$(CHAIN_B)))
$(if $(CHAIN_B_PREFETCH),$(eval $(CHAIN_B_PREFETCH): | run-$(lastword $(call _exists,$(CHAIN_B)))))
endif

prefetch-%: $(STAMP)
	@mkdir -p $(PREFETCH_DIR)/$*
	@echo ">> $* from the other end, beside the kept run (torch threads: $${BENIFUL_NUM_THREADS:-default})"
	BENIFUL_RESULTS=$(PREFETCH_DIR)/$*/results $(BIN)/papermill notebooks/$*.ipynb $(PREFETCH_DIR)/$*/$*.ipynb \
	  --cwd notebooks --kernel python3 --no-progress-bar -y "$$($(PREFETCH_PARAMS) $(if $(PREFETCH_ATTACKS_$*),--attacks $(PREFETCH_ATTACKS_$*)))"

run-%: $(STAMP)
	@mkdir -p $(RUN_DIR)
	@echo ">> $* (torch threads: $${BENIFUL_NUM_THREADS:-default})"
	time $(BIN)/papermill notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb --cwd notebooks --kernel python3 --no-progress-bar $(PM_PARAMS)

# book pages computed from the results tree (all profiles); cheap, re-run by reproduce only
book-notebooks: $(STAMP)
	@for nb in $(BOOK_NOTEBOOKS); do \
	  echo ">> papermill $$nb (in place)"; \
	  $(BIN)/papermill $$nb $$nb --cwd book --kernel python3 --no-progress-bar; \
	done

book: $(STAMP)
	$(BIN)/jupyter-book build -W -n --keep-going .

test: unit nbval smoke

# Smoke test (CI): every notebook on the smoke profile (the paper profile's code path at toy sizes,
# beniful/profiles.py) over CIFAR-10- and Tiny-ImageNet-shaped data written from the embedded digits
# (tests/support/smoke_data.py), then a check of every CSV they wrote (tests/smoke/). table5 reads
# the two benchmarks, so they run first (--quick: one repeat, short fits; --no-budget: each method
# at its defaults, which table5's acceptance rows need; 64 images). Data, CSVs and executed
# notebooks stay out of the committed trees: data and CSVs under .cache/smoke/, notebooks in
# notebooks/runs/smoke_<dataset>/ (ignored; the book excludes notebooks/runs). Measured cold on 2
# cores: about 4-6 min for cifar10, 18 for tiny-imagenet.
SMOKE_DIR := $(CURDIR)/.cache/smoke
# CI runs the CIFAR-10 shape only (the SLURM grid compares against it); the Tiny-ImageNet shape
# (3x64x64, 200 classes) adds about 18 minutes on 2 cores: make smoke SMOKE_DATASETS="cifar10 tiny-imagenet"
SMOKE_DATASETS ?= cifar10
SMOKE_ENV := BENIFUL_DATA=$(SMOKE_DIR)/data BENIFUL_RESULTS=$(SMOKE_DIR)/results
smoke: $(STAMP)
	rm -rf $(SMOKE_DIR)/results
	$(BIN)/python tests/support/smoke_data.py $(SMOKE_DIR)/data
	@$(MAKE) --no-print-directory $(addprefix smoke-,$(SMOKE_DATASETS))
	BENIFUL_SMOKE_RESULTS=$(SMOKE_DIR)/results BENIFUL_SMOKE_DATASETS="$(SMOKE_DATASETS)" \
	  $(BIN)/pytest -q tests/smoke

# one data set: the benchmarks, then every notebook (each recipe line on its own: `make -n` runs
# the lines that call $(MAKE), so no other command may share them)
smoke-%: $(STAMP)
	@echo ">> smoke: benchmarks and every notebook on $*"
	$(SMOKE_ENV) $(BIN)/python benchmarks/bench_detection.py --profile smoke --dataset $* --quick --no-budget --n 64 --threads 1 >/dev/null
	$(SMOKE_ENV) $(BIN)/python benchmarks/bench_elimination.py --profile smoke --dataset $* --quick --threads 1 >/dev/null
	@$(MAKE) --no-print-directory notebooks PROFILE=smoke DATASET=$* $(SMOKE_ENV)

unit: $(STAMP)
	$(BIN)/pytest -q --durations=10 tests

# nbval re-runs every committed notebook and compares the checked outputs: table1 first (it trains
# the models), then the same two chains as `make notebooks`, side by side with one torch thread per
# kernel, so a cold check takes about as long as a cold `make reproduce` (JOBS=1: one after another)
NBVAL := $(BIN)/pytest -q --nbval-lax --nbval-cell-timeout=3600 --durations=8
NBVAL_LATER := $(filter-out notebooks/table1.ipynb $(patsubst %,notebooks/%.ipynb,$(CHAIN_A) $(CHAIN_B)),$(NOTEBOOKS))
nbval: $(STAMP)
	@$(MAKE) --no-print-directory -j$(JOBS) -Otarget $(if $(THREADS),BENIFUL_NUM_THREADS=$(THREADS)) nbval-table1 $(TABLE1_PREFETCH)
	@$(MAKE) --no-print-directory -j$(JOBS) -Otarget $(if $(THREADS),BENIFUL_NUM_THREADS=$(THREADS)) nbval-chain-a nbval-chain-b
	$(if $(NBVAL_LATER),$(NBVAL) $(NBVAL_LATER))

nbval-table1: $(STAMP)
	$(NBVAL) notebooks/table1.ipynb

# chain B ends with table3's prefetch (PREFETCH, above), which helps chain A's table3
nbval-chain-a nbval-chain-b: nbval-chain-%: $(STAMP)
	$(NBVAL) $(foreach n,$(call _exists,$(CHAIN_$(shell echo $* | tr a-z A-Z))),notebooks/$(n).ipynb)
	$(if $(filter b,$*),$(foreach t,$(CHAIN_B_PREFETCH),$(MAKE) --no-print-directory $(t);))

# the small bug-catching rule set of pyproject.toml's [tool.ruff.lint]; seconds, so CI runs it first
lint: $(STAMP)
	$(BIN)/ruff check .

clean-book:
	rm -rf _build
