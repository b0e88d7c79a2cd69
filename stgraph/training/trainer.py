"""One trainer for every model.

:class:`Trainer` fits any model that follows the registry's forward contract
(see :mod:`stgraph.models.registry`) on a :class:`~stgraph.data.ForecastData`:

* loss: masked MAE in the data's own units (speeds in mph), or the masked
  negative log-likelihood when the model returns a ``torch.distributions.Normal``
  (a probabilistic head), of the distribution ``model.distribution`` makes of it
  (:mod:`stgraph.distributions`: Normal, or a log-normal censored at 0 for counts);
* AdamW, cosine or multi-step learning-rate schedule with optional warm-up,
  gradient clipping, early stopping on validation MAE;
* seeds that make a CPU run repeatable, bf16 autocast and ``torch.compile``
  when asked for and available;
* atomic checkpoints (``last.pt`` every epoch and, with ``checkpoint_every``,
  every k batches; ``best.pt`` on improvement) holding weights, optimiser,
  scheduler, RNG states, scaler, config and a data/graph fingerprint;
  ``fit(resume=True)`` continues an interrupted run exactly;
* a tqdm bar with loss, learning rate and ETA (with a budget: the CPU seconds used of it); one row
  per epoch in ``metrics.csv``;
* a training budget in CPU time (``train.budget_minutes``), so that models are compared at the same
  compute rather than the same epochs. It is measured with ``time.process_time()`` (this process's CPU
  time, all its threads; wall time on a shared machine is noisy) and counts the training steps (batch
  gathering included) and the validation passes, not the setup, checkpoint writing or the final test
  evaluation (DataLoader worker processes, ``train.workers``, are not counted; under ``torchrun`` the
  processes' times are summed). The seconds used are kept in the trainer's state, so checkpoints hold
  them and ``fit(resume=True)`` continues the count. ``train.budget_stop``: ``'epoch'`` ends the run
  after the epoch (and its validation) during which the budget was crossed; ``'step'`` stops at the
  first step past it, validates what it has (``best.pt`` may still improve; the cut epoch counts as one),
  saves and stops. ``train.epochs`` still applies (whichever comes first), and so does early stopping.
  With a budget the ``cosine`` schedule anneals over whichever end is nearer, the budget or the last
  epoch: where the budget, at the CPU seconds an epoch has cost so far, ends before the last epoch, its
  factor is computed before every training step from the larger of the fraction of the budget used and
  the fraction of the epochs done, ``0.02 + 0.98 * (1 + cos(pi * done)) / 2``; otherwise (and during the
  first epoch) it is the epoch cosine, so a small data set that runs out of epochs first is annealed
  over its epochs and repeatable. Warm-up epochs stay epoch-based; ``multistep`` and ``none``
  stay epoch-based. ``snapshot_marks`` (minutes) let one run serve several smaller budgets: where a run
  with that budget would stop (the end of the first epoch whose cumulative CPU time crosses the mark,
  or with ``budget_stop`` 'step' the first step past it, after validating what it has), ``best.pt`` is
  copied to ``checkpoints/best@<mark>m.pt`` and the mark's CPU seconds and best epoch are recorded
  (``state['snapshots']``). That equals a run with that budget only when the schedule does not depend
  on the budget (``multistep``/``none``), so a budget's cosine refuses them;
* data parallel under ``torchrun`` (:mod:`stgraph.training.distributed`): when this process is one
  of ``K`` in a ``torch.distributed`` group, the model is wrapped in ``DistributedDataParallel``,
  every global batch of ``train.batch_size`` windows is split into ``K`` parts, the metrics are
  summed over the processes and rank 0 alone writes files.

Models without trainable parameters (last value, historical average, VAR) are
fitted in closed form through the registry's declared hook (:class:`~stgraph.models.registry.ClosedForm`)
and not trained.
"""
from __future__ import annotations

import csv
import math
import time
import warnings
from pathlib import Path

import torch
from torch.distributions import Distribution

from ..distributions import check_name, check_support, from_head, point
from ..errors import ConfigError, RunDirError, StgraphError, StgraphWarning
from ..files import atomic_open
from ..runtime import autocast_context, resolve_device
from ..metrics import (MetricAccumulator, ProbabilisticAccumulator, default_steps, masked_abs_error_sum,
                       masked_nll_sum, valid_mask)
from .checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from .distributed import current as current_dist
from .distributed import device_for
from .layout import BEST, LAST, RunFiles


