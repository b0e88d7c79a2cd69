"""Flower at the edge: the ``NumPyClient``, the ``ClientApp`` / ``ServerApp`` wiring, the simulation
engine and the gRPC entry points, laid out as in Flower's quickstart (``client_fn`` / ``server_fn``).

This is the one module of :mod:`stgraph.federated` that imports ``flwr`` when it is imported; the others
import it (or ``flwr``) only inside the functions that run a federation, so the package works without
Flower for partitions, folders, fine-tuning and the global export. The work itself is Flower-free:
:class:`StgraphClient` relays Flower's messages to :class:`~.client.FederatedClient`, and the strategy
comes from :func:`~.server.make_strategy`.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import flwr
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.server import ServerApp, ServerAppComponents, ServerConfig
from flwr.server.client_proxy import ClientProxy

from ..errors import ConfigError, FederationError

from .client import FederatedClient
from .config import FederatedConfig
from .server import make_strategy

log = logging.getLogger(__name__)


class StgraphClient(NumPyClient):
    """Flower ``NumPyClient`` over a client folder written by :func:`~.folders.write_client`: Flower's
    messages and their ``config`` (``server_round``, ``lr_factor``, ``proximal_mu``, ``keep_optimizer``)
    become calls of :class:`~.client.FederatedClient` (see there for what each message carries).

    Args:
        client_dir: the client folder.
        record: also keep what was sent each round in ``updates/round_NNN.npz``.
    """

    def __init__(self, client_dir: str | Path, record: bool = False):
        self.client = FederatedClient(client_dir, record=record)

    def get_parameters(self, config):
        """Shared weights, float32 arrays in :func:`~.personal.shared_keys` order."""
        return self.client.get_parameters()

    def fit(self, parameters, config):
        return self.client.fit(parameters, int(config.get("server_round", 0)),
                               lr_factor=float(config.get("lr_factor", 1.0)),
                               proximal_mu=float(config.get("proximal_mu", 0.0)),
                               keep_optimizer=bool(config.get("keep_optimizer", False)))

    def evaluate(self, parameters, config):
        """The personalised model (global shared + own personal weights) on the validation split."""
        return self.client.evaluate(parameters, int(config.get("server_round", 0)))


def client_app(client_dirs: Sequence[str | Path], *, record: bool = False, mods: Sequence = ()) -> ClientApp:
    """The ``ClientApp`` whose node ``partition-id`` serves the client folder ``client_dirs[partition-id]``."""
    dirs = [str(d) for d in client_dirs]

    def client_fn(context):
        return StgraphClient(dirs[int(context.node_config["partition-id"])], record=record).to_client()

    return ClientApp(client_fn=client_fn, mods=list(mods))


def server_app(strategy, fed: FederatedConfig) -> ServerApp:
    """The ``ServerApp`` running ``strategy`` for ``fed.rounds`` rounds of at most ``fed.round_timeout`` s."""
    def server_fn(context):
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=fed.rounds,
                                                                          round_timeout=fed.round_timeout))

    return ServerApp(server_fn=server_fn)


def run_simulation(fed: FederatedConfig, client_dirs: Sequence[str | Path], strategy, *, record: bool = False,
                   cpus: int = 1, mods: Sequence = ()) -> None:
    """Run ``fed.clients`` clients and ``strategy`` on this machine with Flower's ``run_simulation`` (Ray
    backend): each client gets one CPU, ``cpus`` clients train at once. Ray's workers print to this
    process's output only when this module's logger is on at INFO."""
    from flwr.simulation import run_simulation as flwr_run_simulation

    # Ray starts its workers at niceness 15; the clients are the whole job here (the driver only waits), so
    # at that priority they starve behind any other process on a shared machine. Same priority as the caller.
    os.environ.setdefault("RAY_worker_niceness", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flwr_run_simulation(server_app=server_app(strategy, fed),
                            client_app=client_app(client_dirs, record=record, mods=mods),
                            num_supernodes=fed.clients,
                            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                            "init_args": {"num_cpus": cpus, "include_dashboard": False,
                                                          "log_to_driver": log.isEnabledFor(logging.INFO)}})


def version() -> str:
    """The installed Flower's version."""
    return flwr.__version__


