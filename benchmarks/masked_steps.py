"""MAE per horizon step on groups of forecast entries of a test split, for the covariate benches
(``bench_fusion.py``, ``bench_cross_modal.py``): each bench says which entries a group holds."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def masked_step_mae(trainer, masks_of: Callable, steps) -> dict:
    """``{group: [MAE at each step of steps], "count_" + group: [entries]}`` over ``trainer.predictions("test")``.

    ``masks_of(valid, rows, starts)`` gives ``{group: bool [B, T_out, N]}`` from ``valid`` (a reading that is not the
    null 0, ``[B, T_out, N]``), ``rows`` (each target's row in the series, ``[B, T_out]``) and ``starts`` ``[B]``
    (numpy arrays); errors are of the first target channel."""
    sums: dict = {}
    counts: dict = {}
    for out, y, starts in trainer.predictions("test"):
        rows = (starts[:, None] + trainer.data.input_len + torch.arange(trainer.data.horizon)).cpu().numpy()
        err = (out - y).abs()[..., 0].cpu().numpy()                     # [B, T_out, N]
        valid = (y[..., 0] != 0).cpu().numpy()
        for k, m in masks_of(valid, rows, starts.cpu().numpy()).items():
            s, c = sums.setdefault(k, np.zeros(len(steps))), counts.setdefault(k, np.zeros(len(steps)))
            for j, h in enumerate(steps):
                s[j] += err[:, h - 1][m[:, h - 1]].sum()
                c[j] += m[:, h - 1].sum()
    return {k: (sums[k] / np.maximum(counts[k], 1)).tolist() for k in sums} | {
        "count_" + k: counts[k].tolist() for k in counts}
