"""``stgraph federated {simulate,server,client,partition}``: federated training on Flower.

The federation's flags are fields of :class:`~stgraph.federated.config.FederatedConfig` (:data:`FED_FLAGS`):
their types and the defaults in their help come from that dataclass; the clients' run config is
:func:`stgraph.api.run_config` of the training flags, as ``stgraph train``.
"""
from __future__ import annotations

import json

from .common import CRS_HELP, NULL_FLAG, add_null_value
from .fields import Flag, add_flags, given

#: the flags of every federated command (the server's and the clients')
ROUND_FLAGS = (
    Flag("clients", "K clients (default {default})"),
    Flag("rounds", "server rounds (default {default})"),
    Flag("strategy", "fedavg or fedprox (default {default})", options={"choices": ["fedavg", "fedprox"]}),
    Flag("aggregate", "how the server combines the clients' updates: fedavg (mean weighted by training windows), "
                      "median or trimmed-mean (robust to a hostile client; unweighted) (default {default})",
         options={"choices": ["fedavg", "median", "trimmed-mean"]}),
    Flag("proximal_mu", "FedProx proximal weight (default {default})", name="mu"),
    Flag("dp_noise", "Flower DP with fixed clipping: Gaussian noise multiplier (default {default}: off)"),
    Flag("dp_clip", "Flower DP: clipping norm of an update (default {default})"),
    Flag("dp_side", "Flower DP: the server clips the updates (default) or each client clips its own (client-side "
                    "fixed clipping; server and clients must both be given it)",
         options={"choices": ["server", "client"]}),
    Flag("lr_schedule", "clients' learning rate over the rounds (default {default}: train.lr every round)",
         options={"choices": ["none", "cosine", "step"]}),
    Flag("lr_step_rounds", "--lr-schedule step: rounds between decays (default {default})"),
    Flag("lr_gamma", "--lr-schedule step: decay factor (default {default})"),
    Flag("keep_optimizer", "a new AdamW each round (default: each client keeps its AdamW moments between rounds)",
         flag="--fresh-optimizer", negate=True),
    Flag("round_timeout", "seconds to wait for the clients in a round (default {default})"),
)

#: the flags of the commands that read data (simulate, client)
DATA_FLAGS = (
    Flag("partition", "by-region, metis, random, or a CSV sensor_id,client (default {default})"),
    Flag("partition_seed", "seed of the random and by-region partitions (default {default})"),
    Flag("locations", "CSV sensor_id,latitude,longitude for by-region (default: graph_sensor_locations.csv beside "
                      "--graph, or the graph's coordinates)"),
    Flag("crs", "of --locations: " + CRS_HELP),
    Flag("border_hops", "foreign sensors within this many road hops join a client's graph, without data (default "
                        "{default})"),
    Flag("local_epochs", "epochs per client per round (default {default})"),
    Flag("personal", "also keep parameters matching REGEX local (sensor-tied ones always are)",
         options={"metavar": "REGEX"}),
    Flag("finetune_epochs", "after the last round each client fine-tunes its model this many epochs on its own "
                            "data, keeping it only where its validation MAE improves (default {default}: none)"),
    Flag("finetune_lr", "fine-tuning learning rate as a factor on train.lr (default {default})"),
    Flag("local_blend", "after the rounds (and fine-tuning) each client also trains a model on its own data alone "
                        "and blends the two, one weight per forecast step chosen on its validation split "
                        "(client_<i>/blend)"),
)

ADDRESS_FLAG = Flag("address", "HOST:PORT of the server (default {default}); beyond a loopback address only with "
                               "TLS (--certificates on the server, --root-certificates on each client)")
CERTIFICATES_FLAG = Flag("certificates", "serve over TLS: the CA certificate, the server's certificate (its name or "
                                         "IP as clients give in --address) and its private key, PEM files",
                         options={"nargs": 3, "action": "store", "metavar": ("CA_CERT", "SERVER_CERT", "SERVER_KEY")})
ROOT_CERTIFICATES_FLAG = Flag("root_certificates", "connect over TLS, accepting only a server certificate signed by "
                                                   "this CA certificate (PEM)", options={"metavar": "CA_CERT"})

FED_FLAGS = ROUND_FLAGS + DATA_FLAGS + (ADDRESS_FLAG, CERTIFICATES_FLAG, ROOT_CERTIFICATES_FLAG)


