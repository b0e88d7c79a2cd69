"""``stgraph update`` and ``stgraph drift``: keep a trained model up to date (:mod:`stgraph.online`).

``update`` is :func:`stgraph.update`: its flags are that function's keyword arguments, their defaults
read from its signature.
"""
from __future__ import annotations

import inspect

from .common import MODEL_PATH_HELP, checked, emit


def _update_defaults() -> dict:
    from ..api import update

    return {name: p.default for name, p in inspect.signature(update).parameters.items()}


def add_parser(sub) -> None:
    """``stgraph update`` and ``stgraph drift``."""
    dflt = _update_defaults()
    u = sub.add_parser("update", help="continue a trained run on new data (newest weeks, small learning rate, "
                                      "replay of older windows) into a new run directory")
    u.add_argument("run_dir")
    u.add_argument("--data", required=True, help="the new series file (same channels; sensors matched by id)")
    u.add_argument("--out", default=None, help="new run directory (default RUN_DIR-updateK)")
    u.add_argument("--graph", default=None, help="road graph covering the new file's sensors (default: the run's)")
    u.add_argument("--weeks", type=float, default=dflt["weeks"],
                   help=f"train on the newest weeks of the new training split (default {dflt['weeks']:g}; 0 = all)")
    u.add_argument("--lr-scale", type=float, default=dflt["lr_scale"],
                   help=f"learning rate = the run's train.lr x this ({dflt['lr_scale']:g})")
    u.add_argument("--epochs", type=int, default=dflt["epochs"],
                   help=f"passes over the new windows (default {dflt['epochs']})")
    u.add_argument("--replay", type=float, default=dflt["replay"],
                   help=f"share of each batch replayed from the run's own training windows (default "
                        f"{dflt['replay']:g}; 0 = none)")
    u.add_argument("--seed", type=int, default=dflt["seed"])
    u.add_argument("--no-progress", dest="progress", action="store_false", default=dflt["progress"])
    u.add_argument("--json", action="store_true")
    d = sub.add_parser("drift", help="rolling error per sensor over time; flags sensors whose error jumps "
                                     "(table and plot)")
    d.add_argument("run_dir")
    d.add_argument("--data", required=True, help="series to check (the run's sensors)")
    d.add_argument("--out", default=None, help="folder for drift.csv, errors.csv, drift.png (default RUN_DIR/drift)")
    d.add_argument("--force", action="store_true", help="replace files of those names in --out that stgraph did "
                                                        "not write")
    from ..online.drift import check_count, check_jump, parse_period

    def count(name):
        return checked(lambda text: check_count(name, _integer(text)))

    d.add_argument("--period", default="1D", type=checked(lambda t: (parse_period(t), t)[1]),
                   help="error per sensor per period, at least the data's interval (default %(default)s)")
    d.add_argument("--baseline", type=count("baseline"), default=2,
                   help="first periods taken as the baseline (default %(default)s)")
    d.add_argument("--recent", type=count("recent"), default=2,
                   help="last periods compared with it (default %(default)s)")
    d.add_argument("--jump", type=checked(check_jump), default=0.25,
                   help="flag a sensor whose error rose more than the network's median rise by at least this share "
                        "of the median baseline error; a finite number > 0 (default %(default)s)")
    d.add_argument("--stride", type=count("stride"), default=1, help="use every k-th window (faster on long files)")
    d.add_argument("--model", default=None, help=MODEL_PATH_HELP)
    d.add_argument("--json", action="store_true")


def _integer(text: str):
    """``text`` as an int where it is one (``'3'``), else as it is (refused by the check, naming it)."""
    try:
        return int(text)
    except ValueError:
        return text


def run(args) -> int:
    if args.command == "update":
        from ..api import update

        summary = update(args.run_dir, args.data, out=args.out, graph=args.graph, weeks=args.weeks,
                         lr_scale=args.lr_scale, epochs=args.epochs, replay=args.replay, seed=args.seed,
                         progress=args.progress)
        if args.json:
            emit(summary, True)
        return 0
    from ..online.drift import drift_report, drift_table

    res = drift_report(args.run_dir, args.data, args.out, period=args.period, baseline=args.baseline,
                       recent=args.recent, jump=args.jump, stride=args.stride, model=args.model, force=args.force)
    if args.json:
        emit(res, True)
        return 0
    print(drift_table(res))
    print(f"{len(res['flagged'])} sensor(s) flagged over {res['periods']} period(s): {res['flagged'][:20]}; "
          f"table {res['table']}, plot {res['plot']}")
    return 0
