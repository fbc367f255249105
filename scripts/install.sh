#!/usr/bin/env bash
# The one install step, shared by `make install` and the Dockerfile (one source of truth):
#   1. torch alone, from its exact pin in requirements/constraints.txt, so nothing later can resolve another build
#      (a multi-GB CUDA one on a CPU machine);
#   2. the runtime stack (requirements/runtime.txt; with --dev also requirements/dev.txt) against the constraints;
#   3. prefsum itself, without dependencies (they are all pinned above);
#   4. a check that torch is still the pinned version.
#
# usage: scripts/install.sh PYTHON [--dev] [--editable]
#   PYTHON      the interpreter of the environment to install into (e.g. .venv/bin/python)
#   --dev       also install requirements/dev.txt (tests, linters)
#   --editable  install prefsum in editable mode (-e), reading the package from this checkout
# environment:
#   TORCH_INDEX_URL   optional package index for torch only (the PyTorch CPU or CUDA wheel index); unset: pip's
#                     configured index decides
#   INSTALL_DRY_RUN=1 print the commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/install.sh PYTHON [--dev] [--editable]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
py=$1; shift
dev=0; editable=0
for arg in "$@"; do
  case $arg in
    --dev) dev=1 ;;
    --editable) editable=1 ;;
    *) echo "scripts/install.sh: unknown option $arg" >&2; usage ;;
  esac
done

torch_pin=$(grep -E '^torch==' requirements/constraints.txt | head -n 1)
if [[ -z $torch_pin ]]; then
  echo "scripts/install.sh: requirements/constraints.txt has no 'torch==VERSION' line; add the exact pin" >&2
  exit 2
fi

run() {
  if [[ ${INSTALL_DRY_RUN:-0} == 1 ]]; then echo "$*"; else "$@"; fi
}

torch_index=()
[[ -n ${TORCH_INDEX_URL:-} ]] && torch_index=(--index-url "$TORCH_INDEX_URL")
requirements=(-r requirements/runtime.txt)
[[ $dev == 1 ]] && requirements+=(-r requirements/dev.txt)
target=(.)
[[ $editable == 1 ]] && target=(-e .)

run "$py" -m pip install --upgrade "pip>=24"
run "$py" -m pip install "$torch_pin" "${torch_index[@]}"
run "$py" -m pip install -c requirements/constraints.txt "${requirements[@]}"
run "$py" -m pip install -c requirements/constraints.txt --no-deps "${target[@]}"
run "$py" -c "import torch, sys; want = sys.argv[1].split('==')[1]; got = torch.__version__.split('+')[0]; \
assert got == want, f'torch {got} installed, expected {want}'" "$torch_pin"
