"""Per-channel z-score scaling fitted on the training rows, ignoring nulls.

``mean[c]`` and ``std[c]`` are taken over all time steps and sensors of the
training rows where channel ``c`` is not null; ``std`` is the population
standard deviation (``ddof=0``). A channel whose training readings are all
equal gets ``std = 1`` so scaling only centres it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, SeriesError
from ..metrics import valid_mask

#: passes over a whole series go in row blocks of about this many values (256 KB of float32): their
#: temporaries (masks, float64 deviations) stay a few MB whatever the series' size
ROW_BLOCK_ELEMENTS = 1 << 16


class StandardScaler:
    """``z = (x - mean) / std`` per channel, over the last axis ``[..., C]``.

    Args:
        mean: ``[C]`` per-channel mean.
        std: ``[C]`` per-channel standard deviation (0 or non-finite becomes 1).
        channels: optional ``C`` channel names, kept for checkpoints and messages.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: Sequence[str] | None = None):
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.asarray(std, dtype=np.float64).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise ConfigError(f"scaler mean has {mean.size} values and std has {std.size}; "
                              f"expected one of each per channel (same non-zero length)")
        if not np.isfinite(mean).all():
            raise ConfigError(f"scaler mean {mean.tolist()} is not finite; refit the scaler on non-null data")
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        if channels is not None and len(channels) != mean.size:
            raise ConfigError(f"scaler has {mean.size} channels but {len(channels)} channel names {list(channels)}")
        self.mean = mean
        self.std = std
        self.channels = None if channels is None else [str(c) for c in channels]
        self._torch_cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    # -------------------------------------------------------------------- fit
    @classmethod
    def fit(cls, values: np.ndarray, null_value: float = 0.0, rows: tuple[int, int] | None = None,
            channels: Sequence[str] | None = None, index: Sequence[int] | None = None) -> "StandardScaler":
        """Fit on ``values [T, N, C]`` rows ``[start, stop)`` (all rows when ``None``), skipping nulls.

        ``index`` restricts the fit to those channels (in that order); ``channels``
        names the channels of ``values``. One streaming pass over row blocks: each
        block's count, mean and sum of squared deviations (float64) are merged into
        the running ones (Chan et al.'s pairwise update), so no full-size temporary is
        made and ``values`` may be a lazy array (:class:`~stgraph.io.lazy.H5Values`),
        read once.

        Raises:
            SeriesError: ``values`` is not 3-D, or a channel has no non-null reading in the rows.
        """
        if not hasattr(values, "take_rows"):  # a lazy array is read block by block, never whole
            values = np.asarray(values)
        if values.ndim != 3:
            raise SeriesError(f"scaler values have shape {values.shape}; expected [T, N, C]")
        start, stop = (0, values.shape[0]) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= start < stop <= values.shape[0]:
            raise SeriesError(f"scaler rows [{start}, {stop}) are empty or outside the series' "
                              f"{values.shape[0]} rows; pass the training row range")
        index = list(range(values.shape[2])) if index is None else [int(i) for i in index]
        if channels is not None:
            channels = [channels[i] for i in index]
        C = len(index)
        step = max(1, ROW_BLOCK_ELEMENTS // max(1, values.shape[1] * C))
        blocks = [(a, min(a + step, stop)) for a in range(start, stop, step)]

        count = np.zeros(C, dtype=np.int64)
        mean = np.zeros(C, dtype=np.float64)
        m2 = np.zeros(C, dtype=np.float64)
        for a, b in blocks:
            blk = values[a:b][:, :, index]
            ok = valid_mask(blk, null_value)
            n_b = ok.sum(axis=(0, 1))
            seen = n_b > 0
            if not seen.any():
                continue
            mean_b = np.where(ok, blk, 0).sum(axis=(0, 1), dtype=np.float64) / np.maximum(n_b, 1)
            dev = np.where(ok, blk - mean_b, 0.0)
            m2_b = np.einsum("tnc,tnc->c", dev, dev)
            n = count + n_b
            delta = mean_b - mean
            w = np.where(seen, n_b / np.maximum(n, 1), 0.0)
            mean = mean + delta * w
            m2 = m2 + np.where(seen, m2_b + delta * delta * count * w, 0.0)
            count = n
        empty = np.flatnonzero(count == 0)
        if empty.size:
            names = [channels[i] if channels is not None else i for i in empty]
            raise SeriesError(f"channel(s) {names} have no non-null reading in training rows "
                              f"[{start}, {stop}); cannot fit the scaler; check null_value or the split")
        return cls(mean, np.sqrt(m2 / count), channels)

    # -------------------------------------------------------------- transform
    @property
    def num_channels(self) -> int:
        return int(self.mean.size)

    def transform(self, x):
        """``(x - mean) / std`` for a numpy array or torch tensor ``[..., C]`` (or any shape when ``C == 1``)."""
        mean, std = self._params(x)
        return (x - mean) / std

    def inverse_transform(self, x):
        """``x * std + mean``; inverse of :meth:`transform`, same type, dtype and device as ``x``."""
        mean, std = self._params(x)
        return x * std + mean

    def select(self, index: Sequence[int]) -> "StandardScaler":
        """The scaler of a subset of channels, e.g. the target channels."""
        idx = list(index)
        names = None if self.channels is None else [self.channels[i] for i in idx]
        return StandardScaler(self.mean[idx], self.std[idx], names)

    def _params(self, x):
        C = self.num_channels
        if C != 1 and (x.ndim == 0 or x.shape[-1] != C):
            raise ConfigError(f"scaler has {C} channels {self.channels or ''} but the input has shape "
                              f"{tuple(x.shape)}; the last axis must be the {C} channels")
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            key = (str(x.device), dtype)
            got = self._torch_cache.get(key)
            if got is None:  # built once per device and dtype: no host->device copy per call
                got = (torch.as_tensor(self.mean, dtype=dtype, device=x.device),
                       torch.as_tensor(self.std, dtype=dtype, device=x.device))
                self._torch_cache[key] = got
            return got
        x_dtype = np.asarray(x).dtype
        dtype = x_dtype if np.issubdtype(x_dtype, np.floating) else np.float64
        return self.mean.astype(dtype), self.std.astype(dtype)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Plain floats and strings, safe for ``torch.load(weights_only=True)``."""
        return {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "channels": None if self.channels is None else list(self.channels)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "StandardScaler":
        """Rebuild from :meth:`state_dict`."""
        missing = [k for k in ("mean", "std") if k not in state]
        if missing:
            raise ConfigError(f"scaler state lacks {missing} (has {sorted(state)}); "
                              f"expected the dict written by StandardScaler.state_dict()")
        return cls(state["mean"], state["std"], state.get("channels"))

    def __repr__(self) -> str:
        return f"StandardScaler(mean={self.mean.tolist()}, std={self.std.tolist()}, channels={self.channels})"
