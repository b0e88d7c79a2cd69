"""One trainer for every model: :class:`Trainer` fits a :class:`~stgraph.training.forecaster.Forecaster`
and checkpoints it.

* loss: ``loss=`` (:mod:`stgraph.training.losses`; default the masked MAE in the data's own units, or the
  masked negative log-likelihood of a probabilistic head's distribution; :class:`~.losses.FedProx` adds a
  proximal term); batches: ``batches=`` (:mod:`stgraph.training.batches`; default the shuffled training
  windows, an online update replays old ones beside them);
* AdamW, cosine or multi-step learning-rate schedule with optional warm-up (:mod:`stgraph.training.schedule`),
  gradient clipping, early stopping on validation MAE;
* seeds that make a CPU run repeatable, bf16 autocast and ``torch.compile`` when asked for and available;
* atomic checkpoints through the run writer (``writer=``, :class:`~stgraph.training.writer.RunWriter`:
  ``last.pt`` every epoch and, with ``checkpoint_every``, every k batches; ``best.pt`` on improvement) holding
  weights, optimiser, scheduler, RNG states, scaler, config and a data/graph fingerprint;
  ``fit(resume=True)`` continues an interrupted run exactly;
* a tqdm bar with loss, learning rate and ETA (with a budget: the CPU seconds used of it,
  :mod:`stgraph.training.progress`); one row per epoch in ``metrics.csv`` (:mod:`stgraph.training.history`);
* a training budget in CPU time (``train.budget_minutes``) and snapshot marks: :mod:`stgraph.training.budget`;
* data parallel under ``torchrun`` (:mod:`stgraph.training.distributed`): when this process is one of ``K``
  in a ``torch.distributed`` group, the model is wrapped in ``DistributedDataParallel``, every global batch
  of ``train.batch_size`` windows is split into ``K`` parts, the metrics are summed over the processes and
  rank 0 alone writes files.

Models without trainable parameters (last value, historical average, VAR) are fitted in closed form
through the registry's declared hook (:class:`~stgraph.models.registry.ClosedForm`) and not trained.

Fine-tuning is a Trainer call too: a forecaster whose model holds the weights to start from, a config with
the fine-tuning's epochs and learning rate, and ``fit()``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..errors import ConfigError, StgraphError
from ..metrics import valid_mask
from .batches import TrainingWindows
from .budget import CpuBudget, check_marks
from .checkpoint import load_checkpoint
from .forecaster import Forecaster
from .history import EpochTable
from .layout import BEST, LAST
from .losses import masked_loss, masked_loss_sum
from .progress import TrainingBar
from .schedule import lr_factor


class NonFiniteLossError(StgraphError, FloatingPointError):
    """The training loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) so that a CPU run is repeatable."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _fresh_state() -> dict:
    return {"epoch": 0, "batch": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0, "skipped": 0,
            "running_loss": 0.0, "running_count": 0, "finished": False, "early_stopped": False,
            "cpu_seconds": 0.0, "steps": 0, "budget_stopped": False, "snapshots": []}


