"""HDF5 series files, read with h5py only (no pandas / pytables): :func:`parse_hdf5`.

Two layouts:

* **pandas frame** ("fixed" format, written by ``DataFrame.to_hdf``: METR-LA, PEMS-BAY, LargeST),
  parsed by :mod:`.hdf5_frame`;
* **plain** (what stgraph writes by default, :mod:`.hdf5_write`): datasets ``values`` ``[T, N, C]``,
  ``timestamps`` (int64 ns since the epoch), ``sensor_ids`` (UTF-8 strings) and
  attributes ``channels`` and ``null_value``.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import DataFormatError, StgraphError, where
from .h5safe import attr_float, attr_str, safe_dataset
from .hdf5_frame import parse_frame
from .raw import RawTable

__all__ = ["parse_hdf5"]


def parse_hdf5(path: str | Path, *, key: str | None = None, lazy: bool = False,
               cache_bytes: int | None = None) -> RawTable:
    """Parse a pandas-frame or plain HDF5 series file into a :class:`RawTable`.

    Args:
        key: group holding the frame (``df``, ``t``, ``/a/b``) or the plain
            datasets; default: the file's only frame, or the plain layout at
            the root.
        lazy: leave the readings in the file: ``values`` is an
            :class:`~stgraph.io.lazy.H5Values` (``[T, N, C]``, read in row chunks through an LRU
            cache of ``cache_bytes``); the memory budget does not apply. A frame must then hold its
            sensors in one block, in ``axis0`` order (METR-LA, PEMS-BAY, LargeST, write_series).

    Raises:
        DataFormatError: unreadable (truncated, corrupted) file, unknown layout,
            several frames and no ``key``, or inconsistent content.
    """
    try:
        with h5py.File(path, "r") as f:
            group, layout = _locate(f, key, path, lazy)
            opened = None if not lazy else {} if cache_bytes is None else dict(cache_bytes=cache_bytes)
            if layout == "plain":
                return _parse_plain(group, path, opened)
            return parse_frame(group, path, opened)
    except StgraphError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        # h5py reports damage as OSError, and as RuntimeError / KeyError / ValueError
        # when a corrupted object header is met while walking the file
        raise DataFormatError(
            f"{where(path)}: not a readable HDF5 file, it is truncated or corrupted (h5py "
            f"{type(exc).__name__}: {exc}); re-download or re-export it") from None


def _locate(f: h5py.File, key: str | None, path, lazy: bool = False) -> tuple[h5py.Group, str]:
    if key is not None:
        name = "/" + str(key).strip("/")
        if name not in f or not isinstance(f[name], h5py.Group):
            raise DataFormatError(
                f"{where(path)}: no group '{key}' in the file; groups found: {_groups(f)}. "
                f"Pass one of them as key=")
        group = f[name]
        if "pandas_type" in group.attrs:
            return group, "pandas"
        if "values" in group:
            return group, "plain"
        raise DataFormatError(
            f"{where(path)}: group '{key}' is neither a pandas frame (no 'pandas_type' attribute) "
            f"nor a plain stgraph series (no 'values' dataset); it holds {sorted(group.keys())}")
    if safe_dataset(f, "values", path, budget=not lazy) is not None:
        return f, "plain"
    frames: list[str] = []
    f.visititems(lambda n, o: frames.append(n) if isinstance(o, h5py.Group) and "pandas_type" in o.attrs else None)
    if len(frames) == 1:
        return f[frames[0]], "pandas"
    if not frames:
        raise DataFormatError(
            f"{where(path)}: none of the known HDF5 layouts: no pandas frame and no 'values' dataset; "
            f"the file holds {sorted(f.keys())} ({_inventory(f)}). Expected either "
            f"a pandas frame (a group with a 'pandas_type' attribute holding axis0, axis1, "
            f"block0_values, as DataFrame.to_hdf writes, e.g. METR-LA's 'df') or the plain layout "
            f"(datasets 'values' [T, N, C], 'timestamps', 'sensor_ids', as stgraph.io.write_series "
            f"writes){_hint(f)}")
    raise DataFormatError(
        f"{where(path)}: the file holds {len(frames)} pandas frames {frames}; pass key= to pick one")


def _inventory(f: h5py.File, limit: int = 12) -> str:
    """``"datasets speed (288, 207) float32, meta/ids (207,) |S6; groups meta"`` for messages."""
    datasets: list[str] = []
    groups: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            datasets.append(f"{name} {obj.shape} {obj.dtype}")
        elif isinstance(obj, h5py.Group):
            groups.append(name)
    f.visititems(visit)
    if not datasets and not groups:
        return "an empty file (no groups, no datasets)"
    parts = []
    if datasets:
        parts.append("datasets " + ", ".join(datasets[:limit]) + (" ..." if len(datasets) > limit else ""))
    if groups:
        parts.append("groups " + ", ".join(groups[:limit]) + (" ..." if len(groups) > limit else ""))
    return "; ".join(parts)


def _hint(f: h5py.File) -> str:
    """Point at a 2-D/3-D numeric dataset that may hold the readings."""
    found: list[str] = []
    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim in (2, 3)
                 and o.dtype.kind in "fiu" else None)
    if not found:
        return ""
    return (f". '{found[0]}' may hold the readings: rewrite it with stgraph.io.write_series "
            f"(Series(values, timestamps, sensor_ids)) or DataFrame.to_hdf")


def _groups(f: h5py.File) -> list[str]:
    out: list[str] = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Group) else None)
    return out



# --------------------------------------------------------------------- plain
def _parse_plain(g: h5py.Group, path, lazy: dict | None = None) -> RawTable:
    """The plain layout; ``lazy`` (keyword arguments of :class:`~stgraph.io.lazy.H5Values`): leave the values in the file."""
    needed = ("values", "timestamps", "sensor_ids")
    absent = [n for n in needed if safe_dataset(g, n, path, budget=lazy is None) is None]
    if absent:
        raise DataFormatError(
            f"{where(path)}: plain series lacks dataset(s) {absent}; found {sorted(g.keys())}. "
            f"Expected values [T, N, C], timestamps (int64 ns) and sensor_ids")
    values = g["values"]
    if values.dtype.kind not in "fiub" or values.ndim not in (2, 3):
        raise DataFormatError(
            f"{where(path)}: dataset 'values' has dtype {values.dtype} and shape {values.shape}; "
            f"expected numbers of shape [T, N, C]")
    if lazy is not None:
        from .lazy import H5Values
        values = H5Values(path, values.name, **lazy)
    else:
        values = values[()]
    tds = g["timestamps"]
    unit = attr_str(tds.attrs, "unit", "ns")
    ts = tds[()]
    if ts.dtype.kind not in "iu" or ts.shape != (values.shape[0],):
        raise DataFormatError(
            f"{where(path)}: dataset 'timestamps' has dtype {ts.dtype} and shape {ts.shape}; expected "
            f"{values.shape[0]} int64 values ({unit} since 1970-01-01)")
    timestamps = ts.astype(np.int64).view(f"datetime64[{unit}]").astype("datetime64[ns]")
    sds = g["sensor_ids"]
    if sds.ndim != 1 or sds.shape[0] != values.shape[1]:
        raise DataFormatError(
            f"{where(path)}: dataset 'sensor_ids' has shape {sds.shape}; expected ({values.shape[1]},), one id "
            f"per sensor column of 'values'")
    ids = sds.asstr()[()].tolist() if sds.dtype.kind in "SO" else [str(v) for v in sds[()]]
    channels = g.attrs.get("channels")
    if channels is not None:
        channels = [c.decode() if isinstance(c, bytes) else str(c) for c in np.atleast_1d(channels)]
    null = attr_float(g, "null_value", path)
    return RawTable(values, timestamps, ids, channels, null, null_origin="stored in the file")
