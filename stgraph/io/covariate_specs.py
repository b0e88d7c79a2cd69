"""What a covariate spec says besides its file, and the checks that keep a covariate honest about time.

* **Known ahead, declared per file** (:func:`parse_specs`): ``rain.csv:forecast`` (its values at the forecast
  steps may be used: a weather forecast), ``rain.csv:observed`` (only what was observed up to the forecast
  time: the value at the last input step is held over the horizon). Without a suffix the kind's default
  holds (shared series, events and static features known ahead, per-sensor series observed). A spec may
  also be a small YAML file listing the files::

      - file: rain.csv          # relative to the YAML's folder
        known: observed
      - file: incidents.csv

* **Columns that look like sensor ids** (:func:`id_like_columns`): numbers (``700001``, ``700001.0``) or
  names shaped like the series' ids (``S12`` beside ``S3``). A file whose columns look like ids and match no
  sensor is refused: read as a shared series it would hand every sensor another series' values, known
  ahead (a leak of the future when the file is the target of another run).
* **Time zones** (:func:`zone_of_file`, :func:`to_series_clock`): a series' timestamps carry no zone; a
  covariate CSV whose timestamps carry UTC offsets (``+02:00``, ``Z``) is read as UTC and converted to the
  series' clock, ``data.time_zone`` (``UTC``, ``+01:00`` or an IANA name such as ``America/Los_Angeles``),
  with a log line; without ``data.time_zone`` such a file is refused rather than shifted silently.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, where

log = logging.getLogger(__name__)

__all__ = ["KNOWN", "parse_specs", "id_like_columns", "near_ids", "zone_of_file", "to_series_clock", "utc_offsets"]

#: what a spec's suffix may declare
KNOWN = ("observed", "forecast")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})\s*$")


def parse_specs(specs) -> list[tuple[str, str | None, str]]:
    """``[(file or graph:..., known or None, spec as given), ...]`` from covariate specs (``FILE``,
    ``FILE:observed``, ``FILE:forecast``, ``graph:ATTR``, or a ``.yaml`` listing files; module docstring).

    Raises:
        ConfigError: a YAML entry without ``file``, or a ``known`` other than :data:`KNOWN`.
    """
    out = []
    for spec in specs:
        spec = str(spec)
        if spec.startswith("graph:"):
            out.append((spec, None, spec))
            continue
        path, known = spec, None
        head, sep, tail = spec.rpartition(":")
        if sep and tail in KNOWN:
            path, known = head, tail
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            out.extend(_yaml_specs(Path(path)))
        else:
            out.append((path, known, spec))
    return out


def _yaml_specs(path: Path) -> list[tuple[str, str | None, str]]:
    from ..yamlfile import load_yaml
    from .sniff import existing_file

    entries = load_yaml(existing_file(path), what="covariates file") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where(path)}: expected a list of entries '- file: rain.csv' (known: observed | forecast)")
    out = []
    for i, e in enumerate(entries):
        e = {"file": e} if isinstance(e, str) else e
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not e["file"]:
            raise ConfigError(f"{where(path)}: entry {i + 1} is {e!r}; expected 'file: NAME' (and 'known: "
                              f"observed' or 'known: forecast')")
        known = e.get("known")
        if known is not None and known not in KNOWN:
            raise ConfigError(f"{where(path)}: entry {i + 1} ({e['file']}): known = {known!r}; expected one of {KNOWN}")
        f = e["file"]
        f = f if f.startswith("graph:") or Path(f).is_absolute() else str(path.parent / f)
        out.append((f, known, f"{path}#{i + 1}"))
    return out


def id_like_columns(columns, sensor_ids) -> list[str]:
    """The ``columns`` that look like sensor ids (numbers, or shaped like ``sensor_ids``: the same letters
    around digits) but are not among ``sensor_ids``."""
    ids = set(map(str, sensor_ids))
    shapes = {re.sub(r"\d+", "#", s) for s in ids if any(ch.isdigit() for ch in s)}
    return [c for c in map(str, columns) if c not in ids and (
        _NUMBER.fullmatch(c.strip()) or (any(ch.isdigit() for ch in c) and re.sub(r"\d+", "#", c) in shapes))]


def near_ids(columns, sensor_ids) -> dict[str, str]:
    """``{column: sensor id}`` for number-like columns that name a sensor once written as an integer
    (``700001.0`` -> ``700001``), for the message."""
    ids = set(map(str, sensor_ids))
    out = {}
    for c in columns:
        try:
            v = float(c)
        except ValueError:
            continue
        if v == int(v) and str(int(v)) in ids:
            out[c] = str(int(v))
    return out


def zone_of_file(path: Path, time_column: str | None = None) -> str | None:
    """The UTC offset (``'+02:00'``, ``'Z'``) the first timestamp of a CSV's time column carries, or ``None``."""
    from .csv import read_rows

    if path.suffix.lower() not in (".csv", ".txt"):
        return None
    rows, _ = read_rows(path)
    if len(rows) < 2:
        return None
    header = [h.strip().lower() for h in rows[0]]
    names = [time_column] if time_column else ["timestamp", "time", "date", "datetime", "ts", "start"]
    col = next((header.index(n) for n in names if n in header), 0)
    cell = rows[1][col] if col < len(rows[1]) else ""
    m = _OFFSET.search(cell.strip()) if re.match(r"\d{4}[-/]", cell.strip()) else None
    return m.group(1) if m else None


