"""Set up a federation on one machine, run it with Flower's simulation engine, export the runs.

Layout of a federated run directory ``OUT``::

    federated.yaml        FederatedConfig + the clients' RunConfig
    partition.csv         sensor_id,client
    server/rounds.csv     per round: each client's and the global validation MAE, bytes up / down
    server/global_shared.npz   the last global shared weights
    client_<i>/           client i: an ordinary run directory (its own data in data/,
                          checkpoints/best.pt = global shared + its personalised weights)
    global/               the final model over every sensor (an ordinary run): shared
                          weights from the server, each sensor's personalised weights
                          from the client that owns it
    summary.json          rounds, best round, bytes a round, partition sizes, engine
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..errors import ConfigError
from ..files import atomic_write
from ..training.layout import BEST, LAST, RunFiles
from .config import FederatedConfig, save_federated
from .partition import cut_edges, partition_sensors, read_partition, write_partition


def load_partition(fed: FederatedConfig, series, graph) -> np.ndarray:
    """``[N]`` client of each sensor of ``series`` as ``fed.partition`` says.

    ``by-region`` takes coordinates from ``fed.locations`` or, when unset, from the
    graph's nodes or a ``graph_sensor_locations.csv`` beside ``run.data.graph``.
    """
    ids = series.sensor_ids
    if str(fed.partition).endswith(".csv"):
        return read_partition(fed.partition, ids, fed.clients)
    coords, crs = None, "degrees"
    if fed.partition == "by-region":
        coords, crs = _coordinates(fed, ids, graph)
    return partition_sensors(fed.partition, ids, fed.clients, graph=graph, coords=coords, seed=fed.partition_seed,
                             crs=crs)


def _coordinates(fed: FederatedConfig, ids, graph) -> tuple[np.ndarray | None, str]:
    """``([N, 2] coordinates or None, crs)``: from ``fed.locations`` read in ``fed.crs``, else from the
    graph's nodes (projected when the graph says so), else from ``graph_sensor_locations.csv`` beside it."""
    from ..graph import parse_crs, read_locations

    path = fed.locations
    if path is None and graph is not None and all("lat" in graph.nodes[s] for s in ids if s in graph):
        crs = "projected" if graph.graph.get("crs") == "projected" else "degrees"
        return np.array([[graph.nodes[s]["lat"], graph.nodes[s]["lon"]] for s in ids]), crs
    if path is None and graph is not None and graph.graph.get("source"):
        cand = Path(str(graph.graph["source"])).with_name("graph_sensor_locations.csv")
        path = str(cand) if cand.is_file() else None
    if path is None:
        return None, "degrees"
    lid, lat, lon = read_locations(path, fed.crs)
    crs = "projected" if parse_crs(fed.crs) == "projected" else "degrees"  # EPSG codes arrive as degrees
    pos = {s: i for i, s in enumerate(lid)}
    missing = [s for s in ids if s not in pos]
    if missing:
        raise ConfigError(f"locations '{path}': no coordinates for {len(missing)} sensor(s) of the series, e.g. "
                          f"{missing[:10]}; expected a row per sensor")
    return np.array([[lat[pos[s]], lon[pos[s]]] for s in ids]), crs


