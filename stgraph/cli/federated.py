"""``stgraph federated {simulate,server,client,partition}``: federated training on Flower."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _federation_args(p, *, data: bool) -> None:
    p.add_argument("--clients", type=int, default=None, help="K clients (default 3)")
    p.add_argument("--rounds", type=int, default=None, help="server rounds (default 10)")
    p.add_argument("--strategy", choices=["fedavg", "fedprox"], default=None)
    p.add_argument("--mu", type=float, default=None, help="FedProx proximal weight (default 0.01)")
    p.add_argument("--dp-noise", type=float, default=None,
                   help="Flower DP with fixed clipping: Gaussian noise multiplier (0 = off)")
    p.add_argument("--dp-clip", type=float, default=None, help="Flower DP: clipping norm of an update (default 1)")
    p.add_argument("--dp-side", choices=["server", "client"], default=None,
                   help="Flower DP: the server clips the updates (default) or each client clips its own "
                        "(client-side fixed clipping; server and clients must both be given it)")
    p.add_argument("--lr-schedule", choices=["none", "cosine", "step"], default=None,
                   help="clients' learning rate over the rounds (default none: train.lr every round)")
    p.add_argument("--lr-step-rounds", type=int, default=None, help="--lr-schedule step: rounds between decays")
    p.add_argument("--lr-gamma", type=float, default=None, help="--lr-schedule step: decay factor (default 0.5)")
    p.add_argument("--fresh-optimizer", dest="keep_optimizer", action="store_false", default=None,
                   help="a new AdamW each round (default: each client keeps its AdamW moments between rounds)")
    p.add_argument("--round-timeout", type=float, default=None, help="seconds to wait for the clients in a round")
    p.add_argument("--out", required=True, help="federated run directory")
    p.add_argument("--record", action="store_true", help="keep every round's updates and global weights")
    if not data:
        return
    p.add_argument("--data", help="series file (HDF5, npz, CSV)")
    p.add_argument("--graph", help="graph file (adj pickle, distance CSV, JSON, GraphML)")
    p.add_argument("--dataset", help="named dataset instead of --data/--graph")
    p.add_argument("--partition", default=None,
                   help="by-region, metis, random, or a CSV sensor_id,client (default by-region)")
    p.add_argument("--partition-seed", type=int, default=None)
    p.add_argument("--locations", default=None,
                   help="CSV sensor_id,latitude,longitude for by-region (default: graph_sensor_locations.csv "
                        "beside --graph, or the graph's coordinates)")
    from .main import CRS_HELP
    p.add_argument("--crs", default=None, help="of --locations: " + CRS_HELP)
    p.add_argument("--border-hops", type=int, default=None,
                   help="foreign sensors within this many road hops join a client's graph, without data (default 0)")
    p.add_argument("--local-epochs", type=int, default=None, help="epochs per client per round (default 1)")
    p.add_argument("--personal", action="append", default=[], metavar="REGEX",
                   help="also keep parameters matching REGEX local (sensor-tied ones always are)")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="after the last round each client fine-tunes its model this many epochs on its own data, "
                        "keeping it only where its validation MAE improves (default 0: none)")
    p.add_argument("--finetune-lr", type=float, default=None,
                   help="fine-tuning learning rate as a factor on train.lr (default 0.25)")
    p.add_argument("--local-blend", action="store_true", default=None,
                   help="after the rounds (and fine-tuning) each client also trains a model on its own data alone "
                        "and blends the two, one weight per forecast step chosen on its validation split "
                        "(client_<i>/blend)")
    p.add_argument("--model", default=None, help="registry name (default stgt)")
    p.add_argument("--config", help="YAML run config for the clients")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a run config field, e.g. --set model.params.hidden=32 (repeatable)")
    from .main import add_null_value
    add_null_value(p)


def add_parser(sub) -> None:
    p = sub.add_parser("federated", help="federated training across agencies on Flower")
    s = p.add_subparsers(dest="action", required=True)
    sim = s.add_parser("simulate", help="K clients and the server on this machine (Flower simulation engine)")
    _federation_args(sim, data=True)
    sim.add_argument("--overwrite", action="store_true", help="replace a federated run already in --out")
    sim.add_argument("--json", action="store_true")
    srv = s.add_parser("server", help="the Flower server over gRPC (waits for --clients clients)")
    _federation_args(srv, data=False)
    srv.add_argument("--address", default=None, help="HOST:PORT to listen on (default 127.0.0.1:8080)")
    cl = s.add_parser("client", help="one client over gRPC: its part of the data, trained locally")
    _federation_args(cl, data=True)
    cl.add_argument("--partition-id", type=int, required=True, help="which client (0 .. K-1)")
    cl.add_argument("--address", default=None, help="server HOST:PORT (default 127.0.0.1:8080)")
    cl.add_argument("--max-wait", type=float, default=60.0, help="seconds to keep trying to reach the server")
    pa = s.add_parser("partition", help="write the partition file sensor_id,client")
    pa.add_argument("--data")
    pa.add_argument("--graph")
    pa.add_argument("--dataset")
    pa.add_argument("--clients", type=int, default=3)
    pa.add_argument("--partition", default="by-region", choices=["by-region", "metis", "random"])
    pa.add_argument("--partition-seed", type=int, default=0)
    pa.add_argument("--locations", default=None)
    from .main import CRS_HELP
    pa.add_argument("--crs", default="degrees", help="of --locations: " + CRS_HELP)
    pa.add_argument("--out", required=True, help="CSV file")


_FED_FLAGS = {"clients": "clients", "rounds": "rounds", "strategy": "strategy", "mu": "proximal_mu",
              "dp_noise": "dp_noise", "dp_clip": "dp_clip", "dp_side": "dp_side", "lr_schedule": "lr_schedule",
              "lr_step_rounds": "lr_step_rounds", "lr_gamma": "lr_gamma", "keep_optimizer": "keep_optimizer",
              "round_timeout": "round_timeout",
              "partition": "partition", "partition_seed": "partition_seed", "locations": "locations", "crs": "crs",
              "border_hops": "border_hops", "local_epochs": "local_epochs", "address": "address",
              "finetune_epochs": "finetune_epochs", "finetune_lr": "finetune_lr", "local_blend": "local_blend"}


def federated_config(args):
    """``FederatedConfig`` from the flags that were given."""
    from ..federated.config import FederatedConfig, apply_federated_override

    fed = FederatedConfig()
    for flag, key in _FED_FLAGS.items():
        v = getattr(args, flag, None)
        if v is not None:
            fed = apply_federated_override(fed, key, v)
    if getattr(args, "personal", None):
        fed = apply_federated_override(fed, "personal", list(args.personal))
    return fed.validate()


def run_config(args):
    """The clients' ``RunConfig``: defaults <- --config <- flags <- --set (as ``stgraph train``)."""
    from .bench import null_override
    from .commands import build_config

    ns = argparse.Namespace(config=args.config, data=args.data, graph=args.graph, dataset=args.dataset,
                            model=args.model, probabilistic=None, epochs=None, batch_size=None, lr=None,
                            seed=args.seed, device=None, no_progress=True,
                            set=null_override(args) + list(args.set))
    return build_config(ns)


