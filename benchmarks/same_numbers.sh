#!/usr/bin/env bash
# The refactor check: run the fixed-seed determinism set and write a digest of every file it makes
# (timestamps and absolute paths aside), so two trees can be compared with `diff`.
#
#   bash benchmarks/same_numbers.sh OUT [PYTHON]
#
# - `stgraph bench` on the real METR-LA week, all ten models, 2 epochs x 15 batches, one thread, seed 0;
# - a federated simulate with --local-blend and an update, both on the synthetic network.
# OUT/digest.txt lists each result file with the hash of its content, after dropping the fields that
# name a time or a folder (see benchmarks/digest.py).
set -euo pipefail
OUT=${1:?usage: same_numbers.sh OUT [PYTHON]}
PY=${2:-.venv/bin/python}
WEEK=${WEEK:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/metr-la-week}
HERE=$(cd "$(dirname "$0")" && pwd)
PARTS=${PARTS:-bench fed update}   # a subset, e.g. PARTS="fed update"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONHASHSEED=0
has() { [[ " $PARTS " == *" $1 "* ]]; }
has bench && rm -rf "$OUT/bench" && $PY -m stgraph bench --data "$WEEK/metr-la-week.h5" --graph "$WEEK/adj_mx.pkl" \
    --models last,ha,var,dcrnn,stgcn,gwnet,gman,staeformer,stid,stgt --epochs 2 --seeds 1 \
    --set train.max_batches=15 --set train.threads=1 --out "$OUT/bench" >"$OUT/bench.log" 2>&1
rm -rf "$OUT/synth" "$OUT/fed" "$OUT/run" "$OUT/run-update"
$PY -m stgraph data synth --out "$OUT/synth" --sensors 24 --days 7 --seed 3 >/dev/null
has fed && $PY -m stgraph federated simulate --data "$OUT/synth/synthetic.h5" --graph "$OUT/synth/adj_mx.pkl" \
    --clients 3 --rounds 2 --local-epochs 1 --finetune-epochs 1 --local-blend --seed 0 \
    --set train.max_batches=5 --set train.threads=1 --set train.batch_size=8 \
    --out "$OUT/fed" >"$OUT/fed.log" 2>&1
has update && $PY -m stgraph train --data "$OUT/synth/synthetic.h5" --graph "$OUT/synth/adj_mx.pkl" --model stgt \
    --epochs 1 --set train.max_batches=5 --set train.threads=1 --batch-size 8 --no-progress \
    --out "$OUT/run" >"$OUT/train.log" 2>&1
has update && $PY -m stgraph update "$OUT/run" --data "$OUT/synth/synthetic.h5" --epochs 1 --weeks 0 --seed 0 \
    --no-progress --out "$OUT/run-update" >"$OUT/update.log" 2>&1
$PY "$HERE/digest.py" "$OUT" >"$OUT/digest.txt"
echo "wrote $OUT/digest.txt ($(wc -l <"$OUT/digest.txt") files)"
