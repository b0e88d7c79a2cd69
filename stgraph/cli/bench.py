"""``stgraph bench``: the comparison table of many models under one protocol (see :mod:`stgraph.bench`)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .common import BUDGET_HELP, add_null_value, budgets_arg


def add_parser(sub) -> None:
    """``stgraph bench``; the defaults of --seeds and --jobs are :class:`~stgraph.bench.spec.BenchSpec`'s."""
    import dataclasses

    from ..bench.spec import BenchSpec

    dflt = {f.name: f.default for f in dataclasses.fields(BenchSpec)}
    b = sub.add_parser("bench", help="train and evaluate several models side by side; write results.csv/.md")
    b.add_argument("--data", help="series file (HDF5, npz, CSV)")
    b.add_argument("--graph", help="graph file")
    b.add_argument("--dataset", help="named dataset instead of --data/--graph (files must be present or downloadable)")
    b.add_argument("--root", help="cache folder of named datasets")
    b.add_argument("--models", required=True, help="comma-separated registry names or import paths, "
                                                   "e.g. last,ha,var,dcrnn,stgcn,gwnet,gman,staeformer,stid,stgt")
    b.add_argument("--epochs", type=int, help="epochs for every learned model (default: each paper's config)")
    b.add_argument("--seeds", type=int, default=dflt["seeds"],
                   help=f"seeds 0..k-1 per learned model (default {dflt['seeds']})")
    b.add_argument("--batch-size", type=int)
    b.add_argument("--device")
    add_null_value(b)
    b.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field in every run, or in one model's runs with "
                        "MODEL:SECTION.FIELD=VALUE, e.g. stgt:model.params.hidden=32 (repeatable)")
    b.add_argument("--no-paper-configs", action="store_true", help="use stgraph's defaults, not stgraph/configs/")
    b.add_argument("--compare-published", action="store_true", help="put published results beside the measured")
    b.add_argument("--published-key", help="dataset key in benchmarks/published.yaml (default: --dataset or metr-la)")
    b.add_argument("--budget", type=budgets_arg, default=None, metavar="DURATIONS",
                   help=BUDGET_HELP.replace("training budget", "comma-separated training budgets")
                   + ", e.g. 1m,3m,10m: every learned model trains for the same compute instead of the same "
                     "epochs (epochs 10000 and patience 0 unless --epochs / --set say otherwise, one torch thread "
                     "per run unless --set train.threads=K), and its best-validation checkpoint is evaluated; "
                     "writes budget.csv, budget.md and budget_mae.png")
    b.add_argument("--jobs", type=int, default=dflt["jobs"], metavar="N",
                   help=f"runs side by side, each in its own process (default {dflt['jobs']}); with --budget, N "
                        f"runs of one thread each on N cores are compared fairly")
    b.add_argument("--steps", default=None, help="comma-separated horizon steps of the tables' columns and the plot's "
                                                 "ticks, e.g. 1,2,4 (default: every step up to a horizon of 4, else "
                                                 "the first, middle and last and 3, 6, 12 where they exist; 3,6,12 "
                                                 "for 12-step 5-minute data); per_step.csv always has every step")
    b.add_argument("--progress", action="store_true", help="show each run's progress bar")
    b.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")


def null_override(args) -> list[str]:
    """``--null-value X`` as the override ``data.null_value=X`` (``.nan`` for NaN), or nothing."""
    v = getattr(args, "null_value", None)
    if v is None:
        return []
    return [f"data.null_value={'.nan' if v != v else repr(float(v))}"]


def run(args) -> int:
    from ..bench import BenchError, BenchSpec, run_bench, write_reports
    from ..errors import ConfigError
    from ..limits import COUNT_LIMITS
    from ..metrics import parse_steps

    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: expected at least 1")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: expected at least 1")
    spec = BenchSpec(out=Path(args.out), models=[m.strip() for m in args.models.split(",") if m.strip()],
                     data=args.data, graph=args.graph, dataset=args.dataset, root=args.root, epochs=args.epochs,
                     seeds=args.seeds, batch_size=args.batch_size, device=args.device,
                     overrides=null_override(args) + list(args.set),
                     use_paper_configs=not args.no_paper_configs, compare_published=args.compare_published,
                     published_key=args.published_key, progress=args.progress, budgets=args.budget or [],
                     jobs=args.jobs,
                     steps=parse_steps(args.steps, COUNT_LIMITS["data.horizon"][1]) if args.steps else [])
    rows = run_bench(spec)
    command = "stgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    paths = write_reports(spec, rows, command)
    print(paths["md"].read_text())
    for p in paths.values():
        if p.exists():
            print(f"wrote {p}")
    failed = [r for r in rows if "error" in r]
    if failed:
        raise BenchError(f"{len(failed)} of {len(rows)} runs failed (first: {failed[0]['error']}); "
                         f"the table holds the others; rerun with the same --out to retry only those")
    return 0
