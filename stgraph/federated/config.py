"""The federation's settings, beside the ordinary :class:`~stgraph.config.RunConfig` of each client.

A federated run directory holds ``federated.yaml`` with two sections: ``federated``
(this :class:`FederatedConfig`) and ``run`` (the :class:`~stgraph.config.RunConfig` every
client trains with; its ``train.epochs`` is replaced by ``local_epochs``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from ..config import RunConfig, apply_fields, check_choice, check_positive_int, config_from_dict
from ..errors import ConfigError, MissingFileError
from ..files import atomic_write
from ..training.schedule import cosine_factor
from .tls import check_certificate_fields, host_of, is_loopback


FINETUNE_LR = 0.25  #: default fine-tuning learning rate, a factor on train.lr
#: how the server may combine the clients' updates (federated.aggregate, :func:`~.server.make_strategy`)
AGGREGATES = ("fedavg", "median", "trimmed-mean")


@dataclass(frozen=True)
class FederatedConfig:
    """How sensors are split among clients and how the server aggregates. Frozen: a changed copy comes
    from :func:`apply_federated_override` (or ``dataclasses.replace``)."""

    clients: int = 3                    #: K clients (road agencies)
    partition: str = "by-region"        #: 'by-region', 'metis', 'random' or a CSV file sensor_id,client
    partition_seed: int = 0             #: makes the partition reproducible
    locations: Optional[str] = None     #: CSV sensor_id,latitude,longitude for by-region (default: beside the graph)
    crs: str = "degrees"                #: of `locations`: 'degrees', 'projected' (metres) or 'EPSG:<code>'
    border_hops: int = 0                #: foreign sensors within this many road hops join a client's graph, without data
    rounds: int = 10                    #: server rounds
    local_epochs: int = 1               #: epochs each client trains per round
    strategy: str = "fedavg"            #: 'fedavg' or 'fedprox'
    aggregate: str = "fedavg"           #: how the server combines updates: 'fedavg', 'median' or 'trimmed-mean'
    proximal_mu: float = 0.01           #: FedProx's proximal weight (strategy fedprox)
    personal: list = field(default_factory=list)  #: regexes of more parameter names kept local
    lr_schedule: str = "none"           #: clients' learning rate over the rounds: 'none', 'cosine' or 'step'
    lr_step_rounds: int = 5             #: schedule 'step': the rate is multiplied by lr_gamma every this many rounds
    lr_gamma: float = 0.5               #: schedule 'step': the factor
    keep_optimizer: bool = True         #: each client keeps its AdamW moments between rounds (False: a new one each round)
    finetune_epochs: int = 0            #: after the last round each client fine-tunes its model this many epochs on its own data
    finetune_lr: float = FINETUNE_LR    #: the fine-tuning learning rate, as a factor on train.lr (cosine decay from it)
    local_blend: bool = False           #: after that each client also trains a model on its own data alone and blends the two
    dp_noise: float = 0.0               #: Gaussian noise multiplier of Flower's DP (0 = off)
    dp_clip: float = 1.0                #: clipping norm of the client updates when dp_noise > 0
    dp_side: str = "server"             #: where Flower clips the updates: 'server' or 'client' (fixed clipping)
    address: str = "127.0.0.1:8080"     #: gRPC address of `stgraph federated server`
    certificates: Optional[list] = None  #: server TLS: paths [CA_CERT, SERVER_CERT, SERVER_KEY] (PEM); see tls.py
    root_certificates: Optional[str] = None  #: client TLS: path of the CA certificate that signed the server's
    round_timeout: float = 600.0        #: seconds the server waits for the clients in a round

    def validate(self) -> "FederatedConfig":
        """The checked config, with ``crs`` in its canonical spelling (a copy when that differs; ``self``
        is not changed): use the returned object."""
        for name in ("clients", "rounds", "local_epochs"):
            check_positive_int(self, name, "federated")
        check_choice(self, "strategy", ("fedavg", "fedprox"), "federated")
        check_choice(self, "aggregate", AGGREGATES, "federated")
        check_choice(self, "lr_schedule", ("none", "cosine", "step"), "federated")
        check_choice(self, "dp_side", ("server", "client"), "federated")
        check_positive_int(self, "lr_step_rounds", "federated")
        if not 0 < float(self.lr_gamma) <= 1:
            raise ConfigError(f"federated.lr_gamma = {self.lr_gamma}: expected a number in (0, 1]")
        if self.partition not in ("by-region", "metis", "random") and not str(self.partition).endswith(".csv"):
            raise ConfigError(f"federated.partition = {self.partition!r}: expected 'by-region', 'metis', 'random' "
                              f"or a partition file ending in .csv (columns sensor_id,client)")
        from ..graph import parse_crs
        crs = parse_crs(self.crs)
        if int(self.border_hops) < 0:
            raise ConfigError(f"federated.border_hops = {self.border_hops}: expected an integer >= 0")
        for name in ("proximal_mu", "dp_noise"):
            if not 0 <= float(getattr(self, name)) < math.inf:
                raise ConfigError(f"federated.{name} = {getattr(self, name)}: expected a finite number >= 0")
        if not isinstance(self.finetune_epochs, int) or isinstance(self.finetune_epochs, bool) \
                or self.finetune_epochs < 0:
            raise ConfigError(f"federated.finetune_epochs = {self.finetune_epochs!r}: expected an integer >= 0 "
                              f"(0 = no local fine-tuning)")
        for name in ("dp_clip", "round_timeout", "finetune_lr"):
            if not 0 < float(getattr(self, name)) < math.inf:
                raise ConfigError(f"federated.{name} = {getattr(self, name)}: expected a finite number > 0")
        if not isinstance(self.local_blend, bool):
            raise ConfigError(f"federated.local_blend = {self.local_blend!r}: expected true or false")
        check_certificate_fields(self)
        check_loopback(self.address, tls=bool(self.certificates or self.root_certificates))
        return self if crs == self.crs else dataclasses.replace(self, crs=crs)


def check_loopback(address, tls: bool = False) -> None:
    """``address`` must be ``HOST:PORT``, with a loopback host (``127.x.x.x``, ``::1``, ``localhost``)
    unless ``tls`` (certificates are given: :mod:`~.tls`).

    Without certificates stgraph's gRPC server and clients (Flower's gRPC server / ``start_client``) run
    in plain gRPC, so anyone who could reach the port could join as a client or read the weights. With
    them the server must have ``certificates`` and each client ``root_certificates``
    (:func:`~.tls.server_certificates`, :func:`~.tls.client_root_certificates`). Node authentication
    (Flower's auth keys) is not available on this transport.
    """
    host = host_of(address)
    if not tls and not is_loopback(address):
        raise ConfigError(f"federated.address = {address!r}: only a loopback address (127.0.0.1, ::1 or "
                          f"localhost) is accepted without TLS, so {host!r} would let anyone who reaches the "
                          f"port join or read the weights. Pass federated.certificates CA_CERT SERVER_CERT "
                          f"SERVER_KEY to the server and federated.root_certificates CA_CERT to each client, "
                          f"or connect through an authenticated tunnel (e.g. ssh -L 8080:127.0.0.1:8080 HOST)")


def round_lr_factor(fed: FederatedConfig, server_round: int) -> float:
    """The factor on the clients' ``train.lr`` in round ``server_round`` (1-based) of ``fed.rounds``.

    ``cosine``: the trainer's cosine (:func:`stgraph.training.schedule.cosine_factor`) with rounds in
    place of epochs, at ``t = (r - 1) / R``: ``0.02 + 0.98 * (1 + cos(pi * t)) / 2``, 1 in the first
    round, falling towards 0.02; ``step``: ``lr_gamma ** ((r - 1) // lr_step_rounds)``; ``none``: 1.
    """
    r = max(1, int(server_round))
    if fed.lr_schedule == "cosine":
        return cosine_factor((r - 1) / max(1, int(fed.rounds)))
    if fed.lr_schedule == "step":
        return float(fed.lr_gamma) ** ((r - 1) // int(fed.lr_step_rounds))
    return 1.0


def apply_federated_override(fed: FederatedConfig, key: str, value) -> FederatedConfig:
    """``fed`` with ``federated.<key>`` set (checked like a config file field); a new config, ``fed`` is
    not changed."""
    return apply_fields(fed, {key: value}, "federated")


def save_federated(path: str | Path, fed: FederatedConfig, run: RunConfig) -> Path:
    """Write ``federated.yaml`` (sections ``federated`` and ``run``)."""
    path = Path(path)
    text = yaml.safe_dump({"federated": dataclasses.asdict(fed), "run": run.to_dict()}, sort_keys=False)
    atomic_write(path, text)
    return path


def load_federated(path: str | Path) -> tuple[FederatedConfig, RunConfig]:
    """Read ``federated.yaml`` back into ``(FederatedConfig, RunConfig)``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"'{path}' not found; expected the federated.yaml of a federated run")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or set(doc) - {"federated", "run"}:
        raise ConfigError(f"'{path}': sections {sorted(doc) if isinstance(doc, dict) else type(doc).__name__}; "
                          f"expected 'federated' and 'run'")
    try:
        fed = apply_fields(FederatedConfig(), doc.get("federated") or {}, "federated")
        run = config_from_dict(doc.get("run") or {})
    except ConfigError as e:
        raise ConfigError(f"'{path}': {e}") from None
    return fed.validate(), run
