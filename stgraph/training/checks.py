"""What a run checks and decides from its data before it trains, and reports after: the windows of each
split (:func:`count_windows`, :func:`check_windows`), the settings the data choose (:func:`choose_defaults`),
the covariate gates of the best weights (:func:`report_gates`) and the peak memory (:func:`peak_memory`).
Messages go to ``logging.getLogger(__name__)``."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..config import RunConfig, with_fields
from ..errors import ConfigError
from ..files import atomic_write
from .layout import RunFiles
from .prepare import closed_form_data, target_positions

log = logging.getLogger(__name__)

#: how to get more windows, for the messages about too few
MORE_WINDOWS = "a longer series, other data.split ratios or a shorter data.input_len / data.horizon"


def count_windows(data) -> dict[str, int]:
    """``{'train': n, 'val': n, 'test': n}``, the windows of each split, logged once."""
    n = {k: int(data.split_starts(k).numel()) for k in ("train", "val", "test")}
    log.info(f"windows: {n['train']} train, {n['val']} validation, {n['test']} test "
             f"(input {data.input_len} + horizon {data.horizon} steps each)")
    return n


def split_windows(data, split: str) -> tuple[int, str | None]:
    """The windows of ``split`` and, when there are fewer than
    :data:`~stgraph.models.seasonal.MIN_VALIDATION_WINDOWS`, a sentence saying what its figures rest on
    (``evaluate`` reports both)."""
    from ..models.seasonal import MIN_VALIDATION_WINDOWS

    n = int(data.split_starts(split).numel())
    if n >= MIN_VALIDATION_WINDOWS:
        return n, None
    return n, (f"the {split} figures rest on only {n} windows (fewer than {MIN_VALIDATION_WINDOWS}; neighbouring "
               f"windows overlap, so they are fewer independent cases still): differences of a few percent between "
               f"runs are within noise; for more: {MORE_WINDOWS}")


def check_windows(cfg: RunConfig, windows: dict[str, int]) -> None:
    """For a model that trains: refuse a training split smaller than one batch before anything is written,
    and warn when the validation split has fewer than :data:`~stgraph.models.seasonal.MIN_VALIDATION_WINDOWS`
    windows (the best checkpoint, early stopping and stgt's residual choice rest on them); say when a CPU
    budget may end the run before its epochs."""
    from ..models.seasonal import MIN_VALIDATION_WINDOWS

    if windows["train"] < cfg.train.batch_size:
        raise ConfigError(f"the training split has {windows['train']} windows, fewer than one batch "
                          f"(train.batch_size = {cfg.train.batch_size}); use train.batch_size = "
                          f"{max(1, windows['train'])} or less, or more windows: {MORE_WINDOWS}")
    if windows["val"] < MIN_VALIDATION_WINDOWS:
        what = ["the best checkpoint"] + (["early stopping"] if cfg.train.patience else []) + \
            (["stgt's residual"] if cfg.model.name == "stgt" else [])
        log.warning(f"model selection ({', '.join(what)}) rests on only {windows['val']} validation windows "
                    f"(fewer than {MIN_VALIDATION_WINDOWS}); for more: {MORE_WINDOWS}")
    if cfg.train.budget_minutes:
        log.info(f"training: up to {cfg.train.epochs} epochs or {cfg.train.budget_minutes:g} CPU minutes, whichever "
                 f"comes first (train.budget_minutes = 0 trains for the epochs alone)")


def choose_defaults(cfg: RunConfig, data) -> RunConfig:
    """``cfg`` with the settings the data decide (so ``config.yaml`` records them): stgt's
    ``model.params.residual`` when not given is ``'blend'`` (last value and seasonal average, learned)
    where the seasonal average beats last value on enough validation windows by a margin they support,
    else ``'last'`` (:func:`stgraph.models.seasonal.choose_residual`)."""
    if cfg.model.name != "stgt" or "residual" in cfg.model.params or target_positions(data) is None:
        return cfg
    from ..models.seasonal import choose_residual

    r = choose_residual(closed_form_data(data))
    cfg = with_fields(cfg, {"model.params": {**cfg.model.params, "residual": r.choice}})
    where = {"val": "validation", "train": "training"}[r.split]
    log.info(f"stgt residual: {r.choice} ({where} MAE over all steps, {r.windows} windows: last value "
             f"{r.last_mae:.4g}, seasonal average {r.ha_mae:.4g}; {r.reason}; model.params.residual = last or "
             f"blend chooses)")
    return cfg


def report_gates(forecaster, out: Path | None) -> dict | None:
    """The fusion gates (which covariate source mattered, per horizon step) of the
    :class:`~stgraph.training.forecaster.Forecaster`'s model as it is (after training, the best epoch's weights:
    :meth:`~stgraph.training.trainer.Trainer.restore_best`), logged and written to ``out/gates.json``; ``None`` for
    a model without gates."""
    model = forecaster.model
    gates = model.gates() if hasattr(model, "gates") else None
    if not gates:
        return None
    from ..metrics import default_steps
    from ..nn.fusion import gate_table

    data = forecaster.data
    steps = [h for h in default_steps(data.horizon, data.interval_minutes) if h <= data.horizon]
    log.info("covariate gates (0 = source switched off, 1 = fully on), input window and horizon steps:\n"
             + gate_table(gates, steps))
    if out is not None:
        atomic_write(RunFiles(out).gates, json.dumps(gates, indent=1))
    return gates


def peak_memory(device) -> dict:
    """Peak resident memory of this process (MiB) and, on CUDA, peak allocated device memory (MiB)."""
    import resource
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.device(device).type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


__all__ = ["MORE_WINDOWS", "count_windows", "split_windows", "check_windows", "choose_defaults", "report_gates", "peak_memory"]