def prepare_out(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse to mix two federations in ``out``; with ``overwrite`` clear the old one's folders."""
    import shutil

    from ..training.run import RunDirError

    out = Path(out)
    if (out / "federated.yaml").exists():
        if not overwrite:
            raise RunDirError(f"'{out}' already holds a federated run (federated.yaml); pass --overwrite to "
                              f"replace it, or choose another --out")
        for d in [*out.glob("client_*"), out / "server", out / "global"]:
            if d.is_dir():
                shutil.rmtree(d)
        for f in ("federated.yaml", "partition.csv", "summary.json"):
            (out / f).unlink(missing_ok=True)
    return out


def setup(fed: FederatedConfig, run_cfg: RunConfig, out: str | Path, clients: list[int] | None = None) -> dict:
    """Partition the data and write the client folders (``clients``: only these, default all).

    Returns ``{'labels': [N], 'sensor_ids': [...], 'client_dirs': [...], 'cut_edges': int}``.
    """
    from ..training.run import load_series_and_graph
    from .client import client_sensors, write_client

    fed = fed.validate()
    run_cfg.validate()
    if fed.local_blend and run_cfg.model.probabilistic:
        raise ConfigError("federated.local_blend (--local-blend) blends point forecasts, and model.probabilistic "
                          "is on; drop one of the two")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series, nx_graph, _ = load_series_and_graph(run_cfg)
    if nx_graph is not None and fed.partition == "by-region" and run_cfg.data.graph:
        nx_graph.graph.setdefault("source", run_cfg.data.graph)
    labels = load_partition(fed, series, nx_graph)
    write_partition(out / "partition.csv", series.sensor_ids, labels)
    save_federated(out / "federated.yaml", fed, run_cfg)
    dirs = []
    for c in range(fed.clients):
        d = out / f"client_{c}"
        dirs.append(d)
        if clients is not None and c not in clients:
            continue
        own, border = client_sensors(labels, series.sensor_ids, c, nx_graph, fed.border_hops)
        write_client(d, c, run_cfg, series, nx_graph, own, border, fed.local_epochs, fed.personal,
                     finetune_epochs=fed.finetune_epochs, finetune_lr=fed.finetune_lr,
                     local_blend_epochs=fed.rounds * fed.local_epochs if fed.local_blend else 0,
                     local_scheduler="cosine" if fed.lr_schedule == "cosine" else "none")
    cuts = cut_edges(nx_graph, series.sensor_ids, labels) if nx_graph is not None else None
    return {"labels": labels, "sensor_ids": list(series.sensor_ids), "client_dirs": dirs, "cut_edges": cuts}


def simulate(fed: FederatedConfig, run_cfg: RunConfig, out: str | Path, *, record: bool = False,
             verbose: bool = True, cpus: int | None = None) -> dict:
    """Run ``fed.clients`` clients and the server on this machine with Flower's simulation engine.

    Flower's ``run_simulation`` (Ray backend) runs the same :class:`~.client.StgraphClient`
    and strategy as ``stgraph federated server`` / ``client``; each client gets one CPU
    and one torch thread; ``cpus`` clients train at once (default: one per client, at most the
    machine's CPUs). Afterwards the global run is exported to ``OUT/global`` and, with
    ``fed.finetune_epochs``, each client fine-tunes its own model on its own data
    (:func:`~.client.finetune_client`; ``OUT/global`` stays the federation's) and, with
    ``fed.local_blend``, trains a model on its own data alone and blends the two
    (:mod:`~.local`, ``OUT/client_<i>/blend``).
    Returns the summary (also written to ``OUT/summary.json``).
    """
    from flwr.clientapp import ClientApp
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.simulation import run_simulation

    from .client import StgraphClient
    from .server import client_mods, make_strategy

    out = Path(out)
    fed = fed.validate()
    info = setup(fed, run_cfg, out)
    server_dir = out / "server"
    strategy, log = make_strategy(fed, server_dir, record=record, verbose=verbose)
    dirs = [str(d.resolve()) for d in info["client_dirs"]]

    def client_fn(context):
        return StgraphClient(dirs[int(context.node_config["partition-id"])], record=record).to_client()

    def server_fn(context):
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=fed.rounds,
                                                                          round_timeout=fed.round_timeout))

    cpus = max(1, min(fed.clients, cpus or _cpu_count()))
    # Ray starts its workers at niceness 15; the clients are the whole job here (the driver only waits), so
    # at that priority they starve behind any other process on a shared machine. Same priority as the caller.
    os.environ.setdefault("RAY_worker_niceness", "0")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_simulation(server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn, mods=client_mods(fed)),
                       num_supernodes=fed.clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": cpus, "include_dashboard": False,
                                                     "log_to_driver": verbose}})
    seconds = time.perf_counter() - t0
    if len(log.history) < fed.rounds:
        raise RuntimeError(f"the simulation finished {len(log.history)} of {fed.rounds} rounds; see the Flower log "
                           f"above (a client failed)")
    export_global(out, fed)
    tuned = finetune_clients(out, fed, verbose=verbose)
    blended = blend_clients(out, fed, verbose=verbose)
    summary = summarise(out, fed, info, seconds, engine=f"flwr {_flwr_version()} run_simulation (ray)",
                        finetune=tuned, blend=blended)
    return summary


def finetune_clients(out: str | Path, fed: FederatedConfig, verbose: bool = True) -> list[dict]:
    """Each client of the federation in ``out`` fine-tunes its model (``fed.finetune_epochs`` epochs, one
    after another in this process); ``[]`` when ``fed.finetune_epochs`` is 0."""
    from .client import finetune_client

    if not fed.finetune_epochs:
        return []
    return [finetune_client(Path(out) / f"client_{c}", fed.finetune_epochs, fed.finetune_lr,
                            log=print if verbose else None) for c in range(fed.clients)]


def blend_clients(out: str | Path, fed: FederatedConfig, verbose: bool = True) -> list[dict]:
    """With ``fed.local_blend``, each client of the federation in ``out`` trains its local model and blends
    it with its federated one (:func:`~.local.train_local`, :func:`~.local.blend_client`; one after
    another in this process); ``[]`` otherwise."""
    from .local import blend_client, train_local

    if not fed.local_blend:
        return []
    log = print if verbose else None
    result = []
    for c in range(fed.clients):
        d = Path(out) / f"client_{c}"
        t0 = time.perf_counter()
        train_local(d, log=log)
        result.append({**blend_client(d, log=log), "seconds": round(time.perf_counter() - t0, 1)})
    return result


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _flwr_version() -> str:
    import flwr
    return flwr.__version__


def rounds_to_converge(history: list[dict], tolerance: float = 0.02) -> int:
    """First round whose global validation MAE is within ``tolerance`` (relative) of the best one."""
    best = min(r["val_mae"] for r in history)
    return next(int(r["round"]) for r in history if r["val_mae"] <= best * (1 + tolerance))