def start_client(client_dir: str | Path, address: str, *, record: bool = False, max_wait: float = 60.0,
                 mods: Sequence = (), root_certificates: bytes | None = None) -> None:
    """Connect the client in ``client_dir`` to a server over gRPC and serve until it says stop.

    Uses Flower's ``flwr.compat.client.app.start_client`` (gRPC bidirectional stream), over TLS when
    ``root_certificates`` (PEM bytes of the CA that signed the server's certificate, Flower's
    ``root_certificates=``; :func:`~.tls.client_root_certificates`) are given, else plain gRPC;
    gives up after ``max_wait`` seconds without a server (:class:`~stgraph.errors.FederationError`,
    also when the TLS handshake fails). ``mods``: Flower client mods (e.g. ``fixedclipping_mod`` for
    client-side DP, :func:`~.server.client_mods`), which need the ``ClientApp`` form of the same call.
    """
    import grpc
    from flwr.compat.client.app import start_client as flwr_start_client
    from flwr.compat.client.app import start_client_internal

    client = StgraphClient(client_dir, record=record)
    retry = dict(insecure=root_certificates is None, root_certificates=root_certificates,
                 max_retries=max(1, int(max_wait)), max_wait_time=max_wait)
    try:
        if not mods:
            flwr_start_client(server_address=address, client=client.to_client(), **retry)
            return
        app = ClientApp(client_fn=lambda context: client.to_client(), mods=list(mods))
        start_client_internal(server_address=address, node_config={}, load_client_app_fn=lambda *a: app, **retry)
    except grpc.RpcError as e:
        detail = e.details() if hasattr(e, "details") else str(e)
        how = ("over TLS: is the server using TLS, and was its certificate (for this address) signed by "
               "federated.root_certificates?" if root_certificates is not None else
               "in plain gRPC: if the server uses TLS, pass federated.root_certificates CA_CERT")
        raise FederationError(f"the server at {address} could not be reached or the connection was lost "
                              f"(within {max_wait:g} s, {detail}); connecting {how}") from None


def serve(fed: FederatedConfig, out: str | Path, *, record: bool = False) -> list[dict]:
    """Run the server over gRPC at ``fed.address`` for ``fed.rounds`` rounds; returns the global rows.

    Flower's gRPC server (bidirectional stream, as ``flwr.compat.server.app.start_server``) and its
    server loop; each round waits at most ``fed.round_timeout`` seconds for the clients. When the rounds
    are done, or a round cannot complete (:class:`~stgraph.errors.FederationError`: too few valid
    updates, a client failed or left), the clients are told to disconnect, the gRPC server stops and the
    call returns or raises: it never waits on after a failure. ``OUT/server`` is locked meanwhile
    (:func:`stgraph.files.run_lock`). Over TLS with ``fed.certificates`` (:func:`~.tls.server_certificates`:
    required beyond a loopback address; missing or unreadable files are refused before anything starts).
    """
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.server import Server, run_fl
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server
    from flwr.supercore.address import parse_address

    from ..files import run_lock
    from .tls import server_certificates

    certificates = server_certificates(fed)
    host, port, is_v6 = parse_address(fed.address) or (None, None, None)
    if host is None:
        raise ConfigError(f"federated.address = {fed.address!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    with run_lock(out):
        strategy, round_log = make_strategy(fed, out, record=record)
        server = Server(client_manager=SimpleClientManager(), strategy=strategy)
        config = ServerConfig(num_rounds=fed.rounds, round_timeout=fed.round_timeout)
        grpc_server = start_grpc_server(client_manager=server.client_manager(),
                                        server_address=f"[{host}]:{port}" if is_v6 else f"{host}:{port}",
                                        certificates=certificates)
        try:
            run_fl(server, config)
        except FederationError:
            server.disconnect_all_clients(timeout=min(10.0, fed.round_timeout))
            raise
        finally:
            grpc_server.stop(grace=1)
    return round_log.history


class _LocalProxy(ClientProxy):
    """A Flower client proxy calling a ``Client`` in this process."""

    def __init__(self, cid: str, client) -> None:
        super().__init__(cid)
        self.client = client

    def get_properties(self, ins, timeout, group_id):
        return self.client.get_properties(ins)

    def get_parameters(self, ins, timeout, group_id):
        return self.client.get_parameters(ins)

    def fit(self, ins, timeout, group_id):
        return self.client.fit(ins)

    def evaluate(self, ins, timeout, group_id):
        return self.client.evaluate(ins)

    def reconnect(self, ins, timeout, group_id):
        from flwr.common import DisconnectRes
        return DisconnectRes(reason="")


def run_local(fed: FederatedConfig, clients: Sequence, strategy) -> None:
    """Flower's server loop (``flwr.server.Server``) with ``clients`` in this process, one at a time: no
    Ray, no gRPC (tests, benchmarks). ``clients``: Flower ``Client`` objects, e.g.
    ``StgraphClient(dir).to_client()`` or a wrapper of one. Raises
    :class:`~stgraph.errors.FederationError` when a round cannot complete."""
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.server import Server, run_fl

    server = Server(client_manager=SimpleClientManager(), strategy=strategy)
    server.set_max_workers(1)
    for i, client in enumerate(clients):
        server.client_manager().register(_LocalProxy(f"local-{i}", client))
    run_fl(server, ServerConfig(num_rounds=fed.rounds, round_timeout=fed.round_timeout))
