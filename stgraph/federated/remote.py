"""One client of a federation over gRPC (``stgraph federated client``): its folder locked, an earlier
federation's state set aside until the new one has finished, the rounds checked, then fine-tuning and
the local blend as the settings say."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import RunConfig
from ..errors import ConfigError, FederationError
from ..files import run_lock
from .config import FederatedConfig
from .folders import discard_previous, restore_previous, setup
from .layout import ClientFiles, FederationFiles

log = logging.getLogger(__name__)


def rounds_done(client_dir: str | Path) -> int:
    """The rounds the client in ``client_dir`` evaluated (``federated_state.json``)."""
    state = ClientFiles(client_dir).state
    return len(json.loads(state.read_text()).get("rounds", [])) if state.is_file() else 0


def take_part(fed: FederatedConfig, run_cfg: RunConfig, out: str | Path, partition_id: int, *,
              record: bool = False, max_wait: float = 60.0) -> Path:
    """Set up client ``partition_id``'s folder in ``out``, take part in the server's rounds at
    ``fed.address`` (over TLS with ``fed.root_certificates``), then fine-tune and blend
    (``fed.finetune_epochs``, ``fed.local_blend``).

    The folder is locked (:func:`stgraph.files.run_lock`) throughout. What an earlier federation left
    there is set aside, not deleted (:func:`~.folders.set_aside`): it is restored if the server cannot be
    reached or ends before ``fed.rounds`` rounds (:class:`~stgraph.errors.FederationError`), and removed
    once all rounds are done. Returns the client folder.
    """
    from .finetune import finetune_client
    from .flower import start_client
    from .local import blend_client, train_local
    from .server import client_mods
    from .tls import client_root_certificates

    root_certificates = client_root_certificates(fed)  # refused before the folder is touched
    if not 0 <= partition_id < fed.clients:
        raise ConfigError(f"partition id {partition_id}: expected 0 .. {fed.clients - 1} (clients = {fed.clients})")
    cdir = FederationFiles(out).client(partition_id).root
    with run_lock(cdir):
        setup(fed, run_cfg, out, clients=[partition_id], keep_previous=True)
        try:
            start_client(cdir, fed.address, record=record, max_wait=max_wait, mods=client_mods(fed),
                         root_certificates=root_certificates)
            done = rounds_done(cdir)
            if done < fed.rounds:
                raise FederationError(f"client {partition_id}: the server ended the federation after {done} of "
                                      f"{fed.rounds} rounds (see the server's log); the client's earlier state "
                                      f"is back in place")
        except BaseException:
            restore_previous(cdir)
            raise
        discard_previous(cdir)
        if fed.finetune_epochs:
            finetune_client(cdir)
        if fed.local_blend:
            train_local(cdir)
            blend_client(cdir)
    return cdir
