"""``stgraph data {info,synth,download,list}``: inspect, generate and download traffic series."""
from __future__ import annotations

from ..errors import ConfigError
from .common import add_null_value, emit


def add_parser(sub) -> None:
    """``stgraph data {info,synth,download,list}``."""
    p = sub.add_parser("data", help="inspect, generate and download traffic series")
    s = p.add_subparsers(dest="action", required=True)
    info = s.add_parser("info", help="steps, sensors, channels, start, end, interval, missing ratio")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    add_null_value(info)
    info.add_argument("--start", default=None, help="first timestamp for files without timestamps (npz)")
    info.add_argument("--freq", default=None, help="interval for files without timestamps, e.g. 5min")
    syn = s.add_parser("synth", help="write the synthetic road network (METR-LA's HDF5 layout) or the synthetic "
                                     "counts network (hourly boardings, CSV + node-link graph)")
    syn.add_argument("--out", required=True)
    syn.add_argument("--force", action="store_true", help="replace files in --out that stgraph did not write (a "
                                                          "real adj_mx.pkl, locations, ids ...)")
    syn.add_argument("--kind", choices=["speeds", "counts", "daily"], default="speeds",
                     help="speeds: 5-minute speeds, METR-LA layout (default); counts: hourly boardings at stops "
                          "with real zeros and daily / weekly profiles, counts.csv + graph.json (distances in metres); "
                          "daily: counts --interval day")
    syn.add_argument("--dynamic-graph", action="store_true",
                     help="daily: regions whose mobility graph changes every day (weekdays, weekends, events) and "
                          "daily cases driven by the flows: cases.csv, mobility.csv (timestamp,source,target,weight: "
                          "a graph that changes over time) and mobility_mean.csv (its mean static graph)")
    syn.add_argument("--sensors", type=int, default=207)
    syn.add_argument("--interval", choices=["hour", "day"], default="hour",
                     help="counts: hour (hourly boardings, default) or day (daily counts per region, e.g. daily new "
                          "cases: one row a day, a weekly rhythm, zeros in small regions)")
    syn.add_argument("--days", type=int, default=None, help="days to simulate (default 7 for speeds, 56 for counts)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--start", default=None, help="first day (default 2012-03-01 for speeds, Monday 2012-03-05 "
                                                   "for counts)")
    syn.add_argument("--rain", action="store_true", help="speeds: rain episodes slowing traffic network-wide, and "
                                                         "rain.csv, a covariate file (--covariates)")
    syn.add_argument("--incidents", action="store_true", help="speeds: incidents.csv, per-sensor incident flags (a "
                                                              "covariate file) for the simulated incidents")
    syn.add_argument("--reports", action="store_true", help="speeds: reports.csv, text reports of the incidents "
                                                            "(severity, expected duration), planned events near a "
                                                            "venue whose crowds slow traffic, and noise")
    syn.add_argument("--json", action="store_true")
    dl = s.add_parser("download", help="download a named dataset into the cache")
    dl.add_argument("name")
    dl.add_argument("--root", default=None)
    dl.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                    help="pin the checksum you trust for a file the manifest cannot verify (repeatable)")
    s.add_parser("list", help="named datasets with a manifest")


def run(args) -> int:
    return {"info": data_info, "synth": data_synth, "download": data_download, "list": data_list}[args.action](args)


def data_info(args) -> int:
    from ..io import read_series

    s = read_series(args.path, null_value=args.null_value, start=args.start, freq=args.freq)
    info = s.summary()
    info["path"] = str(args.path)
    counts = count_channels(s)
    if counts:
        info["suggestion"] = (f"channel(s) {counts} hold non-negative integers with zeros (counts): train with "
                              f"--distribution lognormal (bands that stay >= 0) and --set data.nonnegative=true "
                              f"(point forecasts and quantiles clipped at 0 for every model)")
    emit(info, args.json)
    return 0


