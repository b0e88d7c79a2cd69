#!/usr/bin/env bash
# The model-zoo table on the real METR-LA week (../shared/data/metr-la-week), as committed in
# benchmarks/results/metr-la-week/. CPU budget of a 2-core machine: one seed per learned model and
# per-model epochs (stated in the table's command); the papers' configs otherwise
# (stgraph/configs/<model>.yaml). GMAN runs with 1 ST-attention block instead of the official 5
# and stgt with width 32, batch 32, lr 0.002 (the settings the table was first measured with;
# stgt.yaml's defaults are now batch 16, lr 0.001) to fit that budget. Rerunning resumes: finished runs are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data/metr-la-week
PY=${PY:-.venv/bin/python}
exec "$PY" -m stgraph.cli.main bench --data "$D/metr-la-week.h5" --graph "$D/adj_mx.pkl" \
  --models last,ha,var,stid,stgcn,gwnet,dcrnn,gman,staeformer,stgt --seeds 1 --epochs 15 \
  --set stid:train.epochs=30 --set stgcn:train.epochs=10 --set gwnet:train.epochs=5 \
  --set dcrnn:train.epochs=3 --set gman:train.epochs=3 --set gman:model.params.num_blocks=1 \
  --set staeformer:train.epochs=5 \
  --set stgt:model.params.hidden=32 --set stgt:model.params.spatial_backend=sparse \
  --set stgt:train.batch_size=32 --set stgt:train.lr=0.002 \
  --compare-published --out benchmarks/results/metr-la-week "$@"