def read_rounds(server_dir: str | Path) -> list[dict]:
    """The ``global`` rows of ``server/rounds.csv`` (numbers parsed)."""
    import csv
    with (Path(server_dir) / "rounds.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["client"] == "global"]
    return [{"round": int(r["round"]), "val_mae": float(r["val_mae"]), "uplink_bytes": int(r["uplink_bytes"]),
             "downlink_bytes": int(r["downlink_bytes"]), "seconds": float(r["seconds"])} for r in rows]


def summarise(out: Path, fed: FederatedConfig, info: dict, seconds: float, engine: str,
              finetune: list[dict] | None = None, blend: list[dict] | None = None) -> dict:
    hist = read_rounds(out / "server")
    best = min(hist, key=lambda r: r["val_mae"])
    sizes = np.bincount(info["labels"], minlength=fed.clients).tolist()
    summary = {"engine": engine, "clients": fed.clients, "partition": fed.partition, "strategy": fed.strategy,
               "rounds": len(hist), "local_epochs": fed.local_epochs, "best_round": best["round"],
               "best_global_val_mae": best["val_mae"], "rounds_to_converge": rounds_to_converge(hist),
               "uplink_bytes_per_round": hist[-1]["uplink_bytes"], "downlink_bytes_per_round": hist[-1]["downlink_bytes"],
               "sensors_per_client": sizes, "cut_edges": info["cut_edges"], "seconds": round(seconds, 1),
               "dp_noise": fed.dp_noise}
    if finetune:
        summary["finetune"] = finetune
    if blend:
        summary["blend"] = blend
    atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def export_global(out: str | Path, fed: FederatedConfig, checkpoint: str = LAST) -> Path:
    """Write ``OUT/global``: one ordinary run over every sensor.

    Shared weights are the server's last global ones (every client holds them after
    the last round); each sensor-dependent tensor (``[..., N, ...]``) takes, at every
    sensor's position, the personalised values of the client that owns it (entries
    between two clients' sensors keep their initial values). The global run scales
    inputs with the scaler fitted on all sensors, the clients each with their own,
    so its metrics are close to, not the same as, the clients'.
    """
    from ..training.checkpoint import load_checkpoint, save_checkpoint
    from ..training.run import graph_fingerprint, model_sizes, prepare
    from .client import CLIENT_INFO, initial_model, node_dims
    from .config import load_federated

    out = Path(out)
    _, cfg = load_federated(out / "federated.yaml")
    prep = prepare(cfg)
    model = initial_model(cfg, prep.data)
    state = model.state_dict()
    dims = node_dims(cfg.model.name, model_sizes(prep.data, cfg.model.probabilistic), cfg.model.params)
    gpos = {s: i for i, s in enumerate(prep.series.sensor_ids)}
    for c in range(fed.clients):
        cdir = out / f"client_{c}"
        ck = load_checkpoint(RunFiles(cdir).checkpoint(checkpoint))["model"]
        cinfo = json.loads((cdir / CLIENT_INFO).read_text())
        own = cinfo["own_sensors"]
        g_idx = torch.tensor([gpos[s] for s in own])
        c_idx = torch.arange(len(own))  # own sensors come first in a client's order
        for k, v in ck.items():
            if k not in dims:
                if c == 0:
                    state[k] = v
                continue
            state[k] = _scatter(state[k], v, dims[k], g_idx, c_idx)
    model.load_state_dict(state)
    gdir = out / "global"
    RunFiles(gdir).last.parent.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(RunFiles(gdir).config)
    fingerprint = {"data": prep.data.fingerprint(), "graph": graph_fingerprint(prep.graph)}
    ckpt = {"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "trainer": {"epoch": fed.rounds},
            "scaler": prep.data.scaler.state_dict(), "config": cfg.to_dict(), "fingerprint": fingerprint}
    for name in (BEST, LAST):
        save_checkpoint(ckpt, RunFiles(gdir).checkpoint(name))
    from ..models.registry import count_parameters
    atomic_write(RunFiles(gdir).info, json.dumps({
        "model": cfg.model.name, "parameters": count_parameters(model), "sensor_ids": list(prep.series.sensor_ids),
        "channels": list(prep.series.channels), "target_channels": list(prep.data.target_channels),
        "fingerprint": fingerprint, "source": str(prep.series.source), "federated": {"assembled_from": fed.clients}},
        indent=1))
    return gdir


def _scatter(dst: torch.Tensor, src: torch.Tensor, dims: list[int], g_idx: torch.Tensor,
             c_idx: torch.Tensor) -> torch.Tensor:
    """``dst`` with the block of ``src`` at client positions ``c_idx`` copied to global positions
    ``g_idx`` along every sensor dimension in ``dims`` (other dimensions whole)."""
    dst = dst.clone()
    n = len(dims)
    g_index, c_index = [], []
    for d in range(dst.dim()):
        if d in dims:
            j = dims.index(d)
            shape = [1] * n
            shape[j] = -1
            g_index.append(g_idx.view(shape))
            c_index.append(c_idx.view(shape))
        else:
            g_index.append(slice(None))
            c_index.append(slice(None))
    dst[tuple(g_index)] = src[tuple(c_index)].to(dst.dtype)
    return dst