class NonFiniteLossError(StgraphError, FloatingPointError):
    """The training loss became NaN or infinite."""


METRIC_FIELDS = ["epoch", "train_loss", "val_mae", "val_rmse", "val_mape", "lr", "epoch_seconds",
                 "windows_per_s", "skipped_batches"]


#: the cosine schedule's last learning-rate factor (of ``train.lr``)
COSINE_FLOOR = 0.02


def cosine_factor(t: float) -> float:
    """The cosine schedule's learning-rate factor at the fraction ``t`` of its span (clipped to [0, 1]):
    1 at the start, ``COSINE_FLOOR`` at the end; the span is the epochs after warm-up, or the budget."""
    t = min(1.0, max(0.0, t))
    return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


def snapshots_stand_for_budgets(cfg) -> bool:
    """Whether the snapshots of a run with a budget (``best@<m>m.pt``) equal runs with the smaller budgets
    ``m``: its schedule does not follow the budget (``multistep`` or ``none``; either ``budget_stop``).
    ``cfg``: a :class:`~stgraph.config.TrainConfig`."""
    return cfg.scheduler != "cosine"


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) so that a CPU run is repeatable."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class Trainer:
    """Train and evaluate ``model`` on ``data`` over ``graph``.

    Args:
        model: a forecasting ``nn.Module`` (registry contract).
        data: a :class:`~stgraph.data.ForecastData`.
        graph: PyG ``Data`` with ``edge_index`` ``[2, E]``, ``edge_weight`` ``[E]``.
        cfg: a :class:`~stgraph.config.TrainConfig`.
        run_dir: folder for checkpoints and ``metrics.csv`` (``None``: keep nothing on disk).
        extra_state: plain data stored in every checkpoint (config, fingerprint, ...).
        distribution: what a probabilistic head's ``Normal`` becomes in data units
            (:data:`stgraph.distributions.DISTRIBUTIONS`, ``model.distribution``).
        snapshot_marks: CPU minutes at which to keep a copy of ``best.pt`` (``checkpoints/best@<m>m.pt``),
            so that one run serves several budgets (see the module docstring); ``None``: none.

    Inside a ``torch.distributed`` process group (``torchrun``) the trainer is data parallel:
    ``cfg.batch_size`` is the global batch and must be divisible by the number of processes.
    """

    def __init__(self, model, data, graph, cfg, run_dir=None, extra_state: dict | None = None,
                 distribution: str = "normal", snapshot_marks=None):
        self.cfg = cfg
        self.budget_seconds = 60.0 * float(cfg.budget_minutes)
        self.snapshot_marks = self._check_marks(snapshot_marks)
        self.distribution = check_name(distribution)
        self.data = data
        self.dist = current_dist()
        self.device = resolve_device(device_for(cfg.device) if self.dist.enabled else cfg.device)
        if self.device.type == "cpu":
            from ..runtime import tune_malloc
            tune_malloc()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model = model.to(self.device)
        self.graph = graph.to(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.files = RunFiles(run_dir) if run_dir is not None else None
        self.extra_state = extra_state or {}
        mean, std = data.target_stats()
        self._mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self._std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.null_value = float(data.null_value)
        if self.distribution != "normal" and isinstance(getattr(data, "targets", None), torch.Tensor):
            valid = valid_mask(data.targets, self.null_value)  # a non-negative distribution needs y >= 0
            if bool(valid.any()):
                low = float(torch.where(valid, data.targets, torch.inf).min())
                check_support(self.distribution, low, "the training data's target")
        self.trainable = any(p.requires_grad for p in self.model.parameters())
        self.autocast = autocast_context(self.device, cfg.amp)
        self.forward_model = self._compiled(self.model)
        self.train_model = self.forward_model  # what training steps call: DDP-wrapped when distributed
        if self.dist.enabled and self.trainable:
            self.dist.per_rank_batch(cfg.batch_size)
            from torch.nn.parallel import DistributedDataParallel
            ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                          else None)
            self.train_model = self._compiled(ddp)
        self.state = {"epoch": 0, "batch": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0,
                      "skipped": 0, "running_loss": 0.0, "running_count": 0, "finished": False,
                      "early_stopped": False, "cpu_seconds": 0.0, "steps": 0, "budget_stopped": False,
                      "snapshots": []}
        self._cpu_mark = time.process_time()
        self._cpu_pending = 0.0  # counted here, not yet added to state['cpu_seconds'] (distributed: not summed)
        self.optimizer = None
        self.scheduler = None
        if self.trainable:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    def _compiled(self, module):
        if not self.cfg.compile:
            return module
        try:
            return torch.compile(module)
        except Exception as e:  # pragma: no cover - depends on the platform's compiler
            if self.dist.is_main:
                warnings.warn(StgraphWarning(f"torch.compile unavailable ({e}); training uncompiled"), stacklevel=2)
            return module

    def _check_marks(self, marks) -> list[float]:
        if not marks:
            return []
        out = []
        for m in marks:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or not (math.isfinite(m) and m > 0):
                raise ConfigError(f"snapshot mark {m!r}: expected a positive number of CPU minutes, e.g. [1, 3]")
            out.append(float(m))
        cfg = self.cfg
        if cfg.budget_minutes and not snapshots_stand_for_budgets(cfg):
            raise ConfigError(f"snapshot marks {out} would not equal runs with those budgets: with a budget, "
                              f"train.scheduler = {cfg.scheduler!r} follows the budget; they need a schedule that "
                              f"does not (multistep or none). Train one run per budget instead")
        return sorted(set(out))

    # --------------------------------------------------------------------------- schedule
    def _budget_schedule(self) -> bool:
        """Whether the learning rate follows the CPU budget (cosine with ``train.budget_minutes``)."""
        return self.budget_seconds > 0 and self.cfg.scheduler == "cosine"

    def _budget_ends_first(self) -> bool:
        """Whether the CPU budget, at the CPU seconds per epoch so far, ends before the last epoch (and so
        governs a cosine schedule); ``False`` during the first epoch, which has no rate to project from. A run
        whose epochs end first keeps the epoch cosine exactly, whatever its CPU times (repeatable)."""
        if not self._budget_schedule():
            return False
        epochs = self.state["epoch"] + self.state["batch"] / max(1, getattr(self, "_n_batches", 1))
        cpu = self.state.get("cpu_seconds", 0.0)
        return epochs >= 1 and cpu > 0 and self.budget_seconds * epochs / cpu < self.cfg.epochs

    def _lr_factor(self, epoch: int) -> float:
        cfg = self.cfg
        if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
            return (epoch + 1) / (cfg.warmup_epochs + 1)
        if cfg.scheduler == "cosine":
            span = max(1, cfg.epochs - cfg.warmup_epochs)
            done = (epoch - cfg.warmup_epochs) / span
            if self._budget_ends_first():  # the nearer end governs: the budget or the last epoch
                done = max(done, self.state["cpu_seconds"] / self.budget_seconds)
            return cosine_factor(done)
        if cfg.scheduler == "multistep":
            return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        return 1.0

    def _apply_lr(self, epoch: int) -> None:
        """Set every parameter group's rate to its base times :meth:`_lr_factor` now (the budget's cosine
        changes it every step)."""
        factor = self._lr_factor(epoch)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * factor

    # --------------------------------------------------------------------------- CPU budget
    def _cpu_restart(self) -> None:
        """Start counting CPU time from now (what came since the last count is not training)."""
        self._cpu_mark = time.process_time()

    def _cpu_count(self, sync: bool = True) -> None:
        """Count the CPU time since the last count; with ``sync`` add it to ``state['cpu_seconds']``
        (distributed: summed over the processes, so that every process stops at the same step)."""
        now = time.process_time()
        self._cpu_pending += now - self._cpu_mark
        self._cpu_mark = now
        if not sync:
            return
        spent = self._cpu_pending
        if self.dist.enabled:
            spent = float(self.dist.all_reduce_sum(torch.tensor([spent], dtype=torch.float64, device=self.device)))
        self.state["cpu_seconds"] = float(self.state.get("cpu_seconds", 0.0)) + spent
        self._cpu_pending = 0.0

    def budget_spent(self) -> bool:
        """Whether the run has used its CPU budget (``False`` without one)."""
        return self.budget_seconds > 0 and self.state.get("cpu_seconds", 0.0) >= self.budget_seconds

    def _take_snapshots(self, final: bool = False) -> None:
        """Copy ``best.pt`` to ``best@<m>m.pt`` for every mark the CPU time has crossed (``final``: every mark
        left, when the run ended before them for another reason than its budget) and record each."""
        done = {s["minutes"] for s in self.state["snapshots"]}
        for m in self.snapshot_marks:
            if m in done or (not final and self.state["cpu_seconds"] < 60.0 * m):
                continue
            if self.files is not None and self.dist.is_main and self.files.best.is_file():
                copy_checkpoint(self.files.best, self.files.snapshot(m))
            self.state["snapshots"] = self.state["snapshots"] + [{
                "minutes": m, "cpu_seconds": round(self.state["cpu_seconds"], 3), "epoch": self.state["epoch"],
                "best_epoch": self.state["best_epoch"], "reached": not final}]

    def _mark_due(self) -> bool:
        """Whether the CPU time has crossed a snapshot mark not taken yet."""
        done = {s["minutes"] for s in self.state["snapshots"]}
        return any(m not in done and self.state["cpu_seconds"] >= 60.0 * m for m in self.snapshot_marks)

    def _validate_at_mark(self, epoch: int) -> None:
        """``budget_stop`` 'step': at the first step past a mark, do what a run with that budget does before it
        stops (validate, keep ``best.pt`` when it improved), take the snapshot, and train on. Validation in
        eval mode draws no random numbers, so the steps after it are those of a run without marks."""
        self._cpu_count(sync=False)
        val = self.evaluate("val")["average"]
        self._cpu_count()  # validation counts against the budget, as the stopping run's does
        if val["mae"] < self.state["best_val"] - 1e-6:
            self.state.update(best_val=val["mae"], best_epoch=epoch + 1, bad_epochs=0)
            self.save(BEST)
        self._take_snapshots()
        self.model.train()

    # --------------------------------------------------------------------------- pieces
    def _forward(self, batch, train: bool = False):
        cov = batch.covariates
        with self.autocast():
            out = (self.train_model if train else self.forward_model)(batch.x, self.graph, cov)
        return out

    def to_units(self, out):
        """Model output (z-scored) -> data units; a head's ``Normal`` becomes ``self.distribution``
        (:func:`stgraph.distributions.from_head`)."""
        if isinstance(out, torch.distributions.Normal):
            return from_head(out.loc.float() * self._std + self._mean, out.scale.float() * self._std,
                             self.distribution)
        return out.float() * self._std + self._mean

    def loss(self, out, y: torch.Tensor) -> torch.Tensor:
        """Masked MAE (point) or masked NLL (a probabilistic head's distribution), in data units.

        ``out``: ``[B, T_out, N, C_out]`` (or a ``Normal`` of that shape), ``y``: the same shape; a scalar."""
        total, mask = self._loss_sum(out, y)
        return total / mask.sum().clamp(min=1)

    def _loss_sum(self, out, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked sum of the per-entry loss (a scalar) and the mask ``[B, T_out, N, C_out]``."""
        out = self.to_units(out)
        if isinstance(out, Distribution):
            return masked_nll_sum(out, y, self.null_value)
        return masked_abs_error_sum(out, y, self.null_value)

    def _train_loss(self, batch) -> torch.Tensor:
        """The loss of one training step on this process's part of the global batch.

        Distributed, it is ``sum_r * K / count`` where ``count`` is the masked count of the whole global
        batch (one ``all_reduce``): DDP averages gradients over the ``K`` processes, so the update is the
        single-process update of the global batch's masked mean."""
        if not self.dist.enabled:
            return self.loss(self._forward(batch, train=True), batch.y)
        count = valid_mask(batch.y, self.null_value).sum(dtype=torch.float64)
        self.dist.all_reduce_sum(count)
        total, _ = self._loss_sum(self._forward(batch, train=True), batch.y)
        return total * (self.dist.world / count.clamp(min=1)).to(total.dtype)

    def _rng_state(self) -> dict:
        st = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            st["cuda"] = torch.cuda.get_rng_state_all()
        return st

    def _set_rng_state(self, st: dict) -> None:
        torch.set_rng_state(st["cpu"])
        if "cuda" in st and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda"])

    def checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "trainer": dict(self.state),
            "rng": self._rng_state(),
            "scaler": self.data.scaler.state_dict(),
            **self.extra_state,
        }

    def save(self, name: str = LAST) -> Path | None:
        """Write checkpoint ``name`` (``last.pt`` or ``best.pt``; rank 0 only when distributed); the path, or
        ``None`` when nothing was written."""
        if self.files is None or not self.dist.is_main:
            return None
        return save_checkpoint(self.checkpoint_state(), self.files.checkpoint(name))

    def load_state(self, ckpt: dict) -> None:
        """Restore weights, optimiser, scheduler, RNG and progress from a checkpoint dict."""
        self.model.load_state_dict(ckpt["model"])
        self.state.update(ckpt.get("trainer", {}))  # first: a budget's schedule follows its CPU seconds
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler"):
            self.scheduler.load_state_dict(ckpt["scheduler"])
            # the schedule follows this config (a resumed run may have more epochs than it started with)
            self._apply_lr(self.scheduler.last_epoch)
        if "rng" in ckpt:
            self._set_rng_state(ckpt["rng"])

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)

    def _metric_rows(self) -> list[dict]:
        path = None if self.files is None else self.files.metrics
        if path is None or not path.exists():
            return []
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            for r in rows:
                int(r["epoch"])
        except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
            raise RunDirError(f"run file '{path}' is truncated or damaged (not the metrics table stgraph writes); "
                              f"delete it or train again (--overwrite)") from None
        return rows

    def _write_metrics(self, rows: list[dict]) -> None:
        with atomic_open(self.files.metrics, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def _append_metrics(self, row: dict) -> None:
        """Add one epoch's row; the whole table is rewritten atomically (never half a line)."""
        if self.files is None or not self.dist.is_main:
            return
        self._write_metrics(self._metric_rows() + [row])

    def _trim_metrics(self, epochs_done: int) -> None:
        """Drop rows of epochs that a resumed run will redo."""
        if self.files is None or not self.dist.is_main or not self.files.metrics.exists():
            return
        self._write_metrics([r for r in self._metric_rows() if int(r["epoch"]) <= epochs_done])

    # --------------------------------------------------------------------------- training
    def fit(self, resume: bool = False) -> dict:
        """Train until ``epochs`` or early stopping; returns the trainer state.

        With ``resume`` the run continues from ``run_dir/checkpoints/last.pt``.
        """
        try:
            return self._fit(resume)
        finally:
            # drop the DDP wrapper: it holds the process group, which must go before the interpreter
            # does (gloo's threads abort the process when they are torn down at exit)
            self.train_model = self.forward_model

    def _fit(self, resume: bool) -> dict:
        self._cpu_restart()
        fit_closed_form(self.model, self.data)
        if not self.trainable:
            self._cpu_count()  # the fitting time: what a closed-form model costs
            self.state.update(finished=True, best_epoch=0)
            self.save(LAST)
            self.save(BEST)
            return self.state
        if resume:
            self.load_state(load_checkpoint(self.files.last, map_location=self.device))
            self._trim_metrics(self.state["epoch"])
            if self.state.get("finished"):
                if self.state.get("early_stopped") or self.state["epoch"] >= self.cfg.epochs:
                    return self.state
                if self.budget_spent():  # a budget no larger than what the run used: nothing more to do
                    self.state["budget_stopped"] = True
                    return self.state
                self.state.update(finished=False, budget_stopped=False)  # extended: more epochs or budget
        cfg = self.cfg
        n_batches = len(self.data.loader("train", cfg.batch_size, shuffle=True, drop_last=True))
        if cfg.max_batches:
            n_batches = min(n_batches, cfg.max_batches)
        self._n_batches = n_batches
        if n_batches == 0:
            raise StgraphError(f"the training split has fewer windows than one batch ({cfg.batch_size}); "
                               f"lower train.batch_size or use more data")
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm
            if self.budget_seconds:  # the bar counts the budget's CPU seconds
                bar = tqdm(total=round(self.budget_seconds, 1), unit="cpu s", dynamic_ncols=True, leave=True,
                           initial=round(min(self.state["cpu_seconds"], self.budget_seconds), 1))
            else:
                bar = tqdm(total=cfg.epochs * n_batches, initial=self.state["epoch"] * n_batches + self.state["batch"],
                           unit="batch", dynamic_ncols=True, leave=True)
        try:
            while self.state["epoch"] < cfg.epochs:
                if self.budget_spent():  # a run stopped between its last epoch and 'finished'
                    self.state["budget_stopped"] = True
                    break
                stop = self._train_epoch(n_batches, bar)
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()
        if not self.state.get("budget_stopped"):
            self._take_snapshots(final=True)  # it ended before the marks left for another reason: they are this
        self.state["finished"] = True
        self.save(LAST)
        return self.state

    def _show(self, bar, epoch: int, loss_v: float) -> None:
        """One step on the progress bar (batches, or with a budget the CPU seconds used of it)."""
        cfg = self.cfg
        lr = f"{self.optimizer.param_groups[0]['lr']:.2e}"
        if self.budget_seconds:
            bar.update(round(min(self.state["cpu_seconds"], self.budget_seconds), 1) - bar.n)
            bar.set_description(f"epoch {epoch + 1}")
            bar.set_postfix(loss=f"{loss_v:.4f}", lr=lr,
                            budget=f"{100 * self.state['cpu_seconds'] / self.budget_seconds:.0f}%", refresh=False)
            return
        bar.update(1)
        bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
        bar.set_postfix(loss=f"{loss_v:.4f}", lr=lr, refresh=False)

    def _train_epoch(self, n_batches: int, bar) -> bool:
        cfg = self.cfg
        epoch = self.state["epoch"]
        start_batch = self.state["batch"]
        if start_batch == 0:
            self.state["running_loss"], self.state["running_count"] = 0.0, 0
        # one permutation of the windows per epoch, whatever the number of processes; each process
        # gathers its part of every global batch, from the batch a resumed epoch stopped at
        loader = self.data.loader("train", cfg.batch_size, shuffle=True, drop_last=True,
                                  generator=self._epoch_generator(epoch), start=start_batch,
                                  shard=(self.dist.rank, self.dist.world) if self.dist.enabled else None,
                                  workers=cfg.workers)
        self.model.train()
        t0 = time.perf_counter()
        seen = 0
        # every step syncs the CPU count when the budget decides (stop, rate); else it is added at the epoch's end
        per_step = self.budget_seconds > 0 or not self.dist.enabled
        self._cpu_restart()
        for b, batch in enumerate(loader, start=start_batch):
            if b >= n_batches:
                break
            if self._budget_schedule():
                self._apply_lr(epoch)
            batch = batch.to(self.device, non_blocking=True)
            loss = self._train_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            else:
                norm = torch.zeros((), device=loss.device)
            shown = loss.detach().float()
            if self.dist.enabled:  # the global batch's loss: the mean of the processes' losses
                shown = self.dist.all_reduce_sum(shown / self.dist.world)
            loss_v, norm_v = torch.stack([shown, norm.detach().float()]).tolist()  # one sync
            if not (math.isfinite(loss_v) and math.isfinite(norm_v)):
                self.state["skipped"] += 1
                if not cfg.skip_nonfinite or self.state["skipped"] > cfg.max_skips:
                    what = "loss" if not math.isfinite(loss_v) else "gradient norm"
                    last = None if self.files is None else self.files.last
                    kept = (f"the last good checkpoint is kept in {last}" if last is not None and last.is_file()
                            else "no checkpoint was written yet")
                    advice = (f"more than train.max_skips={cfg.max_skips} batches were skipped; lower train.lr or "
                              f"check the data for extreme values" if cfg.skip_nonfinite else
                              "lower train.lr, check the data for extreme values, or set "
                              "train.skip_nonfinite=true to skip such batches")
                    raise NonFiniteLossError(
                        f"non-finite {what} ({loss_v if what == 'loss' else norm_v}) at epoch {epoch + 1}, "
                        f"batch {b + 1}; {kept}; {advice}")
                self.optimizer.zero_grad(set_to_none=True)
            else:
                self.optimizer.step()
                self.state["running_loss"] += loss_v
                self.state["running_count"] += 1
            seen += batch.x.shape[0] * self.dist.world
            self.state["batch"] = b + 1
            self.state["steps"] = self.state.get("steps", 0) + 1
            checkpoint = cfg.checkpoint_every and (b + 1) % cfg.checkpoint_every == 0 and b + 1 < n_batches
            self._cpu_count(sync=per_step or checkpoint)
            if bar is not None:
                self._show(bar, epoch, loss_v)
            if cfg.budget_stop == "step" and self.budget_spent():
                break  # validate what it has, save, stop
            if cfg.budget_stop == "step" and self._mark_due():
                self._validate_at_mark(epoch)
            if checkpoint:
                self.save(LAST)
                self._cpu_restart()
        seconds = time.perf_counter() - t0
        train_loss = self.state["running_loss"] / max(1, self.state["running_count"])
        lr = self.optimizer.param_groups[0]["lr"]
        self._cpu_count(sync=False)
        val = self.evaluate("val")["average"]
        self._cpu_count()  # validation counts against the budget
        self.scheduler.step()
        improved = val["mae"] < self.state["best_val"] - 1e-6
        self.state.update(epoch=epoch + 1, batch=0)
        if improved:
            self.state.update(best_val=val["mae"], best_epoch=epoch + 1, bad_epochs=0)
        else:
            self.state["bad_epochs"] += 1
        stop = bool(cfg.patience) and self.state["bad_epochs"] >= cfg.patience
        self.state["early_stopped"] = stop
        if self.budget_spent():
            self.state["budget_stopped"] = stop = True
        self._append_metrics({
            "epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_mae": round(val["mae"], 6),
            "val_rmse": round(val["rmse"], 6), "val_mape": round(val["mape"], 6), "lr": lr,
            "epoch_seconds": round(seconds, 3), "windows_per_s": round(seen / max(seconds, 1e-9), 2),
            "skipped_batches": self.state["skipped"]})
        if improved:
            self.save(BEST)
        self._take_snapshots()
        self.save(LAST)
        if bar is not None:
            used = (f"  CPU {self.state['cpu_seconds'] / 60:.2f} of {cfg.budget_minutes:g} min"
                    if self.budget_seconds else "")
            bar.write(f"epoch {epoch + 1}: train loss {train_loss:.4f}  val MAE {val['mae']:.4f}{used}"
                      f"{'  *' if improved else ''}")
        return stop

    # --------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predictions(self, split: str = "test", batch_size: int | None = None, shard: bool = False):
        """Yield ``(forecast, y, starts)`` per batch in data units.

        ``forecast`` is a tensor ``[B, T_out, N, C_out]`` or a distribution of that shape
        (:mod:`stgraph.distributions`), ``y``
        ``[B, T_out, N, C_out]``, ``starts`` ``[B]``. With ``shard`` (distributed) this process yields only
        its part of every batch of ``batch_size`` windows.
        """
        self.model.eval()
        part = (self.dist.rank, self.dist.world) if shard and self.dist.enabled else None
        for batch in self.data.loader(split, batch_size or self.cfg.batch_size, shuffle=False, shard=part,
                                      workers=self.cfg.workers):
            batch = batch.to(self.device, non_blocking=True)
            yield self.to_units(self._forward(batch)), batch.y, batch.starts

    @torch.no_grad()
    def evaluate(self, split: str = "test", horizons=None) -> dict:
        """Masked MAE/RMSE/MAPE per horizon step and averaged (plus coverage and CRPS when probabilistic).
        ``horizons`` (1-based steps) default to :func:`stgraph.metrics.default_steps` for this data.

        Distributed, each process predicts its part of the split and the sums and counts are added
        over the processes (``all_reduce``): the same figures as one process computing them all."""
        horizon = self.data.horizon
        if horizons is None:
            horizons = default_steps(horizon, self.data.interval_minutes)
        horizons = tuple(h for h in horizons if h <= horizon) or (horizon,)
        acc = MetricAccumulator(horizon, null_value=self.null_value)
        prob = None
        for out, y, _ in self.predictions(split, shard=True):
            if isinstance(out, Distribution):
                prob = prob if prob is not None else ProbabilisticAccumulator(horizon, self.null_value, y.device)
                prob.update(out, y)
                out = point(out)
            acc.update(out, y)
        if self.dist.enabled:
            acc.all_reduce(horizon, self.device)
            probabilistic = self.dist.all_reduce_sum(torch.tensor([float(prob is not None)], device=self.device))
            if probabilistic.item() > 0:
                prob = prob if prob is not None else ProbabilisticAccumulator(horizon, self.null_value, self.device)
                prob.all_reduce(self.dist)
        result = acc.compute(horizons)
        if prob is not None:
            extra = prob.compute(horizons)
            for key, vals in extra["horizons"].items():
                result["horizons"][key].update(vals)
            result["average"].update(extra["average"])
        return result


def fit_closed_form(module: torch.nn.Module, data) -> None:
    """Fit the closed-form parts of ``module`` (:func:`stgraph.models.registry.fit_closed_form`) on a
    :class:`~stgraph.data.ForecastData`."""
    from ..models.registry import ClosedForm
    from ..models.registry import fit_closed_form as fit
    from .prepare import closed_form_data

    if any(isinstance(m, ClosedForm) for m in module.modules()):
        fit(module, closed_form_data(data))
