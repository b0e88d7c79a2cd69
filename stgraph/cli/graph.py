"""``stgraph graph {build,info}``: build and inspect sensor road graphs."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, MissingFileError
from .common import CRS_HELP, emit


def add_parser(sub) -> None:
    """``stgraph graph {build,info}``."""
    p = sub.add_parser("graph", help="build and inspect sensor road graphs")
    s = p.add_subparsers(dest="action", required=True)
    b = s.add_parser("build", help="build a graph and save it (.json node-link, .graphml, .pkl adj)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--adj", help="DCRNN adj_mx.pkl")
    src.add_argument("--distances", help="CSV from,to,cost (thresholded Gaussian kernel)")
    src.add_argument("--locations", help="CSV sensor_id,latitude,longitude (k-nearest / radius)")
    src.add_argument("--edges", help="edge list CSV source,target[,weight]")
    src.add_argument("--graph", help="an existing graph file (node-link JSON, GraphML, pickle) to restrict to "
                                     "--sensors, declare --weights / --crs for, or convert")
    b.add_argument("--sensors", help="keep exactly these sensors, in this order (every builder): a series file "
                                     "(HDF5, .npz, CSV with a row per time step), or a text file of ids, comma "
                                     "separated on one line or one per line")
    b.add_argument("--weights", choices=["similarity", "distance", "flow"], default=None,
                   help="what the edge weights of --edges/--graph are: similarity (larger = closer; scaled into "
                        "[0, 1] if above 1), distance (turned into exp(-(d/sigma)^2)) or flow (trips, counts: "
                        "log1p(flow) / log1p(largest flow)). Undeclared weights above 1 are read as distances, with "
                        "a warning")
    b.add_argument("--weight-column", default=None, metavar="COLUMN",
                   help="with --edges: the column holding the weight (needs --weights); an edge table with columns "
                        "other than source, target, weight, distance is refused until you say which is the weight")
    b.add_argument("--aggregate", choices=["sum", "mean", "max", "last"], default=None,
                   help="with --edges: combine rows that repeat a pair (e.g. one row per day) by this; also lets "
                        "the other columns (a date) go unread. Without it a repeated pair is an error")
    b.add_argument("--crs", default="degrees", help="with --locations (or --graph): " + CRS_HELP)
    b.add_argument("--sigma", type=float, default=None)
    b.add_argument("--threshold", type=float, default=0.1)
    b.add_argument("--kernel", default="gaussian", choices=["gaussian", "inverse", "binary"])
    b.add_argument("--k", type=int, default=None, help="k nearest neighbours (with --locations)")
    b.add_argument("--radius-km", type=float, default=None, help="radius in km (with --locations)")
    b.add_argument("--out", required=True)
    b.add_argument("--force", action="store_true", help="replace a file at --out that stgraph did not write")
    i = s.add_parser("info", help="nodes, edges, components, degree stats")
    i.add_argument("path")
    i.add_argument("--sensors", help="sensor order, needed for a distance CSV")
    i.add_argument("--weight-column", default=None, metavar="COLUMN", help="an edge table's weight column (as build)")
    i.add_argument("--weights", choices=["similarity", "distance", "flow"], default=None,
                   help="what the weights mean (as build)")
    i.add_argument("--aggregate", choices=["sum", "mean", "max", "last"], default=None,
                   help="combine an edge table's rows repeating a pair (as build)")
    i.add_argument("--json", action="store_true")


def run(args) -> int:
    return {"build": graph_build, "info": graph_info}[args.action](args)


def _sensor_order(spec: str | None) -> list[str] | None:
    """Sensor ids from a series file (HDF5, .npz, or a CSV with a row per time step) or a text file
    of ids (comma separated on one line, or one id per line)."""
    if spec is None:
        return None
    from ..io import read_series
    from ..io.read import sniff_format

    p = Path(spec)
    if not p.is_file():
        raise MissingFileError(f"--sensors '{spec}' not found; pass a series file or a text file of sensor ids")
    if sniff_format(p) != "csv":
        return read_series(p).sensor_ids
    lines = [ln for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if len(lines) > 1 and any("," in ln for ln in lines):
        return read_series(p).sensor_ids  # a header and rows of readings: a series
    ids = [t.strip() for ln in lines for t in ln.split(",") if t.strip()]
    if not ids:
        raise ConfigError(f"--sensors '{spec}' holds no sensor ids")
    return ids


def graph_build(args) -> int:
    from .. import graph as G
    from ..files import owned_outputs

    ids = _sensor_order(args.sensors)
    if args.weights and not (args.edges or args.graph):
        raise ConfigError(f"--weights {args.weights} declares the weights of --edges or --graph; the other builders "
                          f"make similarities themselves (a kernel of distances)")
    if (args.weight_column or args.aggregate) and not args.edges:
        raise ConfigError("--weight-column / --aggregate say how an edge table (--edges) is read; the other "
                          "builders read no such table")
    crs = G.parse_crs(args.crs)
    if crs != "degrees" and not (args.locations or args.graph):
        raise ConfigError(f"--crs {args.crs} applies to coordinates, read with --locations (or --graph)")
    if args.adj:
        g = G.from_adj_pickle(args.adj)
    elif args.distances:
        if ids is None:
            raise ConfigError("--distances needs --sensors (the sensor order: a series file or a list of ids)")
        g = G.from_distances(args.distances, ids, sigma=args.sigma, threshold=args.threshold, kernel=args.kernel)
    elif args.locations:
        lid, lat, lon = G.read_locations(args.locations, crs)
        if args.k is None and args.radius_km is None:
            raise ConfigError("--locations needs --k N (nearest neighbours) or --radius-km R")
        if ids is not None:  # only the series' sensors, in its order
            pos = {s: i for i, s in enumerate(lid)}
            lack = [s for s in ids if s not in pos]
            if lack:
                raise ConfigError(f"--locations '{args.locations}' has no row for {len(lack)} sensor(s) of --sensors "
                                  f"'{args.sensors}': {lack[:20]}; expected a location for every sensor")
            rows = [pos[s] for s in ids]
            lid, lat, lon = ids, lat[rows], lon[rows]
        g = G.from_coordinates(lid, lat, lon, k=args.k, radius_km=args.radius_km, sigma=args.sigma,
                               crs="projected" if crs == "projected" else "degrees")
    elif args.edges:
        g = G.from_edge_list(args.edges, sensor_ids=ids, weight_column=args.weight_column, weights=args.weights,
                             aggregate=args.aggregate)
        for note in g.graph.get("columns", "").split("; "):
            print(f"column {note}")
    else:
        g = G.read_graph(args.graph, crs=None if crs == "degrees" else crs)
    if args.weights:
        g.graph["weight_meaning"] = args.weights
    dropped = []
    if ids is not None:
        g, dropped = G.for_sensors(g, ids)
    with owned_outputs([args.out], force=args.force):
        G.write_graph(g, args.out)
    info = G.graph_info(g)
    print(f"wrote {args.out}: {info['nodes']} nodes, {info['edges']} edges, {info['components']} component(s); "
          f"weights {info['weights']}: {info['weight_meaning']}"
          + (f"; dropped {len(dropped)} sensor(s) not in --sensors, e.g. {dropped[:5]}" if dropped else ""))
    return 0


def graph_info(args) -> int:
    from .. import graph as G

    from ..graph.dynamic import is_dynamic_table
    if is_dynamic_table(args.path):  # a graph that changes over time: periods, edges per period, churn
        from ..graph.info import dynamic_graph_info
        table = {k: getattr(args, k, None) for k in ("weights", "weight_column", "aggregate")}
        emit(dynamic_graph_info(args.path, _sensor_order(args.sensors), **table), args.json)
        return 0
    g = G.read_graph(args.path, sensor_ids=_sensor_order(args.sensors), weight_column=args.weight_column,
                     weights=args.weights, aggregate=args.aggregate)
    emit(G.graph_info(g), args.json)
    return 0
