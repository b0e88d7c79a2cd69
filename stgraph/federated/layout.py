"""The one table of the file and folder names of a federated run directory.

Layout of ``OUT`` (every name below comes from :class:`FederationFiles`, :class:`ServerFiles` and
:class:`ClientFiles`; nothing else spells them)::

    federated.yaml                 FederatedConfig + the clients' RunConfig (:mod:`.config`)
    partition.csv                  sensor_id,client (:mod:`.partition`)
    summary.json                   rounds, best round, bytes a round, partition sizes, engine
    server/rounds.csv              per round: each client's and the global validation MAE, bytes up / down
    server/global_shared.npz       the last global shared weights (p0000, p0001, ... in shared-key order)
    server/rounds/round_NNN.npz    every round's global shared weights (``record``)
    client_<i>/                    client i: an ordinary run directory (:class:`~stgraph.training.layout.RunFiles`)
        client.json                its sensors, personalised layers, fine-tuning and local-model settings
        federated_state.json       its validation MAE per round and its best round
        data/series.h5             its own sensors' series (border sensors null)
        data/graph.json            road links among its sensors
        checkpoints/local.pt       its weights and AdamW state after its last local training (keep_optimizer)
        checkpoints/federated.pt   its best round, kept when local fine-tuning replaces best.pt
        finetune.json              what fine-tuning did
        updates/round_NNN.npz      what it sent each round (``record``)
        local/                     a run trained on its own data alone (local_blend)
        blend/                     the run blending the federated and the local model (local_blend)
        blend.json                 the blend's weights and validation MAE
        .previous/                 an earlier federation's checkpoints and state, set aside while a client
                                   re-run is under way (restored if it fails, removed when it finishes)
    global/                        the final model over every sensor (an ordinary run)
"""
from __future__ import annotations

from pathlib import Path

from ..training.layout import CHECKPOINTS, RunFiles

FEDERATED_CONFIG = "federated.yaml"
PARTITION = "partition.csv"
SUMMARY = "summary.json"
SERVER = "server"
GLOBAL = "global"
CLIENT = "client_{index}"
ROUND_LOG = "rounds.csv"
GLOBAL_SHARED = "global_shared.npz"
ROUNDS = "rounds"
ROUND = "round_{round:03d}.npz"
CLIENT_INFO = "client.json"
STATE = "federated_state.json"
#: in checkpoints/: the weights after the client's last local training and its AdamW state, kept between
#: rounds (federated.keep_optimizer)
OPTIMIZER = "local.pt"
#: in checkpoints/: the client's best round, kept when local fine-tuning replaces best.pt
FEDERATED = "federated.pt"
FINETUNE = "finetune.json"
UPDATES = "updates"
DATA = "data"
SERIES = "series.h5"
GRAPH = "graph.json"
#: in a client folder (federated.local_blend, :mod:`.local`): the run trained on the client's own data alone,
#: the run blending it with the federated model, and the blend's weights and validation MAE
LOCAL = "local"
BLEND = "blend"
BLEND_INFO = "blend.json"
#: in a client folder: what :meth:`ClientFiles.stale` lists, set aside while a re-run client is under way
PREVIOUS = ".previous"


class ServerFiles:
    """The paths of the server folder ``root`` (``OUT/server``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def round_log(self) -> Path:
        """``rounds.csv``: one row per client and one ``global`` row per round."""
        return self.root / ROUND_LOG

    @property
    def global_shared(self) -> Path:
        return self.root / GLOBAL_SHARED

    def round_weights(self, server_round: int) -> Path:
        """``rounds/round_NNN.npz``: the global shared weights of ``server_round`` (``record``)."""
        return self.root / ROUNDS / ROUND.format(round=server_round)


class ClientFiles(RunFiles):
    """The paths of the client folder ``root`` (``OUT/client_<i>``): a run directory and its federated files."""

    @property
    def client_info(self) -> Path:
        return self.root / CLIENT_INFO

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def optimizer(self) -> Path:
        return self.checkpoint(OPTIMIZER)

    @property
    def federated(self) -> Path:
        return self.checkpoint(FEDERATED)

    @property
    def finetune(self) -> Path:
        return self.root / FINETUNE

    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def series(self) -> Path:
        return self.data / SERIES

    @property
    def graph(self) -> Path:
        return self.data / GRAPH

    def sent(self, server_round: int) -> Path:
        """``updates/round_NNN.npz``: what the client sent in ``server_round`` (``record``)."""
        return self.root / UPDATES / ROUND.format(round=server_round)

    @property
    def local(self) -> Path:
        return self.root / LOCAL

    @property
    def blend(self) -> Path:
        return self.root / BLEND

    @property
    def blend_info(self) -> Path:
        return self.root / BLEND_INFO

    def stale(self) -> tuple[list[Path], list[Path]]:
        """``(files, folders)`` a new federation in this folder must not inherit: checkpoints, recorded
        updates, the round state, fine-tuning and blend results and the metrics; the local and blend runs."""
        files = [*(self.root / CHECKPOINTS).glob("*.pt"), *(self.root / UPDATES).glob("*.npz"), self.state,
                 self.finetune, self.blend_info, self.metrics]
        return files, [self.local, self.blend]

    @property
    def previous(self) -> Path:
        """``.previous/``: the stale files and folders of an earlier federation, while a re-run is under way."""
        return self.root / PREVIOUS


class FederationFiles:
    """The paths of the federated run directory ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        """``federated.yaml``: its presence marks a federated run."""
        return self.root / FEDERATED_CONFIG

    @property
    def partition(self) -> Path:
        return self.root / PARTITION

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def server(self) -> ServerFiles:
        return ServerFiles(self.root / SERVER)

    @property
    def global_run(self) -> Path:
        """``global/``: the assembled run over every sensor."""
        return self.root / GLOBAL

    def client(self, index: int) -> ClientFiles:
        """``client_<index>/``."""
        return ClientFiles(self.root / CLIENT.format(index=index))

    def written(self) -> tuple[list[Path], list[Path]]:
        """``(folders, files)`` of a federation that exist now (what ``overwrite`` clears)."""
        folders = [d for d in [*self.root.glob(CLIENT.format(index="*")), self.server.root, self.global_run]
                   if d.is_dir()]
        return folders, [f for f in (self.config, self.partition, self.summary) if f.exists()]


__all__ = ["FederationFiles", "ServerFiles", "ClientFiles", "FEDERATED_CONFIG", "PARTITION", "SUMMARY", "SERVER",
           "GLOBAL", "CLIENT", "ROUND_LOG", "GLOBAL_SHARED", "ROUNDS", "ROUND", "CLIENT_INFO", "STATE", "OPTIMIZER",
           "FEDERATED", "FINETUNE", "UPDATES", "DATA", "SERIES", "GRAPH", "LOCAL", "BLEND", "BLEND_INFO",
           "PREVIOUS"]
