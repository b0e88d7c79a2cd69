"""Does this series fit this run? The one check of new data against what a run was trained on.

``predict`` (a series to forecast from), ``evaluate`` and ``drift`` (a run opened on another file,
:meth:`stgraph.training.run.Run.open` with ``data_path``) and ``update`` (new data to continue a run on)
all pass the series they read through :func:`check_fits` before any window is cut or any weight is
loaded. It compares the series with :class:`TrainedOn`, what the run's ``run.json`` (or its own series)
says about the data it was trained on:

* **interval**: the series' sampling interval (the smallest step) must be the run's; a 5-minute run's
  horizons are 5-minute steps and its calendar embedding has one slot per 5 minutes;
* **sensors**: the run's sensors in its order (``sensors="same"``), or at least one sensor in common
  (``sensors="common"``, ``update``: new sensors get fresh embedding rows, absent ones are dropped);
* **channels**: the run's channel names in its order;
* **time order** (``newer=True``, ``update``): the series must not end before the run's data ended.

Each refusal is a :class:`~stgraph.errors.SeriesError` naming the file, the run and both sides. The
input window of one forecast (gaps in time, readings that are all null) is checked where it is cut,
:meth:`stgraph.data.ForecastData.window_at`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import SeriesError, where
from ..io.series import format_interval, iso, parse_interval

#: how each mode of :func:`check_fits` treats the sensors
SENSOR_MODES = ("same", "common")


@dataclass(frozen=True)
class TrainedOn:
    """What a run was trained on, as far as new data must match it.

    Attributes:
        sensor_ids: the run's ``N`` sensor ids, in the order of its weights.
        channels: the run's channel names.
        interval: the sampling interval of its training data (``None``: not known, a run written by an older
            stgraph whose data file is gone).
        end: the last timestamp of its training data (``None``: not known).
        run: the run directory (for messages), ``None`` for a run kept off disk.
        source: the training data file (for messages).
    """

    sensor_ids: Sequence[str]
    channels: Sequence[str]
    interval: np.timedelta64 | None = None
    end: np.datetime64 | None = None
    run: str | None = None
    source: str | None = None

    @classmethod
    def of_series(cls, series, run=None) -> "TrainedOn":
        """What ``series`` (the run's training :class:`~stgraph.io.series.Series`) says."""
        ts = series.timestamps
        return cls(list(series.sensor_ids), list(series.channels), series.interval if len(ts) > 1 else None,
                   ts[-1], None if run is None else str(run), series.source)

    @classmethod
    def of_info(cls, info: dict, run=None) -> "TrainedOn":
        """What a run's ``run.json`` says (:func:`time_info` wrote its ``time`` entry; without one, the
        interval and the end are not known)."""
        time = info.get("time") or {}
        interval = parse_interval(time["interval"]) if time.get("interval") else None
        end = np.datetime64(time["end"], "ns") if time.get("end") else None
        return cls([str(s) for s in info["sensor_ids"]], [str(c) for c in info["channels"]], interval, end,
                   None if run is None else str(run), info.get("source"))

    @property
    def known(self) -> bool:
        """Whether the interval and the end of the training data are known."""
        return self.interval is not None and self.end is not None

    def who(self) -> str:
        """``the run in 'runs/a'`` (or ``the run``), for messages."""
        return f"the run in '{self.run}'" if self.run else "the run"


def time_info(series) -> dict:
    """``run.json``'s ``time`` entry: the training series' first and last timestamps and its interval."""
    ts = series.timestamps
    return {"start": iso(ts[0]), "end": iso(ts[-1]),
            "interval": format_interval(series.interval) if len(ts) > 1 else None}


def _ids(ids: Sequence[str], limit: int = 5) -> str:
    ids = list(ids)
    return f"{ids[:limit]}{' ...' if len(ids) > limit else ''}"


def _check_sensors(series, trained: TrainedOn, sensors: str) -> None:
    have, want = list(series.sensor_ids), list(trained.sensor_ids)
    if have == want:
        return
    extra = [s for s in have if s not in set(want)]
    missing = [s for s in want if s not in set(have)]
    src = where(series.source)
    if sensors == "common":
        if len(extra) == len(have):
            raise SeriesError(f"{src}: none of its {len(have)} sensor(s) {_ids(have)} is one of the {len(want)} "
                              f"sensor(s) of {trained.who()} {_ids(want)}; an update carries the weights of the "
                              f"sensors both have over, so it needs at least one sensor in common. Check that "
                              f"the file is from the same network and that its sensor ids are written the same way")
        return
    what = (f"{len(extra)} sensor(s) the run does not know ({_ids(extra)}) and {len(missing)} it needs but are "
            f"absent ({_ids(missing)})" if extra or missing else "the same sensors in another order")
    raise SeriesError(f"{src}: has {what}; {trained.who()} needs its {len(want)} sensors in the same order as its "
                      f"training file {where(trained.source)}")


def check_fits(series, trained: TrainedOn, *, sensors: str = "same", newer: bool = False) -> None:
    """Refuse ``series`` where it does not fit the run ``trained`` describes (module docstring).

    Args:
        series: the new :class:`~stgraph.io.series.Series`.
        trained: what the run was trained on (:class:`TrainedOn`).
        sensors: ``"same"``: the run's sensors in its order; ``"common"``: at least one in common.
        newer: the series must not end before the run's training data did (an update).

    Raises:
        SeriesError: another interval, other sensors or channels, or (``newer``) older data; the message
            names the file, the run and both sides.
    """
    if sensors not in SENSOR_MODES:
        raise ValueError(f"sensors = {sensors!r}: expected one of {list(SENSOR_MODES)}")
    src, ts = where(series.source), series.timestamps
    if trained.interval is not None and len(ts) > 1 and series.interval != trained.interval:
        raise SeriesError(f"{src}: one reading every {format_interval(series.interval)}, but {trained.who()} was "
                          f"trained on readings every {format_interval(trained.interval)} ({where(trained.source)}); "
                          f"its {format_interval(trained.interval)} steps are the steps of its input window and "
                          f"horizons. Resample the file to {format_interval(trained.interval)}, or train a run on it")
    if list(series.channels) != list(trained.channels):
        raise SeriesError(f"{src}: channels {list(series.channels)}, but {trained.who()} was trained on "
                          f"{list(trained.channels)}; pass a file with those channels, in that order")
    _check_sensors(series, trained, sensors)
    if newer and trained.end is not None and ts[-1] < trained.end:
        raise SeriesError(f"{src}: its readings end at {iso(ts[-1])}, before those {trained.who()} was trained on "
                          f"(up to {iso(trained.end)}, {where(trained.source)}); an update continues a run on newer "
                          f"data. Pass readings from after {iso(trained.end)}")


_OFFSET = re.compile(r"(?:\d)(Z|[+-]\d{2}(?::?\d{2})?)$")


def parse_at(at: str) -> np.datetime64:
    """The timestamp ``at`` (ISO 8601) as ``datetime64[ns]``, as a series writes its steps.

    A series' timestamps carry no time zone (stgraph keeps them as the file writes them; a CSV's UTC
    offsets are applied when it is read), so an ``at`` with a UTC offset (``+05:00``, ``Z``) is refused
    rather than silently moved to UTC: the message gives both readings of it.

    Raises:
        ConfigError: not a timestamp, or one with a UTC offset.
    """
    from ..errors import ConfigError

    text = str(at).strip()
    zone = _OFFSET.search(text)
    if zone and ("T" in text or " " in text):
        local = text[:zone.start(1)]
        try:
            utc = iso(np.datetime64(local, "ns") - _offset(zone.group(1)))
        except ValueError:
            raise ConfigError(f"'{at}' is not a timestamp; expected e.g. 2012-03-07T08:00") from None
        raise ConfigError(f"'{at}' has the UTC offset {zone.group(1)}, but a series' timestamps carry no time zone "
                          f"(they are kept as the file writes them); stgraph does not guess which zone the series "
                          f"is in. Write the time as the series does, without an offset: {utc} if its times are "
                          f"UTC, {iso(np.datetime64(local, 'ns'))} if they are local times at {zone.group(1)}")
    try:
        return np.datetime64(text, "ns")
    except ValueError:
        raise ConfigError(f"'{at}' is not a timestamp; expected e.g. 2012-03-07T08:00") from None


def _offset(text: str) -> np.timedelta64:
    if text == "Z":
        return np.timedelta64(0, "m")
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
    return np.timedelta64(-minutes if text[0] == "-" else minutes, "m")


def check_window(series, first: int, end: int, interval: np.timedelta64, values, null_value: float) -> None:
    """The input window ``first..end`` of ``series`` (its raw input channels ``values [T_in, N, C]``) may be
    forecast from: no gap in time inside it (training drops such windows, so the model never saw one), and
    not every reading null (the forecast would be the model's guess from nothing). More than half of its
    readings null is a warning.

    Raises:
        SeriesError: a gap, or every reading null; the message names the window and what is wrong.
    """
    import warnings

    from ..errors import StgraphWarning
    from ..io.series import null_mask

    ts = np.asarray(series.timestamps[first:end + 1]).astype("datetime64[ns]")
    span = f"{iso(ts[0])} .. {iso(ts[-1])}"
    step = np.diff(ts)
    if len(step) and (step > interval).any():
        i = int(np.flatnonzero(step > interval)[0])
        lost = int(step[i] // interval) - 1
        raise SeriesError(f"{iso(ts[-1])}: the input window {span} of {where(series.source)} crosses a gap in "
                          f"time: no reading from {iso(ts[i])} to {iso(ts[i + 1])} ({lost} step(s) of "
                          f"{format_interval(interval)} missing). Training drops windows over a gap, so the model "
                          f"never saw one; forecast from {iso(ts[i + 1] + (len(ts) - 1) * interval)} or later, or "
                          f"fill the gap with rows of null readings")
    null = np.asarray(null_mask(values, null_value))
    if null.all():
        raise SeriesError(f"{iso(ts[-1])}: every reading of the input window {span} of {where(series.source)} is "
                          f"null (the null value {null_value}) at all {null.shape[1]} sensors; a forecast from it "
                          f"would be the model's guess from nothing. Forecast from a time with readings, or check "
                          f"the null value")
    if null.mean() > 0.5:
        dark = int(null.all(axis=(0, 2)).sum())
        warnings.warn(StgraphWarning(
            f"{where(series.source)}: {100 * null.mean():.0f}% of the readings of the input window {span} are null "
            f"({dark} of {null.shape[1]} sensor(s) without any); the forecast leans on the model's defaults"),
            stacklevel=4)


__all__ = ["SENSOR_MODES", "TrainedOn", "check_fits", "check_window", "parse_at", "time_info"]
