#!/usr/bin/env bash
# Create .venv-peers: the packages stgraph is compared against, pinned, beside
# (never inside) stgraph's own .venv.
#
#   torch==2.13.0 (the CPU wheel on disk)      torch-geometric (same as stgraph's)
#   torch-spatiotemporal==0.9.5 (tsl)          torch-geometric-temporal==0.56.2
#
# tsl and PyG-Temporal are installed with --no-deps: their metadata asks for
# torch_sparse / torch_scatter (no wheels for torch 2.13, no build here in
# reasonable time) and, through them, possibly another torch. Their remaining
# requirements are then read from their own metadata and installed, minus
# torch / torch_sparse / torch_scatter. The missing two are replaced by the
# stand-ins in benchmarks/peers/shims/ (put on PYTHONPATH by bench_peers.py).
#
# Usage: bash benchmarks/peers/setup_peers.sh [VENV]   (default .venv-peers)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-.venv-peers}"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
PYG="${PYG:-torch-geometric==2.8.1}"
TSL="torch-spatiotemporal==0.9.5"
PGT="torch-geometric-temporal==0.56.2"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
if [ -f "$VENV/.installed" ]; then echo "$VENV: already installed"; exit 0; fi
"$PY" -m pip install -q "$TORCH"
"$PY" -m pip install -q "$PYG" "$TORCH"
"$PY" -m pip install -q --no-deps "$TSL" "$PGT"
# the peers' own remaining requirements, from their metadata
DEPS=$("$PY" - <<'PY'
import re
from importlib.metadata import requires
skip = {"torch", "torch-sparse", "torch-scatter", "torch-geometric", "torch-spatiotemporal"}
out = []
for dist in ("torch-spatiotemporal", "torch-geometric-temporal"):
    for req in requires(dist) or []:
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue                      # optional extras (docs, tests, ...)
        name = re.split(r"[ <>=!~;\[(]", req.strip(), 1)[0]
        if name.lower().replace("_", "-") in skip:
            continue
        out.append(req.split(";", 1)[0].strip())
print("\n".join(sorted(set(out))))
PY
)
echo "peer requirements installed as well:"; echo "$DEPS" | sed 's/^/  /'
# shellcheck disable=SC2086
echo "$DEPS" | xargs -d '\n' "$PY" -m pip install -q "$TORCH"
"$PY" - <<'PY'
import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__
PY
touch "$VENV/.installed"
echo "$VENV ready"
