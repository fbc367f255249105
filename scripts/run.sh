#!/usr/bin/env bash
# The main job (called by `make run`):
#   1. `prefsum pipeline` with the tiny profile into OUT: world, tokenizer, pretrain, sft, label, rm, ppo, export,
#      eval, report. Stages already done are skipped (seconds when all are), a killed run resumes where it stopped.
#      It ends by printing where the report is and a three-line summary of it.
#   2. `prefsum serve` on the bundles in OUT/bundles at 127.0.0.1:$PORT (default 8000) until Ctrl-C.
#
# usage: [CONFIG=configs/tiny.toml] [PORT=8000] scripts/run.sh [WORLD] [OUT] [more `prefsum pipeline` arguments,
#        e.g. --set eval.n=100]
set -euo pipefail
WORLD=${1:-runs/world}
OUT=${2:-runs/tiny}
shift $(($# < 2 ? $# : 2))
HOST=127.0.0.1
PORT=${PORT:-8000}
CONFIG=${CONFIG:-configs/tiny.toml}
PREFSUM=.venv/bin/prefsum
start=$(date +%s)

echo "==> prefsum pipeline --config $CONFIG --out $OUT  (world: $WORLD)"
$PREFSUM pipeline --config "$CONFIG" --out "$OUT" --set "world.dir=\"$WORLD\"" "$@"

cat <<MSG

==> main job done in $(($(date +%s) - start))s. Serving the bundles in $OUT/bundles (Ctrl-C stops it):
    API            http://$HOST:$PORT/v1/summarize, /v1/score, /v1/models  (docs/service.md has curl examples)
    labeling page  http://$HOST:$PORT/label
    API docs       http://$HOST:$PORT/schema
MSG
exec $PREFSUM serve --bundles "$OUT/bundles" --host "$HOST" --port "$PORT" --db "$OUT/service/prefsum.db"
