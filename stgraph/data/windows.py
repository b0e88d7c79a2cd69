"""Sliding windows as index arithmetic over one ``[T, N, C]`` array.

No window is ever materialised. Window ``k`` starts at row ``s_k = k * stride``;
its input rows are ``[s_k, s_k + input_len)`` and its target rows are
``[s_k + input_len, s_k + input_len + horizon)``. A batch of windows is read
with one vectorised gather per tensor: ``values[starts[:, None] + arange(L)]``
(done as one ``index_select`` of the flattened rows, see :func:`take_rows`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError, SeriesError


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ConfigError(f"{name} is {value!r}; expected an integer >= 1 "
                          f"(number of time steps); pass e.g. {name}=12")
    return int(value)


class WindowIndex:
    """All sliding windows over a series of ``num_steps`` rows.

    Args:
        num_steps: ``T``, rows in the series.
        input_len: ``T_in``, rows the model sees.
        horizon: ``T_out``, rows the model predicts, right after the input.
        stride: rows between the starts of consecutive windows.

    Raises:
        ConfigError: a length or the stride is not an integer >= 1.
        SeriesError: the series is shorter than one window.
    """

    def __init__(self, num_steps: int, input_len: int, horizon: int, stride: int = 1) -> None:
        self.input_len = _positive_int("input_len", input_len)
        self.horizon = _positive_int("horizon", horizon)
        self.stride = _positive_int("stride", stride)
        self.num_steps = int(num_steps)
        if self.num_steps < self.span:
            raise SeriesError(
                f"series has {self.num_steps} time steps but one window needs input_len + horizon = "
                f"{self.input_len} + {self.horizon} = {self.span}; use a longer series or shorter windows")
        self._offset_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def span(self) -> int:
        """Rows covered by one window: ``input_len + horizon``."""
        return self.input_len + self.horizon

    def __len__(self) -> int:
        return (self.num_steps - self.span) // self.stride + 1

    @property
    def starts(self) -> np.ndarray:
        """``[len]`` int64 first row of every window, ascending."""
        return np.arange(len(self), dtype=np.int64) * self.stride

    def __repr__(self) -> str:
        return (f"WindowIndex(num_steps={self.num_steps}, input_len={self.input_len}, "
                f"horizon={self.horizon}, stride={self.stride}, windows={len(self)})")

    # ---------------------------------------------------------------- indices
    def _offsets(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and target row offsets on ``device``, cached so a GPU loop never re-uploads them."""
        key = str(device)
        got = self._offset_cache.get(key)
        if got is None:
            got = (torch.arange(self.input_len, device=device),
                   torch.arange(self.input_len, self.span, device=device))
            self._offset_cache[key] = got
        return got

    def input_rows(self, starts: torch.Tensor) -> torch.Tensor:
        """``[B, T_in]`` row numbers of the inputs of windows starting at ``starts [B]``."""
        return starts[:, None] + self._offsets(starts.device)[0]

    def target_rows(self, starts: torch.Tensor) -> torch.Tensor:
        """``[B, T_out]`` row numbers of the targets of windows starting at ``starts [B]``."""
        return starts[:, None] + self._offsets(starts.device)[1]

    def gather(self, values: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Read a batch of windows.

        Args:
            values: ``[T, N, C]`` (any trailing shape) tensor with ``T == num_steps``.
            starts: ``[B]`` int64 window starts (from :attr:`starts`), on ``values.device``.

        Returns:
            ``x [B, T_in, N, C]`` and ``y [B, T_out, N, C]``, each read with one vectorised gather.
        """
        if values.shape[0] != self.num_steps:
            raise SeriesError(f"values have {values.shape[0]} rows but the window index was built "
                              f"for {self.num_steps}; build WindowIndex from the same series")
        starts = torch.as_tensor(starts, dtype=torch.long, device=values.device)
        return take_rows(values, self.input_rows(starts)), take_rows(values, self.target_rows(starts))


def take_rows(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``values[rows]`` for ``values [T, ...]`` and ``rows [B, L]`` -> ``[B, L, ...]``, one gather.

    Same result as advanced indexing, done as one ``index_select`` on the
    flattened rows, which is about twice as fast on CPU. A lazy array (``values``
    with a ``take_rows`` method, e.g. :class:`~stgraph.io.lazy.H5Channels`) gathers
    the rows from its file.
    """
    if not isinstance(values, torch.Tensor):
        return values.take_rows(rows)
    return values.index_select(0, rows.reshape(-1)).view(*rows.shape, *values.shape[1:])


def contiguous_mask(starts: np.ndarray, timestamps: np.ndarray, span: int) -> np.ndarray:
    """``[len(starts)]`` bool, True where the window's ``span`` rows have no time gap.

    A gap is a step between consecutive rows longer than the series interval
    (the smallest step). Windows that straddle one mix distant times and are
    dropped by :class:`~stgraph.data.dataset.ForecastData`.
    """
    ts = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    if ts.size < 2:
        return np.ones(starts.shape, dtype=bool)
    d = np.diff(ts)
    is_gap = d > d.min()
    cum = np.concatenate([[0], np.cumsum(is_gap, dtype=np.int64)])
    # steps inside the window: s -> s+1, ..., s+span-2 -> s+span-1
    return (cum[starts + span - 1] - cum[starts]) == 0