class Trainer:
    """Fit ``forecaster`` (its model on its data over its graph) as ``cfg`` says, and checkpoint it.

    Args:
        forecaster: the :class:`~stgraph.training.forecaster.Forecaster` to train.
        cfg: a :class:`~stgraph.config.TrainConfig` (epochs, rate, schedule, budget ...).
        loss: ``loss(forecaster, out, y) -> scalar`` (:mod:`stgraph.training.losses`; default
            :func:`~stgraph.training.losses.masked_loss`).
        batches: the batch source of the training steps (:mod:`stgraph.training.batches`; default the
            forecaster's data's shuffled training windows).
        writer: the run's :class:`~stgraph.training.writer.RunWriter`: checkpoints and ``metrics.csv`` go into
            its folder (``None``: keep nothing on disk).
        record: the :class:`~stgraph.training.writer.RunRecord` checkpoint dicts carry (default the writer's).
        snapshot_marks: CPU minutes at which to keep a copy of ``best.pt`` (``checkpoints/best@<m>m.pt``),
            so that one run serves several budgets (:mod:`stgraph.training.budget`); ``None``: none.
        keep_best: also keep a copy of the best validation epoch's weights in memory (for a run with no
            folder to write ``best.pt`` to), for :meth:`restore_best`.

    Inside a ``torch.distributed`` process group (``torchrun``) the trainer is data parallel:
    ``cfg.batch_size`` is the global batch and must be divisible by the number of processes; there the loss
    is the masked loss of the global batch (``loss=`` is not supported).
    """

    def __init__(self, forecaster: Forecaster, cfg, *, loss=None, batches=None, writer=None, record=None,
                 snapshot_marks=None, keep_best: bool = False):
        self.cfg = cfg
        self.keep_best = bool(keep_best)
        self.best_weights: dict | None = None  # with keep_best: the best epoch's state dict
        self.forecaster = f = forecaster
        self.model, self.data, self.dist, self.device = f.model, f.data, f.dist, f.device
        self.budget = CpuBudget(cfg.budget_minutes, check_marks(snapshot_marks, cfg), self.dist, self.device)
        self.loss_fn = loss or masked_loss
        if loss is not None and self.dist.enabled:
            raise ConfigError("a custom loss= is not supported in data-parallel training (torchrun)")
        self.batches = batches if batches is not None else TrainingWindows(f.data)
        self.writer = writer
        self.record = record if record is not None else getattr(writer, "record", None)
        self.files = writer.files if writer is not None else None
        self.epochs_table = EpochTable(self.files.metrics if self.files is not None and self.dist.is_main else None)
        self.trainable = f.trainable
        self.train_model = f.forward_model  # what training steps call: DDP-wrapped when distributed
        if self.dist.enabled and self.trainable:
            self.dist.per_rank_batch(cfg.batch_size)
            from torch.nn.parallel import DistributedDataParallel
            ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                          else None)
            self.train_model = f.compiled(ddp)
        self.state = _fresh_state()
        self.optimizer = None
        self.scheduler = None
        if self.trainable:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    # --------------------------------------------------------------------------- schedule
    def _budget_schedule(self) -> bool:
        """Whether the learning rate follows the CPU budget (cosine with ``train.budget_minutes``)."""
        return self.budget.seconds > 0 and self.cfg.scheduler == "cosine"

    def _budget_ends_first(self) -> bool:
        """Whether the CPU budget, at the CPU seconds per epoch so far, ends before the last epoch (and so
        governs a cosine schedule); ``False`` during the first epoch, which has no rate to project from. A run
        whose epochs end first keeps the epoch cosine exactly, whatever its CPU times (repeatable)."""
        if not self._budget_schedule():
            return False
        epochs = self.state["epoch"] + self.state["batch"] / max(1, getattr(self, "_n_batches", 1))
        cpu = self.state.get("cpu_seconds", 0.0)
        return epochs >= 1 and cpu > 0 and self.budget.seconds * epochs / cpu < self.cfg.epochs

    def _lr_factor(self, epoch: int) -> float:
        budget_done = self.state["cpu_seconds"] / self.budget.seconds if self._budget_ends_first() else None
        return lr_factor(self.cfg, epoch, budget_done)

    def _apply_lr(self, epoch: int) -> None:
        """Set every parameter group's rate to its base times :meth:`_lr_factor` now (the budget's cosine
        changes it every step)."""
        factor = self._lr_factor(epoch)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * factor

    def budget_spent(self) -> bool:
        """Whether the run has used its CPU budget (``False`` without one)."""
        return self.budget.spent(self.state)

    def _validate_at_mark(self, epoch: int) -> None:
        """``budget_stop`` 'step': at the first step past a mark, do what a run with that budget does before it
        stops (validate, keep ``best.pt`` when it improved), take the snapshot, and train on. Validation in
        eval mode draws no random numbers, so the steps after it are those of a run without marks."""
        self.budget.count(self.state, sync=False)
        val = self.forecaster.evaluate("val")["average"]
        self.budget.count(self.state)  # validation counts against the budget, as the stopping run's does
        if val["mae"] < self.state["best_val"] - 1e-6:
            self.state.update(best_val=val["mae"], best_epoch=epoch + 1, bad_epochs=0)
            self.save(BEST)
        self.budget.take_snapshots(self.state, self.files)
        self.model.train()

    # --------------------------------------------------------------------------- loss
    def loss(self, out, y: torch.Tensor) -> torch.Tensor:
        """The training loss of the model's output ``out`` (z-scored ``[B, T_out, N, C_out]`` or a ``Normal``)
        against ``y`` (data units, the same shape): a scalar."""
        return self.loss_fn(self.forecaster, out, y)

    def _train_loss(self, batch) -> torch.Tensor:
        """The loss of one training step on this process's part of the global batch.

        Distributed, it is ``sum_r * K / count`` where ``count`` is the masked count of the whole global
        batch (one ``all_reduce``): DDP averages gradients over the ``K`` processes, so the update is the
        single-process update of the global batch's masked mean."""
        if not self.dist.enabled:
            return self.loss(self.forecaster.forward(batch, self.train_model), batch.y)
        count = valid_mask(batch.y, self.forecaster.null_value).sum(dtype=torch.float64)
        self.dist.all_reduce_sum(count)
        total, _ = masked_loss_sum(self.forecaster, self.forecaster.forward(batch, self.train_model), batch.y)
        return total * (self.dist.world / count.clamp(min=1)).to(total.dtype)

    # --------------------------------------------------------------------------- checkpoints
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
        """The checkpoint dict of now (:meth:`stgraph.training.writer.RunRecord.checkpoint`)."""
        parts = dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict() if self.optimizer else {},
                     scheduler=self.scheduler.state_dict() if self.scheduler else {}, trainer=dict(self.state),
                     rng=self._rng_state(), scaler=self.data.scaler.state_dict())
        if self.record is None:
            return parts
        return self.record.checkpoint(**parts)

    def save(self, name: str = LAST) -> Path | None:
        """Write checkpoint ``name`` (``last.pt`` or ``best.pt``; rank 0 only when distributed); the path, or
        ``None`` when nothing was written."""
        if self.writer is None or not self.dist.is_main:
            return None
        return self.writer.save(name, self.checkpoint_state())

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

    def restore_best(self) -> bool:
        """Load the best validation epoch's weights into the model: ``best.pt`` of the run's folder, or the copy
        kept in memory (``keep_best``). A finished run then answers with the weights it is reopened with
        (:meth:`stgraph.training.run.Run.open` loads ``best.pt``), not with its last epoch's. Whether weights
        were loaded (``False``: a closed-form model, nothing validated, or a process other than rank 0)."""
        if not self.trainable or not self.dist.is_main:
            return False
        if self.best_weights is not None:
            state = self.best_weights
        elif self.files is not None and self.files.best.is_file():
            state = load_checkpoint(self.files.best, map_location=self.device)["model"]
        else:
            return False
        self.model.load_state_dict(state)
        return True

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)

    # --------------------------------------------------------------------------- training
    def fit(self, resume: bool = False) -> dict:
        """Train until ``epochs``, early stopping or the budget; returns the trainer state.

        With ``resume`` the run continues from the writer's ``checkpoints/last.pt``.
        """
        try:
            return self._fit(resume)
        finally:
            # drop the DDP wrapper: it holds the process group, which must go before the interpreter
            # does (gloo's threads abort the process when they are torn down at exit)
            self.train_model = self.forecaster.forward_model

    def _resume(self) -> bool:
        """Load ``last.pt``; whether the run has nothing more to do (finished and not extended)."""
        self.load_state(load_checkpoint(self.files.last, map_location=self.device))
        if self.dist.is_main:
            self.epochs_table.trim(self.state["epoch"])
        if not self.state.get("finished"):
            return False
        if self.state.get("early_stopped") or self.state["epoch"] >= self.cfg.epochs:
            return True
        if self.budget_spent():  # a budget no larger than what the run used: nothing more to do
            self.state["budget_stopped"] = True
            return True
        self.state.update(finished=False, budget_stopped=False)  # extended: more epochs or budget
        return False

    def _fit(self, resume: bool) -> dict:
        self.budget.restart()
        fit_closed_form(self.model, self.data)
        if not self.trainable:
            self.budget.count(self.state)  # the fitting time: what a closed-form model costs
            self.state.update(finished=True, best_epoch=0)
            self.save(LAST)
            self.save(BEST)
            return self.state
        if resume and self._resume():
            return self.state
        cfg = self.cfg
        n_batches = self.batches.count(cfg.batch_size)
        if cfg.max_batches:
            n_batches = min(n_batches, cfg.max_batches)
        self._n_batches = n_batches
        if n_batches == 0:
            raise StgraphError(f"the training split has fewer windows than one batch ({cfg.batch_size}); "
                               f"lower train.batch_size or use more data")
        bar = (TrainingBar(cfg.epochs, n_batches, self.budget.seconds, self.state)
               if cfg.progress and self.dist.is_main else None)
        try:
            while self.state["epoch"] < cfg.epochs:
                if self.budget_spent():  # a run stopped between its last epoch and 'finished'
                    self.state["budget_stopped"] = True
                    break
                if self._train_epoch(n_batches, bar):
                    break
        finally:
            if bar is not None:
                bar.close()
        if not self.state.get("budget_stopped"):
            # it ended before the marks left for another reason: they are this
            self.budget.take_snapshots(self.state, self.files, final=True)
        self.state["finished"] = True
        self.save(LAST)
        return self.state

    def _step(self, batch, epoch: int, b: int) -> float:
        """One optimiser step on ``batch`` (skipped when its loss or gradient norm is not finite, as
        ``train.skip_nonfinite`` allows); the loss of the global batch."""
        cfg = self.cfg
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
                raise self._nonfinite(loss_v, norm_v, epoch, b)
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.step()
            self.state["running_loss"] += loss_v
            self.state["running_count"] += 1
        return loss_v

    def _nonfinite(self, loss_v: float, norm_v: float, epoch: int, b: int) -> NonFiniteLossError:
        cfg = self.cfg
        what = "loss" if not math.isfinite(loss_v) else "gradient norm"
        last = None if self.files is None else self.files.last
        kept = (f"the last good checkpoint is kept in {last}" if last is not None and last.is_file()
                else "no checkpoint was written yet")
        advice = (f"more than train.max_skips={cfg.max_skips} batches were skipped; lower train.lr or "
                  f"check the data for extreme values" if cfg.skip_nonfinite else
                  "lower train.lr, check the data for extreme values, or set "
                  "train.skip_nonfinite=true to skip such batches")
        return NonFiniteLossError(f"non-finite {what} ({loss_v if what == 'loss' else norm_v}) at epoch "
                                  f"{epoch + 1}, batch {b + 1}; {kept}; {advice}")

    def _train_epoch(self, n_batches: int, bar) -> bool:
        cfg = self.cfg
        epoch = self.state["epoch"]
        start_batch = self.state["batch"]
        if start_batch == 0:
            self.state["running_loss"], self.state["running_count"] = 0.0, 0
        # one permutation of the windows per epoch, whatever the number of processes; each process
        # gathers its part of every global batch, from the batch a resumed epoch stopped at
        loader = self.batches.epoch(cfg.batch_size, generator=self._epoch_generator(epoch), start=start_batch,
                                    shard=(self.dist.rank, self.dist.world) if self.dist.enabled else None,
                                    workers=cfg.workers)
        self.model.train()
        t0 = time.perf_counter()
        seen = 0
        # every step syncs the CPU count when the budget decides (stop, rate); else it is added at the epoch's end
        per_step = self.budget.seconds > 0 or not self.dist.enabled
        self.budget.restart()
        for b, batch in enumerate(loader, start=start_batch):
            if b >= n_batches:
                break
            if self._budget_schedule():
                self._apply_lr(epoch)
            loss_v = self._step(batch, epoch, b)
            seen += batch.x.shape[0] * self.dist.world
            self.state["batch"] = b + 1
            self.state["steps"] = self.state.get("steps", 0) + 1
            checkpoint = cfg.checkpoint_every and (b + 1) % cfg.checkpoint_every == 0 and b + 1 < n_batches
            self.budget.count(self.state, sync=per_step or checkpoint)
            if bar is not None:
                bar.step(epoch, loss_v, self.optimizer.param_groups[0]["lr"], self.state["cpu_seconds"])
            if cfg.budget_stop == "step" and self.budget_spent():
                break  # validate what it has, save, stop
            if cfg.budget_stop == "step" and self.budget.mark_due(self.state):
                self._validate_at_mark(epoch)
            if checkpoint:
                self.save(LAST)
                self.budget.restart()
        return self._end_epoch(epoch, time.perf_counter() - t0, seen, bar)

    def _end_epoch(self, epoch: int, seconds: float, seen: int, bar) -> bool:
        """Validate, step the schedule, keep the best weights, write the epoch's row and checkpoints; whether
        training stops (early stopping or the budget)."""
        cfg = self.cfg
        train_loss = self.state["running_loss"] / max(1, self.state["running_count"])
        lr = self.optimizer.param_groups[0]["lr"]
        self.budget.count(self.state, sync=False)
        val = self.forecaster.evaluate("val")["average"]
        self.budget.count(self.state)  # validation counts against the budget
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
        self.epochs_table.append({
            "epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_mae": round(val["mae"], 6),
            "val_rmse": round(val["rmse"], 6), "val_mape": round(val["mape"], 6), "lr": lr,
            "epoch_seconds": round(seconds, 3), "windows_per_s": round(seen / max(seconds, 1e-9), 2),
            "skipped_batches": self.state["skipped"]})
        if improved:
            self.save(BEST)
            if self.keep_best:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.budget.take_snapshots(self.state, self.files)
        self.save(LAST)
        if bar is not None:
            bar.epoch_done(epoch, train_loss, val["mae"], improved, self.state["cpu_seconds"], cfg.budget_minutes)
        return stop


def fit_closed_form(module: torch.nn.Module, data) -> None:
    """Fit the closed-form parts of ``module`` (:func:`stgraph.models.registry.fit_closed_form`) on a
    :class:`~stgraph.data.ForecastData`."""
    from ..models.registry import ClosedForm
    from ..models.registry import fit_closed_form as fit
    from .prepare import closed_form_data

    if any(isinstance(m, ClosedForm) for m in module.modules()):
        fit(module, closed_form_data(data))


__all__ = ["Trainer", "NonFiniteLossError", "seed_everything", "fit_closed_form"]
