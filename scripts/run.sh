#!/usr/bin/env bash
# The main job on the embedded default (called by `make run`). Until the full pipeline lands (world -> ... -> PPO ->
# export -> serve), it runs every stage that exists with the tiny profile and says what it does at each step.
# Stages whose output exists are reused and a killed stage resumes; delete runs/ to start over.
set -euo pipefail
WORLD=${1:-runs/world}
RUN=${2:-runs/tiny}
PREFSUM=.venv/bin/prefsum
CONFIG=configs/tiny.toml
PROFILE=(--config "$CONFIG" --run "$RUN" --set "world.dir=$WORLD")
start=$(date +%s)
step() { echo; echo "==> [$(( $(date +%s) - start ))s] $*"; }

if [[ -f "$WORLD/frames.jsonl" ]]; then
  step "world: $WORLD exists; reusing it"
else
  step "world: generating the offline world (seed 0, size default) into $WORLD"
  $PREFSUM data synth --out "$WORLD" --seed 0 --size default >/dev/null
fi

step "validating every generated file against the public formats"
for f in "$WORLD"/tldr/*.jsonl; do $PREFSUM data validate "$f" --format tldr; done
for f in "$WORLD"/news/*.jsonl; do $PREFSUM data validate "$f" --format cnndm; done

step "world statistics (labeler agreement, gold sanity checks)"
$PREFSUM data stats "$WORLD"

if [[ -f "$RUN/tokenizer/tokenizer.json" ]]; then
  step "tokenizer: $RUN/tokenizer exists; reusing it"
else
  step "tokenizer: byte-level BPE on $WORLD/pretrain.txt"
  $PREFSUM train tokenizer --corpus "$WORLD/pretrain.txt" --out "$RUN/tokenizer"
fi

run_stage() {  # name, output folder, command...
  local name=$1 out=$2; shift 2
  if [[ -f "$out/prefsum.json" ]]; then
    step "$name: $out exists; reusing it"
  else
    step "$name"
    "$@" --resume
  fi
}
run_stage "pretrain: the small base model (from a hand-built copy circuit) on the world corpus, ~8 min" \
  "$RUN/pretrained" $PREFSUM train pretrain "${PROFILE[@]}"
run_stage "sft: fine-tuning on reference TL;DRs, ~3 min" "$RUN/sft" $PREFSUM train sft "${PROFILE[@]}"

if [[ -f "$RUN/comparisons/all.jsonl" ]]; then
  step "label: $RUN/comparisons/all.jsonl exists; reusing it"
else
  mkdir -p "$RUN/comparisons"
  for k in 1 2; do
    step "label: comparison round $k of 2 (2,000 posts; pretrained vs sft vs reference; simulated labelers)"
    $PREFSUM label --policies "pretrained=$RUN/pretrained,sft=$RUN/sft" --data "$WORLD" --posts 2000 --round $k \
      --out "$RUN/comparisons/round$k.jsonl" | grep '"comparisons"'
  done
  cat "$RUN"/comparisons/round1.jsonl "$RUN"/comparisons/round2.jsonl > "$RUN/comparisons/all.jsonl.tmp"
  mv "$RUN/comparisons/all.jsonl.tmp" "$RUN/comparisons/all.jsonl"
fi
run_stage "rm: reward model on the comparisons, ~2 min" "$RUN/rm" $PREFSUM train rm "${PROFILE[@]}"

step "eval: held-out posts, judged by the world's ground truth"
for policy in pretrained sft; do
  $PREFSUM eval checkpoint --checkpoint "$RUN/$policy" --data "$WORLD" -n 200 > "$RUN/$policy.eval.json"
  .venv/bin/python - "$policy" "$RUN/$policy.eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
lo, hi = r["win_rate_ci95"]
print(f"{sys.argv[1]:>10}: fact recall {r['fact_recall']:.2f}, wrong-value rate {r['wrong_value_rate']:.2f}, "
      f"win rate vs reference {r['win_rate_vs_ref']:.2f} [{lo:.2f}, {hi:.2f}]")
PY
done
.venv/bin/python - "$RUN/rm/prefsum.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(f"        rm: validation accuracy {m['val/accuracy']:.3f} vs labeler agreement {m['labeler_agreement']:.3f}")
PY

cat <<MSG

Done in $(( $(date +%s) - start ))s. What ran: the offline world ($WORLD), its checks, the tokenizer, a base model,
SFT, two comparison rounds, a reward model and a ground-truth evaluation of the policies ($RUN; each stage's
prefsum.json holds its config, data hashes and metrics). PPO, ONNX export, the service and the eval reports are the
next issues.
MSG
