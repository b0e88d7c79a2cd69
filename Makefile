# stgraph: `make demo` and `make test` work on a fresh clone with nothing installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU build that lies on these machines' disk; an
# unpinned torch would pull several GB of CUDA wheels.
TORCH  ?= torch==2.13.0
DEMO   ?= demo

.PHONY: venv install demo test bench bench-attention bench-zoo bench-budget bench-cost bench-peers clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m stgraph.demo --out $(DEMO)

test: $(STAMP)
	$(PY) -m pytest -q tests

# data-path memory/speed and stgt's two spatial-attention backends (a few minutes on CPU)
bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_stgt_backends.py

# one stgt training step per spatial-attention path at 207 .. 8,600 sensors (about 30 min on 2 cores)
bench-attention: $(STAMP)
	$(PY) benchmarks/bench_attention.py

# the model-zoo table on the real METR-LA week (long on CPU; rerun to resume)
bench-zoo: $(STAMP)
	bash benchmarks/zoo_metr_la_week.sh

# every zoo model for 1, 3 and 10 CPU-minutes on the real METR-LA week, two runs at a time (about an
# hour on 2 cores); writes bench_budget/budget.md, budget.csv and budget_mae.png (rerun to resume)
WEEK ?= ../shared/data/metr-la-week
bench-budget: $(STAMP)
	$(PY) -m stgraph bench --data $(WEEK)/metr-la-week.h5 --graph $(WEEK)/adj_mx.pkl \
	    --models last,ha,var,stid,stgcn,gwnet,dcrnn,gman,staeformer,stgt-classic,stgt \
	    --seeds 1 --budget 1m,3m,10m --jobs 2 --out bench_budget

# one stgt training step, shipped shape against the classic one, 207 and 8,600 sensors (about 10 min)
bench-cost: $(STAMP)
	$(PY) benchmarks/bench_stgt_cost.py

# stgraph against tsl and PyTorch Geometric Temporal (makes .venv-peers on first use; see
# benchmarks/peers/bench_peers.py); writes benchmarks/results/peers.md and peers.json
bench-peers: $(STAMP)
	bash benchmarks/peers/setup_peers.sh
	$(PY) benchmarks/peers/bench_peers.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
