"""The forecasting dataset, :class:`ForecastData`: the raw series once, batches gathered and scaled on the fly.

:class:`ForecastData` keeps, for the whole series:

* ``raw_inputs`` ``[T, N, C_in]`` and ``targets`` ``[T, N, C_out]`` float32 in
  data units, nulls kept as ``null_value``. When the channels are a contiguous
  range of a writeable float32 CPU series these are zero-copy views of
  ``series.values`` (mutating the series afterwards changes them); otherwise
  one copy each;
* ``tod [T]`` float32 and ``dow [T]`` int64 calendar covariates.

Windows are never materialised: a :class:`Batch` is read from these tensors
with one vectorised gather per tensor (see :class:`~stgraph.data.windows.WindowIndex`),
and only the gathered inputs are z-scored with the training-row scaler (nulls
set to 0, the training mean), so preparing METR-LA-sized data costs about the
raw array and nothing more. Windows that straddle a gap in the timestamps are
dropped before splitting.

From a lazy series (``read_series(path, lazy=True)``) ``raw_inputs`` and ``targets``
are :class:`~stgraph.io.lazy.H5Channels` views of the HDF5 file instead of tensors:
the scaler, the fingerprint and the dead-sensor check stream over row blocks, and
every batch is gathered from the file through the chunk cache (on the CPU), giving
the same batches as the loaded series.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, SeriesError, StgraphWarning, where
from ..io.covariates import Source
from ..io.series import Series, infer_interval
from ..metrics import valid_mask
from ..runtime import resolve_device
from .batches import Batch, BatchLoader
from .calendar import day_of_week, steps_per_day, time_of_day
from .covariates import Exogenous
from .fit import check_window, parse_at
from .scaler import ROW_BLOCK_ELEMENTS, StandardScaler
from .split import SPLIT_NAMES, Split, make_split, training_rows
from .windows import WindowIndex, contiguous_mask, take_rows

__all__ = ["Batch", "BatchLoader", "ForecastData"]


class ForecastData:
    """Scaled inputs, raw targets, calendar covariates and the window split of one series.

    Build it with :meth:`from_series`. Attributes:

    * ``raw_inputs [T, N, C_in]``, ``targets [T, N, C_out]``, ``tod [T]``, ``dow [T]``: see the module
      docstring (``inputs`` computes the whole scaled input series on demand);
    * ``windows`` (:class:`WindowIndex`), ``split`` (:class:`Split`), ``dropped_windows`` (over time gaps);
    * ``scaler`` (input channels), ``target_scaler`` (target channels, same training-row statistics);
    * ``null_value``, ``steps_per_day``, ``timestamps``, ``sensor_ids``, ``channel_names``;
    * ``input_channels`` / ``target_channels``: indices into the series' channels
      (``input_channel_names`` / ``target_channel_names`` give the names);
    * ``num_nodes``, ``in_channels``, ``out_channels``, ``input_len``, ``horizon``, ``device``.
    """

    def __init__(self, *, raw_inputs: torch.Tensor, targets: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor,
                 windows: WindowIndex, split: Split, scaler: StandardScaler, target_scaler: StandardScaler,
                 null_value: float, steps_per_day: int, timestamps: np.ndarray, sensor_ids: Sequence[str],
                 channel_names: Sequence[str], input_channels: Sequence[int], target_channels: Sequence[int],
                 fingerprint: str, dropped_windows: int = 0, dead_sensors: Sequence[str] = (),
                 exogenous: Exogenous | None = None, dynamic_graph=None) -> None:
        self.raw_inputs = raw_inputs
        self.targets = targets
        self.tod = tod
        self.dow = dow
        self.windows = windows
        self.split = split
        self.scaler = scaler
        self._set_input_stats(scaler)
        self.target_scaler = target_scaler
        self.null_value = float(null_value)
        self.steps_per_day = int(steps_per_day)
        self.timestamps = timestamps
        self.sensor_ids = list(sensor_ids)
        self.channel_names = list(channel_names)
        self.input_channels = [int(i) for i in input_channels]
        self.target_channels = [int(i) for i in target_channels]
        self.dropped_windows = int(dropped_windows)
        self._fingerprint = fingerprint
        self._split_starts: dict[str, torch.Tensor] = {}
        #: sensors whose target channels hold no reading at all (see :func:`_dead_sensors`)
        self.dead_sensors: list[str] = list(dead_sensors)
        #: covariates from files (:class:`stgraph.data.covariates.Exogenous`), from ``from_series(covariates=...)``
        self.exogenous = exogenous
        #: a graph per period aligned to the steps (:class:`stgraph.graph.dynamic.DynamicGraph`): batches then carry
        #: each window's graph, that of its last input step (``Batch.graph``); ``None``: one static graph
        self.dynamic_graph = None if dynamic_graph is None else dynamic_graph.to(raw_inputs.device)

    # ---------------------------------------------------------------- build
    @classmethod
    def from_series(cls, series: Series, *, input_len: int = 12, horizon: int = 12, stride: int = 1,
                    split=(0.7, 0.1, 0.2), target: int | str | Sequence[int | str] = 0,
                    input_channels: int | str | Sequence[int | str] | None = None,
                    device: str | torch.device = "cpu", covariates: Sequence[Source] | None = None,
                    covariate_stats: dict | None = None, dynamic_graph=None, split_gap: int = 0) -> "ForecastData":
        """Window, split, scale and place a :class:`~stgraph.io.series.Series`.

        Args:
            series: values ``[T, N, C]``.
            input_len: ``T_in`` steps the model sees.
            horizon: ``T_out`` steps it predicts.
            stride: steps between consecutive window starts.
            split: ratios ``(train, val, test)``, boundaries ``(train_end, val_end)``,
                a mapping with those keys, or a :class:`Split`; see :mod:`stgraph.data.split`.
            target: channel(s) to predict, by name or index.
            input_channels: channel(s) the model sees; ``None`` means all.
            device: where the tensors live (batches are gathered there).
            covariates: covariate sources aligned to ``series``
                (:func:`stgraph.io.covariates.read_covariates`); batches then carry them as
                ``exo_in`` / ``exo_out`` (:class:`~stgraph.data.covariates.Exogenous`), scaled with the
                statistics of the training rows, or with ``covariate_stats`` (a saved
                ``Exogenous.state_dict()``, e.g. a checkpoint's) when given.
            covariate_stats: see ``covariates``.
            dynamic_graph: a :class:`~stgraph.graph.dynamic.DynamicGraph` aligned to ``series``: batches carry
                per-window graphs (``Batch.graph``).
            split_gap: steps left unused between splits, windows reaching into them dropped
                (:func:`~stgraph.data.split.apply_gap`; 0: none, the published protocol).

        Raises:
            ConfigError: bad lengths, split, channels or device.
            SeriesError: the series is too short, the training split is empty, or a
                channel has no reading in the training rows.
        """
        if not isinstance(series, Series):
            raise ConfigError(f"series is a {type(series).__name__}; expected a stgraph.io.series.Series")
        device = resolve_device(device, "device")
        in_idx = _channels(series, "input_channels", input_channels)
        out_idx = _channels(series, "target", target)

        try:
            windows = WindowIndex(series.num_steps, input_len, horizon, stride)
        except SeriesError as exc:
            raise SeriesError(f"{where(series.source)}: {exc} (data.input_len / data.horizon)") from None
        starts = windows.starts
        keep = contiguous_mask(starts, series.timestamps, windows.span)
        dropped = int((~keep).sum())
        starts = starts[keep]
        splits = make_split(split, starts, series.timestamps, windows.span, split_gap)
        try:
            rows = training_rows(splits, windows.span)
        except SeriesError as exc:
            raise SeriesError(f"{where(series.source)}: {exc} ({len(starts)} windows in all"
                              f"{f', {dropped} dropped over time gaps' if dropped else ''})") from None
        used = sorted(set(in_idx) | set(out_idx))  # channels nobody reads are not fitted
        fitted = StandardScaler.fit(series.values, series.null_value, rows=rows, channels=series.channels,
                                    index=used)
        scaler = fitted.select([used.index(i) for i in in_idx])
        target_scaler = fitted.select([used.index(i) for i in out_idx])

        raw_inputs = _channel_tensor(series.values, in_idx)
        targets = raw_inputs if out_idx == in_idx else _channel_tensor(series.values, out_idx)
        tod = torch.from_numpy(time_of_day(series.timestamps))
        dow = torch.from_numpy(day_of_week(series.timestamps))
        dead = _dead_sensors(series, out_idx)
        raw_inputs = raw_inputs.to(device)
        targets = raw_inputs if out_idx == in_idx else targets.to(device)
        exogenous = None if not covariates else Exogenous(covariates, series.num_nodes, np.arange(*rows),
                                                          covariate_stats, device=raw_inputs.device)
        return cls(raw_inputs=raw_inputs, targets=targets, tod=tod.to(device), dow=dow.to(device),
                   windows=windows, split=splits, scaler=scaler, target_scaler=target_scaler,
                   null_value=series.null_value, steps_per_day=steps_per_day(series.interval),
                   timestamps=series.timestamps.copy(), sensor_ids=series.sensor_ids,
                   channel_names=series.channels, input_channels=in_idx, target_channels=out_idx,
                   fingerprint=_fingerprint(series), dropped_windows=dropped, dead_sensors=dead,
                   exogenous=exogenous, dynamic_graph=dynamic_graph)

    # ------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.raw_inputs.device

    @property
    def num_steps(self) -> int:
        return int(self.raw_inputs.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.raw_inputs.shape[1])

    @property
    def in_channels(self) -> int:
        return int(self.raw_inputs.shape[2])

    @property
    def out_channels(self) -> int:
        return int(self.targets.shape[2])

    @property
    def input_len(self) -> int:
        return self.windows.input_len

    @property
    def horizon(self) -> int:
        return self.windows.horizon

    @property
    def interval_minutes(self) -> float | None:
        """Minutes between consecutive steps (the series' interval, :func:`stgraph.io.series.infer_interval`:
        the smallest step), ``None`` for a single step."""
        if len(self.timestamps) < 2:
            return None
        from ..io.series import infer_interval
        return float(infer_interval(self.timestamps).astype("timedelta64[ns]").astype(np.int64)) / 60e9

    @property
    def input_channel_names(self) -> list[str]:
        return [self.channel_names[i] for i in self.input_channels]

    @property
    def target_channel_names(self) -> list[str]:
        return [self.channel_names[i] for i in self.target_channels]

    def target_stats(self) -> tuple[list[float], list[float]]:
        """``(mean, std)`` of the target channels, each ``C_out`` floats: ``raw = z * std + mean``."""
        return self.target_scaler.mean.tolist(), self.target_scaler.std.tolist()

    def set_scaler_state(self, state: dict) -> None:
        """Use a saved input scaler (``scaler.state_dict()``, e.g. from a checkpoint) instead of the fitted one.

        Batches are scaled with it from then on. Target channels that are also input channels take their statistics from
        ``state``; any other target channel keeps the statistics fitted here.

        Raises:
            ConfigError: the state does not describe this data's input channels.
        """
        new = StandardScaler.from_state_dict(state)
        names = self.input_channel_names
        if new.num_channels != self.in_channels or (new.channels is not None and new.channels != names):
            raise ConfigError(f"scaler state has channels {new.channels or new.num_channels} but the data's inputs "
                              f"are {names}; use the checkpoint of a run on the same channels")
        mean, std = self.target_scaler.mean.copy(), self.target_scaler.std.copy()
        for j, c in enumerate(self.target_channels):
            if c in self.input_channels:
                k = self.input_channels.index(c)
                mean[j], std[j] = new.mean[k], new.std[k]
        self.scaler = new
        self._set_input_stats(new)
        self.target_scaler = StandardScaler(mean, std, self.target_channel_names)

    def _set_input_stats(self, scaler: StandardScaler) -> None:
        dev = self.raw_inputs.device
        self._in_mean = torch.as_tensor(np.asarray(scaler.mean), dtype=torch.float32, device=dev)
        self._in_std = torch.as_tensor(np.asarray(scaler.std), dtype=torch.float32, device=dev)

    def scale_inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """z-score raw inputs ``[..., C_in]`` with the input scaler; nulls become 0. Returns a new tensor."""
        return ((raw - self._in_mean) / self._in_std).masked_fill_(~valid_mask(raw, self.null_value), 0.0)

    @property
    def inputs(self) -> torch.Tensor:
        """``[T, N, C_in]`` the whole scaled input series. Computed on each access (a full copy):
        batches never use it, they scale only the rows they gather."""
        if not isinstance(self.raw_inputs, torch.Tensor):
            raise SeriesError("ForecastData.inputs would hold the whole scaled [T, N, C_in] series in memory, and this "
                              "data is lazy (read_series(..., lazy=True)); gather batches (loader, batch) instead")
        return self.scale_inputs(self.raw_inputs)

    def fingerprint(self) -> str:
        """16 hex digits of sha256 over the raw values, timestamps, sensor ids, channel names and null value.

        It identifies the data, not the window or split settings (checkpoints store those), and
        is computed from the raw values so it is the same on every machine and device.
        """
        return self._fingerprint

    # --------------------------------------------------------------- batches
    def split_starts(self, split_name: str) -> torch.Tensor:
        """``[n]`` int64 window starts of a split, on :attr:`device`."""
        if split_name not in SPLIT_NAMES:
            raise ConfigError(f"split_name is {split_name!r}; expected one of {list(SPLIT_NAMES)}")
        got = self._split_starts.get(split_name)
        if got is None:
            got = torch.from_numpy(np.asarray(self.split[split_name], dtype=np.int64)).to(self.device)
            self._split_starts[split_name] = got
        return got

    def batch(self, starts: torch.Tensor) -> Batch:
        """The windows starting at ``starts [B]`` (int64, on :attr:`device`), one gather per tensor."""
        rows_in = self.windows.input_rows(starts)
        rows_out = self.windows.target_rows(starts)
        exo = (None, None) if self.exogenous is None else self.exogenous.gather(rows_in, rows_out)
        return Batch(x=self.scale_inputs(take_rows(self.raw_inputs, rows_in)), y=take_rows(self.targets, rows_out),
                     tod_in=take_rows(self.tod, rows_in), dow_in=take_rows(self.dow, rows_in),
                     tod_out=take_rows(self.tod, rows_out), dow_out=take_rows(self.dow, rows_out), starts=starts,
                     exo_in=exo[0], exo_out=exo[1],
                     text=None if self.exogenous is None else self.exogenous.text(rows_in, rows_out),
                     graph=None if self.dynamic_graph is None else self.dynamic_graph.window_graphs(rows_in[:, -1]))

    def window_at(self, series: Series, at: str | None = None, exogenous: Exogenous | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], np.ndarray]:
        """The model input of a forecast issued at ``at``: the ``input_len`` steps of ``series`` that end there,
        scaled and masked as in every batch (:meth:`scale_inputs`), with their calendar covariates.

        Args:
            series: a :class:`~stgraph.io.series.Series` ``[T, N, C]`` with this data's sensors and channels
                (the series it was built from, or newer readings; ``T`` may be as short as ``input_len``).
            at: ISO timestamp of the last observed step; ``None``: the series' last step.
            exogenous: covariates aligned to ``series``' steps and the ``horizon`` steps after its last one (a
                request's, :mod:`stgraph.serve.covariates`); ``None``: this data's own, aligned to ``series``.

        Returns:
            ``(x, covariates, future)``: ``x`` ``[1, T_in, N, C_in]`` on :attr:`device`; ``covariates``
            ``tod_in`` / ``dow_in`` ``[1, T_in]`` and ``tod_out`` / ``dow_out`` ``[1, T_out]`` (the steps after
            ``at``, one series interval apart), plus ``exo_in`` / ``exo_out`` (``[1, T, N, C_x]``) when the data
            has covariate files (:meth:`_exogenous_at`); ``future`` ``[T_out]`` datetime64 timestamps of those steps.

        Raises:
            ConfigError: ``at`` is not a timestamp, or has a UTC offset (:func:`stgraph.data.fit.parse_at`).
            SeriesError: ``at`` is not a step of ``series``, fewer than ``input_len`` steps lead up to it, or the
                window crosses a gap in time or holds no reading (:func:`stgraph.data.fit.check_window`).
        """
        ts = series.timestamps
        if at is None:
            end = len(ts) - 1
        else:
            when = parse_at(at)
            end = int(np.searchsorted(ts, when, side="right")) - 1
            if end < 0 or ts[end] != when:
                raise SeriesError(f"{at}: no such step in {series.source}; it runs from {ts[0]} to {ts[-1]} "
                                  f"every {series.summary()['interval']}")
        first = end - self.input_len + 1
        if first < 0:
            raise SeriesError(f"{at}: a forecast needs {self.input_len} steps up to it, only {end + 1} exist "
                              f"in {series.source}; pick a later time")
        rows = torch.arange(first, end + 1)[None]  # [1, T_in]
        raw = take_rows(_channel_tensor(series.values, self.input_channels), rows)
        step = infer_interval(self.timestamps)  # the run's interval (check_fits: the series' too)
        check_window(series, first, end, step, raw[0].numpy(), self.null_value)
        raw = raw.to(self.device)
        future = ts[end] + step * np.arange(1, self.horizon + 1)
        past = ts[first:end + 1]
        cov = {"tod_in": time_of_day(past), "dow_in": day_of_week(past),
               "tod_out": time_of_day(future), "dow_out": day_of_week(future)}
        cov = {k: torch.as_tensor(v, device=self.device)[None] for k, v in cov.items()}
        if self.exogenous is not None:
            cov["exo_in"], cov["exo_out"], text = self._exogenous_at(series, first, end, exogenous)
            if text is not None:
                cov["text"] = text
        if self.dynamic_graph is not None:  # [1] the graph period at the last input step (Forecaster.graph_for)
            cov["graph_period"] = torch.tensor([self.dynamic_graph.period_at(ts[end])], device=self.device)
        return self.scale_inputs(raw), cov, future

    def _exogenous_at(self, series: Series, first: int, end: int, exogenous: Exogenous | None = None) -> tuple:
        """Covariate files' ``exo_in [1, T_in, N, C]``, ``exo_out [1, T_out, N, C]`` and text reports
        (:meth:`~stgraph.data.covariates.Exogenous.text`, ``None`` without; logged when none reaches it) for the window
        ``first..end`` of ``series``, which must be the series the covariates were aligned to. Forecast
        steps past the end of the data hold the last aligned reading (a weather forecast beyond the file
        is not known). ``exogenous``: as :meth:`window_at`."""
        ts, exo = np.asarray(series.timestamps), self.exogenous if exogenous is None else exogenous
        if exogenous is None and (len(ts) != self.num_steps or ts[0] != self.timestamps[0] or
                                  ts[-1] != self.timestamps[-1]):
            raise ConfigError(f"{series.source}: this run's covariate files are aligned to its own data "
                              f"({self.timestamps[0]} .. {self.timestamps[-1]}, {self.num_steps} steps), not to this "
                              f"series ({ts[0]} .. {ts[-1]}, {len(ts)} steps); forecast from the run's data, or "
                              f"open the run with that data (stgraph predict RUN --data FILE)")
        last = self.num_steps - 1 if exogenous is None else end + self.horizon
        rows_in = torch.arange(first, end + 1, device=self.device)[None]
        rows_out = torch.arange(end + 1, end + 1 + self.horizon, device=self.device).clamp(max=last)[None]
        return (*exo.gather(rows_in, rows_out), exo.text(rows_in, rows_out, note=True))

    def loader(self, split_name: str, batch_size: int, shuffle: bool = False, drop_last: bool = False,
               generator: torch.Generator | None = None, pin_memory: bool | None = None, start: int = 0,
               shard: tuple[int, int] | None = None, workers: int = 0, prefetch: int = 2) -> BatchLoader:
        """Batches of one split (``'train'``, ``'val'`` or ``'test'``); see :class:`BatchLoader` for
        ``start`` (skip batches), ``shard=(rank, world)`` (data-parallel part of every batch) and
        ``workers`` / ``prefetch`` (batches gathered ahead in worker processes).

        ``pin_memory`` defaults to True only when CUDA is available and the data is on the CPU.
        """
        return BatchLoader(self, self.split_starts(split_name), batch_size, shuffle=shuffle,
                           drop_last=drop_last, generator=generator, pin_memory=pin_memory, start=start,
                           shard=shard, workers=workers, prefetch=prefetch)

    def __repr__(self) -> str:
        return (f"ForecastData(steps={self.num_steps}, nodes={self.num_nodes}, in={self.input_channel_names}, "
                f"out={self.target_channel_names}, input_len={self.input_len}, horizon={self.horizon}, "
                f"split={self.split.sizes()}, device={self.device})")


# ------------------------------------------------------------------ helpers
def _channels(series: Series, field: str, spec) -> list[int]:
    if spec is None:
        return list(range(series.num_channels))
    try:
        idx = series.channel_index(spec)
    except SeriesError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    if not idx or len(set(idx)) != len(idx):
        raise ConfigError(f"{field} is {spec!r}; expected one or more distinct channels of {series.channels}")
    return idx


def _row_blocks(num_rows: int, row_size: int) -> range:
    return range(0, num_rows, max(1, ROW_BLOCK_ELEMENTS // max(1, row_size)))


def _channel_tensor(values: np.ndarray, idx: list[int]) -> torch.Tensor:
    """``[T, N, len(idx)]`` raw channels: a zero-copy view when ``idx`` is a contiguous range; for a lazy
    series (:class:`~stgraph.io.lazy.H5Values`) the view of those channels in the file."""
    if not isinstance(values, np.ndarray):
        return values.channels(idx)
    lo = idx[0]
    if idx == list(range(lo, lo + len(idx))) and values.flags.writeable and values.dtype == np.float32:
        return torch.from_numpy(values[:, :, lo:lo + len(idx)])
    return torch.from_numpy(np.ascontiguousarray(values[:, :, idx], dtype=np.float32))


def _dead_sensors(series: Series, channels: list[int]) -> list[str]:
    """Sensors whose ``channels`` are null at every step; warns (:class:`StgraphWarning`) naming them.

    They are kept (the loss and the metrics mask them out), but their forecasts
    mean nothing, and a wrong ``null_value`` or sensor order usually is the cause.
    """
    values = series.values
    seen = np.zeros(series.num_nodes, dtype=bool)
    step = _row_blocks(values.shape[0], values.shape[1] * len(channels)).step
    for a in range(0, values.shape[0], step):
        blk = values[a:a + step][:, :, channels]
        seen |= valid_mask(blk, series.null_value).any(axis=(0, 2))
    dead = [series.sensor_ids[i] for i in np.flatnonzero(~seen)]
    if dead:
        names = [series.channels[c] for c in channels]
        warnings.warn(StgraphWarning(
            f"{where(series.source)}: {len(dead)} of {series.num_nodes} sensor(s) have no reading at all in "
            f"{names} (every value is the null value {series.null_value}): {dead[:20]}"
            f"{' ...' if len(dead) > 20 else ''}; they are kept but masked out of the loss and the metrics, "
            f"so their forecasts mean nothing. Drop them (Series.select_sensors) or check null_value"),
            stacklevel=3)
    return dead


def _fingerprint(series: Series) -> str:
    from ..files import fingerprint

    v = series.values
    step = _row_blocks(v.shape[0], v.shape[1] * v.shape[2]).step
    whole = isinstance(v, np.ndarray) and v.flags.c_contiguous  # else row blocks (a lazy series: read in order)
    blocks = [v] if whole else (v[a:a + step] for a in range(0, v.shape[0], step))
    return fingerprint(b"stgraph-data-v1\0",
                       repr((series.values.shape, list(series.channels), repr(float(series.null_value)))),
                       blocks, series.timestamps.astype("datetime64[ns]").astype(np.int64),
                       "\n".join(series.sensor_ids))