def _federation_args(p, *, data: bool) -> None:
    from ..federated.config import FederatedConfig

    add_flags(p, FederatedConfig, ROUND_FLAGS)
    p.add_argument("--out", required=True, help="federated run directory")
    p.add_argument("--record", action="store_true", help="keep every round's updates and global weights")
    if not data:
        return
    p.add_argument("--data", help="series file (HDF5, npz, CSV)")
    p.add_argument("--graph", help="graph file (adj pickle, distance CSV, JSON, GraphML)")
    p.add_argument("--dataset", help="named dataset instead of --data/--graph")
    _graph_table_args(p)
    add_flags(p, FederatedConfig, DATA_FLAGS)
    p.add_argument("--model", default=None, help="registry name (default stgt)")
    p.add_argument("--config", help="YAML run config for the clients")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a run config field, e.g. --set model.params.hidden=32 (repeatable)")
    add_null_value(p)


def _graph_table_args(p) -> None:
    """How an edge-table --graph is read, as ``stgraph train``'s flags (``--graph-aggregate``: ``--aggregate`` is
    the server's)."""
    from ..config import RunConfig
    from .runs import GRAPH_TABLE_FLAGS

    add_flags(p, RunConfig, GRAPH_TABLE_FLAGS[:2])
    add_flags(p, RunConfig, [Flag(GRAPH_TABLE_FLAGS[2].field, GRAPH_TABLE_FLAGS[2].help, name="graph_aggregate",
                                  flag="--graph-aggregate", options=GRAPH_TABLE_FLAGS[2].options)])


def _graph_table_fields(args) -> dict:
    """``weight_column`` / ``weights`` / ``graph_aggregate`` of :func:`stgraph.api.run_config` from the flags."""
    return dict(weight_column=getattr(args, "weight_column", None), weights=getattr(args, "weights", None),
                graph_aggregate=getattr(args, "graph_aggregate", None))


def add_parser(sub) -> None:
    """``stgraph federated {simulate,server,client,partition}``."""
    from ..federated.config import FederatedConfig

    p = sub.add_parser("federated", help="federated training across agencies on Flower")
    s = p.add_subparsers(dest="action", required=True)
    sim = s.add_parser("simulate", help="K clients and the server on this machine (Flower simulation engine)")
    _federation_args(sim, data=True)
    sim.add_argument("--overwrite", action="store_true", help="replace a federated run already in --out")
    sim.add_argument("--json", action="store_true")
    srv = s.add_parser("server", help="the Flower server over gRPC (waits for --clients clients)")
    _federation_args(srv, data=False)
    add_flags(srv, FederatedConfig, [ADDRESS_FLAG, CERTIFICATES_FLAG])
    cl = s.add_parser("client", help="one client over gRPC: its part of the data, trained locally")
    _federation_args(cl, data=True)
    cl.add_argument("--partition-id", type=int, required=True, help="which client (0 .. K-1)")
    add_flags(cl, FederatedConfig, [ADDRESS_FLAG, ROOT_CERTIFICATES_FLAG])
    cl.add_argument("--max-wait", type=float, default=60.0, help="seconds to keep trying to reach the server")
    dflt = FederatedConfig()
    pa = s.add_parser("partition", help="write the partition file sensor_id,client")
    pa.add_argument("--data")
    pa.add_argument("--graph")
    pa.add_argument("--dataset")
    _graph_table_args(pa)
    pa.add_argument("--clients", type=int, default=dflt.clients)
    pa.add_argument("--partition", default=dflt.partition, choices=["by-region", "metis", "random"])
    pa.add_argument("--partition-seed", type=int, default=dflt.partition_seed)
    pa.add_argument("--locations", default=dflt.locations)
    pa.add_argument("--crs", default=dflt.crs, help="of --locations: " + CRS_HELP)
    pa.add_argument("--out", required=True, help="CSV file")
    pa.add_argument("--force", action="store_true", help="replace a file at --out that stgraph did not write")


def federated_config(args):
    """``FederatedConfig`` from the flags that were given."""
    from ..federated.config import FederatedConfig, apply_federated_override

    fed = FederatedConfig()
    values = given(args, FED_FLAGS)
    for f in FED_FLAGS:
        if f.dest in values:
            fed = apply_federated_override(fed, f.field, values[f.dest])
    return fed.validate()