def count_channels(series) -> list[str]:
    """The channels of ``series`` (``values [T, N, C]``) whose readings (NaN and a non-zero null marker left
    out) are all non-negative integers, with at least one 0: counts."""
    import numpy as np

    from ..io.series import null_mask

    v = series.values
    null = float(series.null_value)
    skip = v != v if null == 0 else null_mask(v, null)  # zeros are what counts are asked about
    out = []
    for c, name in enumerate(series.channels):
        x = v[..., c][~skip[..., c]]
        if x.size and bool((x >= 0).all()) and bool((x == np.round(x)).all()) and bool((x == 0).any()):
            out.append(str(name))
    return out


def _synth_mobility(args) -> int:
    from ..synth.mobility import write_mobility

    days = args.days or 730
    regions = args.sensors if args.sensors != 207 else 40  # 207 is the speeds default
    paths = {k: str(v) for k, v in write_mobility(args.out, regions, days, args.seed, args.start or "2012-03-05",
                                                   force=getattr(args, "force", False)).items()}
    if args.json:
        emit(paths, True)
    else:
        print(f"wrote a synthetic daily network of {regions} regions x {days} days whose mobility graph changes every "
              f"day (seed {args.seed}); train with --graph {paths['graph']} (dynamic) or {paths['mean_graph']} (its "
              f"mean):")
        emit(paths, False)
    return 0


def data_synth(args) -> int:
    from ..synth import write_synthetic, write_synthetic_counts

    interval = getattr(args, "interval", "hour")
    if getattr(args, "kind", "speeds") == "daily":
        args.kind, interval = "counts", "day"
        if getattr(args, "dynamic_graph", False):
            return _synth_mobility(args)
    if getattr(args, "dynamic_graph", False):
        raise ConfigError("--dynamic-graph is for --kind daily (regions with a daily mobility graph)")
    if interval != "hour" and getattr(args, "kind", "speeds") != "counts":
        raise ConfigError("--interval day is for --kind counts (speeds are 5-minute readings)")
    if getattr(args, "kind", "speeds") == "counts":
        days = args.days or 56
        paths = write_synthetic_counts(args.out, num_sensors=args.sensors, days=days, seed=args.seed,
                                       start=args.start or "2012-03-05", interval=interval,
                                       force=getattr(args, "force", False))
        what = (f"a synthetic counts network ({'hourly boardings' if interval == 'hour' else 'daily counts'}) of "
                f"{args.sensors} {'stops' if interval == 'hour' else 'regions'} x {days} days")
    elif getattr(args, "rain", False) or getattr(args, "incidents", False) or getattr(args, "reports", False):
        from ..synth.events import write_events
        days = args.days or 7
        paths = write_events(args.out, num_sensors=args.sensors, days=days, seed=args.seed,
                             start=args.start or "2012-03-01", rain=args.rain, incidents=args.incidents,
                             force=getattr(args, "force", False), reports=getattr(args, "reports", False))
        what = (f"a synthetic road network of {args.sensors} sensors x {days} days with "
                + " and ".join(w for w, on in (("rain", args.rain), ("incident flags", args.incidents),
                                               ("text reports", getattr(args, "reports", False))) if on))
    else:
        days = args.days or 7
        paths = write_synthetic(args.out, num_sensors=args.sensors, days=days, seed=args.seed,
                                start=args.start or "2012-03-01", force=getattr(args, "force", False))
        what = f"a synthetic road network of {args.sensors} sensors x {days} days"
    paths = {k: str(v) for k, v in paths.items()}
    if args.json:
        emit(paths, True)
    else:
        print(f"wrote {what} (seed {args.seed}):")
        emit(paths, False)
    return 0


def data_download(args) -> int:
    from ..datasets import fetch

    pins = {}
    for item in args.sha256:
        name, sep, hexd = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--sha256 {item!r}: expected FILE=HEX, e.g. --sha256 adj_mx.pkl=<64 hex digits>")
        pins[name.strip()] = hexd.strip()
    paths = fetch(args.name, root=args.root, sha256=pins)
    for role, p in (paths.items() if isinstance(paths, dict) else enumerate(paths)):
        print(f"{role}: {p}")
    return 0


def data_list(args) -> int:
    from ..datasets import get_manifest, list_datasets

    for name in list_datasets():
        m = get_manifest(name)
        print(f"{name:14s} {m.sensors:>6} sensors  {m.interval:>6}  {m.description}")
    return 0
