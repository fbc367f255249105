#!/usr/bin/env bash
# The main job on the embedded default (called by `make run`). It says what it does at each step.
set -euo pipefail
WORLD=${1:-runs/world}
OUT=${2:-runs/tiny}
PREFSUM=.venv/bin/prefsum

if [[ -f "$WORLD/frames.jsonl" ]]; then
  echo "==> world: $WORLD exists; reusing it (delete it to regenerate)"
else
  echo "==> world: generating the offline world (seed 0, size default) into $WORLD"
  $PREFSUM data synth --out "$WORLD" --seed 0 --size default
fi

echo "==> validating every generated file against the public formats"
for f in "$WORLD"/tldr/*.jsonl; do $PREFSUM data validate "$f" --format tldr; done
for f in "$WORLD"/news/*.jsonl; do $PREFSUM data validate "$f" --format cnndm; done

echo "==> world statistics (labeler agreement, gold sanity checks)"
$PREFSUM data stats "$WORLD"

if [[ -f "$OUT/tokenizer/tokenizer.json" ]]; then
  echo "==> tokenizer: $OUT/tokenizer exists; reusing it"
else
  echo "==> tokenizer: training byte-level BPE on $WORLD/pretrain.txt"
  $PREFSUM train tokenizer --corpus "$WORLD/pretrain.txt" --out "$OUT/tokenizer"
fi

cat <<MSG

Done. What exists today: the offline world ($WORLD), validated, with its statistics above, and a tokenizer
($OUT/tokenizer). The training stages (pretrain, SFT, reward model, PPO), export, serving and evals are the next
issues; \`prefsum --help\` lists every command and says which are not available yet.
MSG