def _run_fields(args) -> dict:
    """The clients' run config arguments of :func:`stgraph.api.run_config` the flags give (no progress bars)."""
    return dict(data=args.data, graph=args.graph, dataset=args.dataset, seed=args.seed, progress=False,
                **_graph_table_fields(args), **given(args, [NULL_FLAG]))


def run_config(args):
    """The clients' ``RunConfig``: defaults <- --config <- flags <- --set (:func:`stgraph.api.run_config`, as
    ``stgraph train``)."""
    from ..api import run_config as compose

    return compose(model=args.model, config=args.config, overrides=args.set, **_run_fields(args))


def run(args) -> int:
    if args.action == "partition":
        return _partition(args)
    return {"simulate": _simulate, "server": _server, "client": _client}[args.action](args, federated_config(args))


def _simulate(args, fed) -> int:
    from ..federated import simulate
    from ..federated.layout import FederationFiles

    summary = simulate(args.out, model=args.model, config=args.config, overrides=args.set, federated=fed,
                       overwrite=args.overwrite, record=args.record, **_run_fields(args)).summary
    if args.json:
        print(json.dumps(summary))
        return 0
    files = FederationFiles(args.out)
    print(f"finished {summary['rounds']} round(s) in {summary['seconds']} s; best global validation MAE "
          f"{summary['best_global_val_mae']:.4f} at round {summary['best_round']}; "
          f"{summary['uplink_bytes_per_round'] / 1e6:.2f} MB up a round")
    for c, t in enumerate(summary.get("finetune", [])):
        print(f"client {c}: fine-tuned on its own data, validation MAE {t['val_mae_federated']:.4f} -> "
              f"{t['val_mae']:.4f}")
    for c, b in enumerate(summary.get("blend", [])):
        print(f"client {c}: blended with a local model, validation MAE {b['val_mae']:.4f} (federated "
              f"{b['val_mae_federated']:.4f}, local {b['val_mae_local']:.4f}); run {files.client(c).blend}")
    print(f"clients: {files.client(0).root} .. {files.client(fed.clients - 1).root.name}; global model: "
          f"{files.global_run} (stgraph evaluate {files.global_run})")
    return 0


def _server(args, fed) -> int:
    from ..federated.flower import serve
    from ..federated.layout import FederationFiles

    server = FederationFiles(args.out).server
    hist = serve(fed, server.root, record=args.record)
    print(f"server finished {len(hist)} round(s); log {server.round_log}")
    return 0 if len(hist) == fed.rounds else 1


def _client(args, fed) -> int:
    from ..errors import ConfigError
    from ..federated.remote import take_part

    if not 0 <= args.partition_id < fed.clients:
        raise ConfigError(f"--partition-id {args.partition_id}: expected 0 .. {fed.clients - 1} "
                          f"(--clients {fed.clients})")
    cdir = take_part(fed, run_config(args), args.out, args.partition_id, record=args.record, max_wait=args.max_wait)
    print(f"client {args.partition_id} done; run directory {cdir}")
    return 0


def _partition(args) -> int:
    from ..config import RunConfig, with_fields
    from ..federated.config import FederatedConfig
    from ..federated.partition import cut_edges, load_partition, write_partition
    from ..training.prepare import load_series_and_graph

    table = _graph_table_fields(args)
    cfg = with_fields(RunConfig(), {"data.path": args.data, "data.graph": args.graph, "data.dataset": args.dataset,
                                    "data.graph_weight_column": table["weight_column"],
                                    "data.graph_weights": table["weights"], "data.graph_aggregate": table["graph_aggregate"]})
    series, graph, _ = load_series_and_graph(cfg)
    if graph is not None and args.graph:
        graph.graph.setdefault("source", args.graph)
    fed = FederatedConfig(clients=args.clients, partition=args.partition, partition_seed=args.partition_seed,
                          locations=args.locations, crs=args.crs).validate()
    labels = load_partition(fed, series, graph)
    write_partition(args.out, series.sensor_ids, labels, force=args.force)
    sizes = [int((labels == c).sum()) for c in range(args.clients)]
    cuts = cut_edges(graph, series.sensor_ids, labels) if graph is not None else "n/a"
    print(f"wrote {args.out}: sensors per client {sizes}, cut road links {cuts}")
    return 0
