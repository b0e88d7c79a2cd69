"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc-per-node K -m stgraph train ...`` starts ``K`` processes; each one reads the
rendezvous variables torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) and :func:`session` joins the process group: ``nccl`` when the training device is
CUDA (process ``LOCAL_RANK`` takes ``cuda:LOCAL_RANK``), ``gloo`` on CPU. ``stgraph train --devices K``
is a shortcut that runs that command (:func:`launch`).

How the one :class:`~stgraph.training.trainer.Trainer` divides the work (see :func:`Dist.shard`):

* every epoch draws ONE permutation of the training windows from the seed and the epoch (the same
  whatever ``K`` is); global batch ``i`` is windows ``[i*B, (i+1)*B)`` of it and process ``r`` takes
  the ``r``-th of its ``K`` equal parts (``B / K`` windows), so every window is used once per epoch
  and ``train.batch_size`` stays the global batch;
* the loss of a process is its masked sum divided by the masked count of the WHOLE global batch
  (one ``all_reduce`` of the count), so the gradients DDP averages are those of the single-process
  loss;
* validation and test windows are divided the same way and the metric sums and counts are added
  with ``all_reduce`` (exact, not an average of averages);
* only rank 0 writes checkpoints, ``metrics.csv`` and the run files, and prints.
"""
from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..errors import ConfigError, StgraphError

#: the variables torchrun sets in every process it starts
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the process group (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def shard(self, starts: torch.Tensor) -> torch.Tensor:
        """This process's part of the windows ``starts [B]`` of one global batch: ``[B / K]`` when ``K``
        divides ``B`` (training), else one of ``K`` near-equal parts (possibly empty)."""
        if not self.enabled:
            return starts
        return torch.tensor_split(starts, self.world)[self.rank]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over every process, in place (and returned); ``t`` unchanged when not distributed."""
        if self.enabled:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def per_rank_batch(self, batch_size: int, field: str = "train.batch_size") -> int:
        """``batch_size / K``; an error naming ``field`` when ``K`` does not divide it."""
        if batch_size % self.world:
            raise ConfigError(
                f"{field} = {batch_size} is not divisible by the {self.world} training processes (torchrun "
                f"--nproc-per-node x --nnodes, or --devices); {field} is the global batch, split evenly over "
                f"the processes, so pass a multiple of {self.world}, e.g. "
                f"{max(self.world, batch_size // self.world * self.world)}")
        return batch_size // self.world


def current() -> Dist:
    """The process group this process belongs to (``Dist()`` when none was joined)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def under_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def device_for(name: str) -> str:
    """The training device of this process: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` under torchrun with
    CUDA available, else ``name`` unchanged."""
    if not under_torchrun() or not torch.cuda.is_available():
        return name
    if name in ("auto", "cuda"):
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return name


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Dist]:
    """Join the process group torchrun describes (if any, and none is joined yet) for the block.

    The backend is ``nccl`` when ``device`` resolves to CUDA, else ``gloo``. The group is left when the
    block ends (only if this call joined it), after a barrier when the block ended without an error, so
    that no process tears its group down while another still uses it. Outside torchrun this yields
    ``Dist()`` and does nothing.
    """
    dist = torch.distributed
    if not under_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise StgraphError("torchrun started this process but this torch build has no torch.distributed")
    for var in TORCHRUN_VARS:
        if var not in os.environ:
            raise StgraphError(f"${var} is not set; start distributed training with torchrun (or stgraph train "
                               f"--devices K), which sets {', '.join(TORCHRUN_VARS)}")
    dev = device_for(device)
    cuda = dev.startswith("cuda")
    if cuda:
        index = torch.device(dev).index or 0
        if index >= torch.cuda.device_count():
            raise StgraphError(f"this process (LOCAL_RANK {os.environ['LOCAL_RANK']}) would train on {dev} but this "
                               f"machine has {torch.cuda.device_count()} GPU(s); start at most that many processes a "
                               f"node (--nproc-per-node / --devices), or train on the CPU (--device cpu)")
        torch.cuda.set_device(torch.device(dev))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    ok = False
    try:
        yield current()
        ok = True
    finally:
        if ok:
            dist.barrier()  # every process has finished its collectives (rank 0 also its files)
        gc.collect()  # a DDP wrapper left in a reference cycle would keep the group alive until exit
        dist.destroy_process_group()


def torchrun_command(devices: int, argv: Sequence[str]) -> list[str]:
    """The command ``stgraph train --devices K`` runs: torchrun on this machine (``--standalone``: a
    rendezvous on 127.0.0.1 with a free port), ``K`` processes of ``python -m stgraph ARGV``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}",
            "-m", "stgraph", *argv]


def strip_devices(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--devices K`` / ``--devices=K`` (the processes torchrun starts must not launch again)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--devices":
            skip = True
        elif not a.startswith("--devices="):
            out.append(a)
    return out


def launch(devices: int, argv: Sequence[str], env: dict | None = None) -> int:
    """Run ``stgraph ARGV`` in ``devices`` processes under torchrun; returns its exit status.

    Raises:
        ConfigError: ``devices`` < 1, or this process already runs under torchrun.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"--devices = {devices!r}: expected the number of training processes, an integer >= 1")
    if under_torchrun():
        raise ConfigError("--devices was given inside a torchrun process; pass --devices to a plain `stgraph train`, "
                          "or use torchrun's --nproc-per-node, not both")
    env = dict(os.environ if env is None else env)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(torchrun_command(devices, strip_devices(argv)), env=env)


__all__ = ["Dist", "current", "under_torchrun", "device_for", "session", "launch", "torchrun_command",
           "strip_devices"]