def run(args) -> int:
    from ..federated import simulate as S

    if args.action == "partition":
        return _partition(args)
    fed = federated_config(args)
    out = Path(args.out)
    if args.action == "simulate":
        S.prepare_out(out, overwrite=args.overwrite)
        summary = S.simulate(fed, run_config(args), out, record=args.record)
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"finished {summary['rounds']} round(s) in {summary['seconds']} s; best global validation MAE "
                  f"{summary['best_global_val_mae']:.4f} at round {summary['best_round']}; "
                  f"{summary['uplink_bytes_per_round'] / 1e6:.2f} MB up a round")
            for c, t in enumerate(summary.get("finetune", [])):
                print(f"client {c}: fine-tuned on its own data, validation MAE {t['val_mae_federated']:.4f} -> "
                      f"{t['val_mae']:.4f}")
            for c, b in enumerate(summary.get("blend", [])):
                print(f"client {c}: blended with a local model, validation MAE {b['val_mae']:.4f} (federated "
                      f"{b['val_mae_federated']:.4f}, local {b['val_mae_local']:.4f}); run {out}/client_{c}/blend")
            print(f"clients: {out}/client_0 .. client_{fed.clients - 1}; global model: {out}/global "
                  f"(stgraph evaluate {out}/global)")
        return 0
    if args.action == "server":
        from ..federated.server import serve
        hist = serve(fed, out / "server", record=args.record)
        print(f"server finished {len(hist)} round(s); log {out / 'server' / 'rounds.csv'}")
        return 0 if len(hist) == fed.rounds else 1
    from ..federated.client import start_client
    if not 0 <= args.partition_id < fed.clients:
        from ..errors import ConfigError
        raise ConfigError(f"--partition-id {args.partition_id}: expected 0 .. {fed.clients - 1} (--clients {fed.clients})")
    S.setup(fed, run_config(args), out, clients=[args.partition_id])
    from ..federated.server import client_mods
    cdir = out / f"client_{args.partition_id}"
    start_client(cdir, fed.address, record=args.record, max_wait=args.max_wait, mods=client_mods(fed))
    if fed.finetune_epochs:
        from ..federated.client import finetune_client
        finetune_client(cdir, log=print)
    if fed.local_blend:
        from ..federated.local import blend_client, train_local
        train_local(cdir, log=print)
        blend_client(cdir, log=print)
    print(f"client {args.partition_id} done; run directory {out / f'client_{args.partition_id}'}")
    return 0


def _partition(args) -> int:
    from ..config import RunConfig, with_fields
    from ..federated.config import FederatedConfig
    from ..federated.partition import cut_edges, write_partition
    from ..federated.simulate import load_partition
    from ..training.run import load_series_and_graph

    cfg = with_fields(RunConfig(), {"data.path": args.data, "data.graph": args.graph, "data.dataset": args.dataset})
    series, graph, _ = load_series_and_graph(cfg)
    if graph is not None and args.graph:
        graph.graph.setdefault("source", args.graph)
    fed = FederatedConfig(clients=args.clients, partition=args.partition, partition_seed=args.partition_seed,
                          locations=args.locations, crs=args.crs).validate()
    labels = load_partition(fed, series, graph)
    write_partition(args.out, series.sensor_ids, labels)
    sizes = [int((labels == c).sum()) for c in range(args.clients)]
    cuts = cut_edges(graph, series.sensor_ids, labels) if graph is not None else "n/a"
    print(f"wrote {args.out}: sensors per client {sizes}, cut road links {cuts}")
    return 0
