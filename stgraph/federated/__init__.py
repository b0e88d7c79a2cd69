"""Federated training across road agencies, on Flower (``flwr``).

Each client holds one agency's sensors (a subgraph of the road network) and its
own series; only weights travel. The server runs Flower's FedAvg (or FedProx),
weighted by the clients' training windows; sensor-tied tensors (e.g. stgt's
sensor embeddings) stay on their client.

::

    from stgraph.federated import simulate

    fed = simulate("runs/fed", data="syn/synthetic.h5", graph="syn/adj_mx.pkl", clients=3, rounds=5)
    fed.summary["best_global_val_mae"], fed.history[-1]["val_mae"]
    fed.open_global().evaluate("test")

The modules, one job each:

* :mod:`~stgraph.federated.config`: :class:`FederatedConfig` and ``federated.yaml``;
* :mod:`~stgraph.federated.layout`: the names of every federated folder and file;
* :mod:`~stgraph.federated.partition`: ``by-region``, ``metis``, ``random``, partition files;
* :mod:`~stgraph.federated.personal`: which weights stay on a client, the clients' common start;
* :mod:`~stgraph.federated.folders`: the client folders (set up, read back);
* :mod:`~stgraph.federated.client`: a client's rounds of training and evaluation, without Flower;
* :mod:`~stgraph.federated.server`: Flower strategies with per-round logs, optional Flower DP;
* :mod:`~stgraph.federated.flower`: Flower at the edge: ``NumPyClient``, ``ClientApp`` / ``ServerApp``,
  the simulation engine, gRPC client and server;
* :mod:`~stgraph.federated.finetune` and :mod:`~stgraph.federated.local`: after the rounds, local
  fine-tuning and a local model blended with the federated one;
* :mod:`~stgraph.federated.export`: the global run over every sensor;
* :mod:`~stgraph.federated.simulation`: a whole federation on one machine, and its summary.

Flower is an optional dependency: ``pip install 'stgraph[federated]'``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import FederatedConfig, load_federated, save_federated
from .partition import METHODS, cut_edges, partition_sensors, read_partition, write_partition


def simulate(out: str | Path, *, data: str | Path | None = None, graph: str | Path | None = None,
             model: str | None = None, config=None, overrides: Mapping[str, Any] | Iterable[str] | None = None,
             federated: FederatedConfig | None = None, overwrite: bool = False, record: bool = False,
             cpus: int | None = None, **settings):
    """Simulate a federation on this machine: partition the sensors among clients, run the Flower rounds,
    assemble the global run, then (as the settings say) fine-tune and blend on each client.

    Args:
        out: the federated run directory (:mod:`~stgraph.federated.layout`).
        data / graph: the series file and the road graph file the federation splits among its clients.
        model / config / overrides: the clients' run config, as :func:`stgraph.train` takes them: a registry
            name, a :class:`~stgraph.config.RunConfig` / YAML file / shipped set-up name, and more fields
            (``{"train.max_batches": 5}`` or ``["train.max_batches=5"]``).
        federated: a :class:`FederatedConfig` to start from (default ``FederatedConfig()``).
        **settings: :class:`FederatedConfig` fields over it, e.g. ``clients=3, rounds=10, local_epochs=1,
            strategy="fedavg", partition="by-region", finetune_epochs=0, local_blend=False`` (the defaults),
            and the run config arguments of :func:`stgraph.train` (``dataset``, ``seed``, ``batch_size``, ...;
            ``train.epochs`` is each round's ``local_epochs``).
        overwrite: replace a federation already in ``out``.
        record: keep every round's updates and global weights.
        cpus: clients that train at once (default one per client, at most the machine's CPUs).

    Returns:
        a :class:`~stgraph.federated.simulation.Federation`: ``summary`` (also in ``OUT/summary.json``),
        ``history`` (the global row of each round: validation MAE, bytes, seconds), ``open_global()``
        and ``open_client(i)`` (the runs).

    Raises:
        ConfigError: an unknown setting or a value the configs refuse; RunDirError: ``out`` holds a
            federation and ``overwrite`` is off, or another process is using it (``out`` is locked while
            the federation runs). Both before anything in ``out`` changes. FederationError: a round
            could not complete (too few valid client updates, a client failed).
    """
    import dataclasses
    import difflib

    from ..arguments import TRAIN_FIELDS, run_config
    from ..errors import ConfigError
    from ..files import run_lock
    from .config import apply_federated_override
    from .folders import prepare_out
    from .simulation import Federation, simulate_federation

    fed_fields = [f.name for f in dataclasses.fields(FederatedConfig)]
    unknown = sorted(set(settings) - set(fed_fields) - set(TRAIN_FIELDS))
    if unknown:
        near = difflib.get_close_matches(unknown[0], [*fed_fields, *TRAIN_FIELDS], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"simulate: unknown argument {unknown[0]!r}{hint}; expected a FederatedConfig field "
                          f"({fed_fields}) or a run config argument ({sorted(TRAIN_FIELDS)})")
    fed = federated if federated is not None else FederatedConfig()
    for key in (k for k in settings if k in fed_fields):
        fed = apply_federated_override(fed, key, settings[key])
    fed = fed.validate()
    run_fields = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items() if k not in fed_fields}
    cfg = run_config(model=model, config=config, overrides=overrides, data=data and str(data),
                     graph=graph and str(graph), **run_fields)
    with run_lock(out):
        out = prepare_out(out, overwrite=overwrite)
        return Federation.read(out, simulate_federation(fed, cfg, out, record=record, cpus=cpus))


__all__ = ["FederatedConfig", "METHODS", "cut_edges", "load_federated", "partition_sensors", "read_partition",
           "save_federated", "simulate", "write_partition"]