def to_series_clock(times_utc, zone: str | None, found: str, origin):
    """``[K]`` datetime64 read as UTC (the file carried the offset ``found``) on the series' clock ``zone``
    (``data.time_zone``); logs the conversion once. A tuple of such arrays (a file's starts and ends) gives
    the tuple of them converted.

    Raises:
        ConfigError: ``zone`` is ``None`` (the series' zone is not known: the file is not shifted silently)
            or not a zone.
    """
    if zone is None:
        raise ConfigError(f"{where(origin)}: its timestamps carry the UTC offset {found} but the series' carry "
                          f"none; set data.time_zone to the zone the series' clock is in (UTC, +01:00 or e.g. "
                          f"America/Los_Angeles: --set data.time_zone=UTC) and the file is converted to it")
    many = isinstance(times_utc, tuple)
    out = tuple(_shifted(np.asarray(t).astype("datetime64[ns]"), zone) for t in (times_utc if many else (times_utc,)))
    log.info("%s: timestamps with UTC offset %s converted to the series' clock (data.time_zone = %s)",
             origin, found, zone)
    return out if many else out[0]


def _shifted(t: np.ndarray, zone: str) -> np.ndarray:
    """``t`` (UTC) plus ``zone``'s offset at each time; ``NaT`` stays ``NaT``."""
    ok = ~np.isnat(t)
    out = t.copy()
    out[ok] = t[ok] + utc_offsets(t[ok], zone)
    return out


def utc_offsets(t_utc: np.ndarray, zone: str) -> np.ndarray:
    """``[K]`` timedelta64[ns]: the offset of ``zone`` (``UTC``, ``+HH:MM``, IANA name) at each UTC time
    (one lookup per distinct hour, so daylight saving is followed)."""
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", zone.strip())
    if zone.strip().upper() in ("UTC", "Z", "GMT"):
        return np.zeros(len(t_utc), "timedelta64[ns]")
    if m:
        minutes = (1 if m.group(1) == "+" else -1) * (int(m.group(2)) * 60 + int(m.group(3)))
        return np.full(len(t_utc), minutes * 60_000_000_000, "int64").astype("timedelta64[ns]")
    import datetime as dt
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"data.time_zone = {zone!r}: not a time zone; expected UTC, an offset such as +01:00 or "
                          f"an IANA name such as America/Los_Angeles") from None
    hours = np.asarray(t_utc).astype("datetime64[h]")
    uniq, inv = np.unique(hours, return_inverse=True)
    offs = np.array([int(dt.datetime.fromisoformat(str(h) + ":00").replace(tzinfo=dt.timezone.utc)
                         .astimezone(tz).utcoffset().total_seconds()) for h in uniq], "int64")
    return (offs[inv] * 1_000_000_000).astype("timedelta64[ns]")
