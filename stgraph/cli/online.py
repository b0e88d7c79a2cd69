"""``stgraph update`` and ``stgraph drift``: keep a trained model up to date (:mod:`stgraph.online`)."""
from __future__ import annotations


def add_parser(sub) -> None:
    u = sub.add_parser("update", help="continue a trained run on new data (newest weeks, small learning rate, "
                                      "replay of older windows) into a new run directory")
    u.add_argument("run_dir")
    u.add_argument("--data", required=True, help="the new series file (same channels; sensors matched by id)")
    u.add_argument("--out", default=None, help="new run directory (default RUN_DIR-updateK)")
    u.add_argument("--graph", default=None, help="road graph covering the new file's sensors (default: the run's)")
    u.add_argument("--weeks", type=float, default=2.0, help="train on the newest weeks of the new training split "
                                                            "(default 2; 0 = all)")
    u.add_argument("--lr-scale", type=float, default=0.1, help="learning rate = the run's train.lr x this (0.1)")
    u.add_argument("--epochs", type=int, default=3, help="passes over the new windows (default 3)")
    u.add_argument("--replay", type=float, default=0.25, help="share of each batch replayed from the run's own "
                                                              "training windows (default 0.25; 0 = none)")
    u.add_argument("--seed", type=int, default=None)
    u.add_argument("--no-progress", action="store_true")
    u.add_argument("--json", action="store_true")
    d = sub.add_parser("drift", help="rolling error per sensor over time; flags sensors whose error jumps "
                                     "(table and plot)")
    d.add_argument("run_dir")
    d.add_argument("--data", required=True, help="series to check (the run's sensors)")
    d.add_argument("--out", default=None, help="folder for drift.csv, errors.csv, drift.png (default RUN_DIR/drift)")
    d.add_argument("--period", default="1D", help="error per sensor per period (default 1D)")
    d.add_argument("--baseline", type=int, default=2, help="first periods taken as the baseline (default 2)")
    d.add_argument("--recent", type=int, default=2, help="last periods compared with it (default 2)")
    d.add_argument("--jump", type=float, default=0.25,
                   help="flag a sensor whose error rose more than the network's median rise by at least this share "
                        "of the median baseline error (default 0.25)")
    d.add_argument("--stride", type=int, default=1, help="use every k-th window (faster on long files)")
    d.add_argument("--model", default=None, help="import path of the run's user model (package.module:Class)")
    d.add_argument("--json", action="store_true")


def run(args) -> int:
    from .main import emit

    if args.command == "update":
        from ..online.update import update_run

        _, summary = update_run(args.run_dir, args.data, args.out, graph=args.graph, weeks=args.weeks,
                                lr_scale=args.lr_scale, epochs=args.epochs, replay=args.replay, seed=args.seed,
                                progress=not args.no_progress, log=(lambda *a: None) if args.json else print)
        if args.json:
            emit(summary, True)
        return 0
    from ..online.drift import drift_report, drift_table

    res = drift_report(args.run_dir, args.data, args.out, period=args.period, baseline=args.baseline,
                       recent=args.recent, jump=args.jump, stride=args.stride, model=args.model)
    if args.json:
        emit(res, True)
        return 0
    print(drift_table(res))
    print(f"{len(res['flagged'])} sensor(s) flagged over {res['periods']} period(s): {res['flagged'][:20]}; "
          f"table {res['table']}, plot {res['plot']}")
    return 0
