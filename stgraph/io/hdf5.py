"""HDF5 series files, read and written with h5py only (no pandas / pytables).

Two layouts:

* **pandas frame** ("fixed" format, written by ``DataFrame.to_hdf``): METR-LA
  ``metr-la.h5`` (group ``df``), PEMS-BAY ``pems-bay.h5`` and LargeST
  ``ca_his_2019.h5`` (group ``t``, integer column labels). The group holds
  ``axis0`` (column labels = sensor ids, bytes or integers), ``axis1`` (the
  index: int64 timestamps whose unit is in its ``kind`` attribute, e.g.
  ``b"datetime64[us]"``; plain ``b"datetime64"`` in older files means ns), and
  for every block ``k`` the labels ``block{k}_items`` and the values
  ``block{k}_values`` (stored ``[T, n_k]`` when its ``transposed`` attribute is
  1). Columns are put back in ``axis0`` order. A frame is one channel.
* **plain** (what stgraph writes by default): datasets ``values`` ``[T, N, C]``,
  ``timestamps`` (int64 ns since the epoch), ``sensor_ids`` (UTF-8 strings) and
  attributes ``channels`` and ``null_value``.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError, DataFormatError, MissingFileError, StgraphError, where
from ..files import atomic_path
from .read import RawTable, check_declared_size
from .series import Series

LAYOUTS = ("plain", "pandas")


# ======================================================================= read
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
            return _parse_frame(group, path, opened)
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
    if _dataset(f, "values", path, budget=not lazy) is not None:
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


def _attr_str(attrs, name: str, default: str | None = None) -> str | None:
    if name not in attrs:
        return default
    v = attrs[name]
    if isinstance(v, h5py.Empty):
        return ""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _attr_int(obj, name: str, path, default: int | None = None, lo: int = 0) -> int:
    """An integer attribute; anything else is an error naming the attribute (not 'corrupted')."""
    if name not in obj.attrs:
        if default is None:
            raise DataFormatError(f"{where(path)}: {obj.name} lacks the attribute '{name}'; expected an integer")
        return default
    v = obj.attrs[name]
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and int(v) >= lo:
        return int(v)
    shown = repr(v)
    raise DataFormatError(f"{where(path)}: attribute '{name}' of {obj.name} is {shown[:60]}; expected an integer "
                          f">= {lo}")


def _attr_float(obj, name: str, path) -> float | None:
    if name not in obj.attrs:
        return None
    v = obj.attrs[name]
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    shown = repr(v)
    raise DataFormatError(f"{where(path)}: attribute '{name}' of {obj.name} is {shown[:60]}; expected a number")


def _dataset(g: h5py.Group, name: str, path, budget: bool = True) -> h5py.Dataset | None:
    """``g[name]`` when it is a dataset whose bytes are in this file and whose declared size is
    plausible (within the memory budget unless ``budget=False``: a lazy read); ``None`` when absent or
    not a dataset.

    External links, external raw storage (``create_dataset(..., external=[...])``, which reads any
    local file as data) and virtual datasets (which map other files) are refused, naming the dataset.
    """
    link = g.get(name, getlink=True)
    if link is None:
        return None
    full = f"{g.name.rstrip('/')}/{name}"
    if isinstance(link, h5py.ExternalLink):
        raise DataFormatError(
            f"{where(path)}: '{full}' is an external link to '{link.filename}:{link.path}'; stgraph reads only "
            f"data stored in the file itself. Copy the data into the file")
    obj = g.get(name)
    if not isinstance(obj, h5py.Dataset):
        return None
    if obj.external:
        files = [str(e[0]) for e in obj.external]
        raise DataFormatError(
            f"{where(path)}: dataset '{full}' keeps its bytes in external file(s) {files[:3]}; stgraph reads "
            f"only data stored in the file itself (external storage would read any local file as readings)")
    if obj.is_virtual:
        raise DataFormatError(
            f"{where(path)}: dataset '{full}' is a virtual dataset (it maps other files); stgraph reads only "
            f"data stored in the file itself. Save a plain copy of the data")
    plist = obj.id.get_create_plist()
    compressed = plist.get_nfilters() > 0
    stored = obj.id.get_storage_size() if obj.size else 0
    check_declared_size(obj.shape or (), obj.dtype.itemsize, f"dataset '{full}'", path,
                        stored=stored if obj.size else None, compressed=compressed or obj.chunks is not None,
                        budget=budget)
    return obj


# -------------------------------------------------------------- pandas frame
def _parse_frame(g: h5py.Group, path, lazy: dict | None = None) -> RawTable:
    """A pandas frame; ``lazy`` (keyword arguments of :class:`~stgraph.io.lazy.H5Values`): leave the values in the file."""
    gname = g.name
    ptype = _attr_str(g.attrs, "pandas_type")
    if ptype == "frame_table":
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' was written with format='table'; only the fixed format "
            f"is read. Re-save it with df.to_hdf(path, key='{gname.strip('/')}', format='fixed')")
    if ptype != "frame":
        raise DataFormatError(
            f"{where(path)}: group '{gname}' has pandas_type={ptype!r}; expected 'frame' "
            f"(a DataFrame with one column per sensor)")
    for axis in ("axis0", "axis1"):
        variety = _attr_str(g.attrs, f"{axis}_variety", "regular")
        if variety != "regular":
            raise DataFormatError(
                f"{where(path)}: frame '{gname}' has a {variety} {axis} (MultiIndex); expected one "
                f"level of sensor ids as columns and timestamps as index")
    nblocks = _attr_int(g, "nblocks", path, default=0)
    members = len(g)
    if 2 * nblocks + 2 > members:
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' declares nblocks={nblocks}, which needs {2 * nblocks + 2} datasets, "
            f"but the group holds {members}; the attribute is corrupted")
    needed = ["axis0", "axis1"] + [f"block{k}_{p}" for k in range(nblocks) for p in ("items", "values")]
    absent = [n for n in needed if _dataset(g, n, path, budget=lazy is None) is None]
    if absent or nblocks == 0:
        found = sorted(g.keys())
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' lacks {absent[:10] or ['blocks (nblocks=0)']}"
            f"{' ...' if len(absent) > 10 else ''}; found {found[:10]}{' ...' if len(found) > 10 else ''}. "
            f"Expected axis0, axis1 and block<k>_items/block<k>_values")
    encoding = _attr_str(g.attrs, "encoding", "UTF-8") or "UTF-8"
    if encoding.lower() in ("none", ""):
        encoding = "UTF-8"

    columns = _labels(g["axis0"], encoding, path)
    pos = {c: i for i, c in enumerate(columns)}
    if len(pos) != len(columns):
        uniq, counts = np.unique(np.asarray(columns), return_counts=True)
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' has duplicated column labels {uniq[counts > 1][:10].tolist()}; "
            f"every sensor id must be unique")
    timestamps, reason = _index(g["axis1"], path)
    T, N = g["axis1"].shape[0], len(columns)
    check_declared_size((T, N), 4, f"frame '{gname}' ({T} steps x {N} sensors)", path, budget=lazy is None)

    values = None if lazy is not None else np.empty((T, N), dtype=np.float32)
    filled = np.zeros(N, dtype=np.int64)
    for k in range(nblocks):
        items = _labels(g[f"block{k}_items"], encoding, path)
        ds = g[f"block{k}_values"]
        if ds.dtype.kind not in "fiub":
            raise DataFormatError(
                f"{where(path)}: frame '{gname}' block {k} holds non-numeric data (HDF5 dtype {ds.dtype}) "
                f"for columns {items[:5]}; expected numeric sensor readings only")
        transposed = bool(_attr_int(ds, "transposed", path, default=0))
        if ds.shape != ((T, len(items)) if transposed else (len(items), T)):
            raise DataFormatError(
                f"{where(path)}: frame '{gname}' block{k}_values has shape {ds.shape}; expected "
                f"{T} rows x {len(items)} columns (one per block{k}_items label)")
        unknown = [c for c in items if c not in pos]
        if unknown:
            raise DataFormatError(
                f"{where(path)}: frame '{gname}' block{k}_items labels {unknown[:5]} are not in axis0")
        idx = np.fromiter((pos[c] for c in items), dtype=np.int64, count=len(items))
        if lazy is not None:
            if nblocks != 1 or items != columns:
                raise DataFormatError(
                    f"{where(path)}: frame '{gname}' holds its {N} sensors in {nblocks} block(s) "
                    f"{'in another order than axis0' if nblocks == 1 else ''}; lazy reading expects one block "
                    f"in axis0 order. Read it with lazy=False (data.lazy=false), or rewrite it once with "
                    f"stgraph.io.write_series")
            from .lazy import H5Values
            values = H5Values(path, ds.name, time_axis=0 if transposed else 1, **lazy)
        else:
            _copy_block(ds, transposed, values, idx)
        np.add.at(filled, idx, 1)
    if (filled != 1).any():
        bad = [columns[i] for i in np.flatnonzero(filled != 1)[:5]]
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' columns {bad} appear in no block or in several; "
            f"expected each axis0 label in exactly one block<k>_items")
    null = _attr_float(g, "stgraph_null_value", path)
    channel = _attr_str(g.attrs, "stgraph_channel")
    # a pandas frame is the METR-LA / PEMS-BAY / LargeST layout: a dead detector is recorded as 0
    origin = "stored in the file" if null is not None else "the METR-LA / PEMS-BAY HDF5 layout's convention"
    return RawTable(values, timestamps, columns, [channel] if channel else None,
                    0.0 if null is None else float(null), reason, origin)


def _copy_block(ds: h5py.Dataset, transposed: bool, out: np.ndarray, idx: np.ndarray,
                cells_per_read: int = 1 << 18) -> None:
    """``out[:, idx] = block`` reading ~``cells_per_read`` cells (1-2 MB) at a time, so the block
    never sits in memory whole next to ``out`` (METR-LA's frame is stored ``[N, T]``, sensors by
    time, and must be transposed): reading costs ``out`` and one slice more."""
    T = out.shape[0]
    step = max(1, cells_per_read // max(1, len(idx)))
    for r0 in range(0, T, step):
        r1 = min(T, r0 + step)
        out[r0:r1, idx] = ds[r0:r1] if transposed else ds[:, r0:r1].T


def _labels(ds: h5py.Dataset, encoding: str, path) -> list[str]:
    """Column labels as strings: bytes decoded, integers printed."""
    kind = _attr_str(ds.attrs, "kind", "")
    data = ds[()]
    if data.dtype.kind == "S":
        try:
            return np.char.decode(data, encoding).tolist()
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{where(path)}: {ds.name} labels are not {encoding} text ({exc})") from None
    if data.dtype.kind == "U":
        return data.tolist()
    if data.dtype.kind in "iu":
        return [str(int(v)) for v in data]
    if data.dtype.kind == "f" and np.all(np.isfinite(data)) and np.all(data == np.round(data)):
        return [str(int(v)) for v in data]
    raise DataFormatError(
        f"{where(path)}: {ds.name} labels have kind {kind!r} (HDF5 dtype {data.dtype}); expected "
        f"string or integer sensor ids")


def _index(ds: h5py.Dataset, path) -> tuple[np.ndarray | None, str]:
    """The frame's index as ``datetime64[ns]``, honouring its ``kind`` unit."""
    kind = _attr_str(ds.attrs, "kind", "")
    raw = ds[()]
    if kind.startswith("datetime64"):
        unit = "ns" if kind == "datetime64" else kind[len("datetime64["):-1]
        try:
            ts = raw.astype(np.int64).view(f"datetime64[{unit}]")
        except TypeError:
            raise DataFormatError(f"{where(path)}: {ds.name} has kind={kind!r}; unknown datetime unit") from None
        # a 'tz' attribute means the values are UTC; they are kept as naive UTC
        return ts.astype("datetime64[ns]"), ""
    if kind == "date":  # datetime.date ordinals (day 1 = 0001-01-01)
        return (np.datetime64("0001-01-01", "D") + (raw.astype(np.int64) - 1)).astype("datetime64[ns]"), ""
    return None, f"the frame's index ({ds.name}) holds {kind or 'unlabelled'} values, not timestamps"


# --------------------------------------------------------------------- plain
def _parse_plain(g: h5py.Group, path, lazy: dict | None = None) -> RawTable:
    """The plain layout; ``lazy`` (keyword arguments of :class:`~stgraph.io.lazy.H5Values`): leave the values in the file."""
    needed = ("values", "timestamps", "sensor_ids")
    absent = [n for n in needed if _dataset(g, n, path, budget=lazy is None) is None]
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
    unit = _attr_str(tds.attrs, "unit", "ns")
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
    null = _attr_float(g, "null_value", path)
    return RawTable(values, timestamps, ids, channels, null, null_origin="stored in the file")


# ====================================================================== write
def write_series(series: Series, path: str | Path, layout: str = "plain", *, key: str = "df",
                 channel: int | str | None = None, chunk_rows: int | None = None) -> Path:
    """Write ``series`` to an HDF5 file that :func:`read_series` reads back.

    Args:
        series: the series; ``values`` ``[T, N, C]``.
        path: the file to create (replaced if it exists; written to a
            temporary file first so a crash never leaves half a file).
        layout: ``"plain"`` (``values`` ``[T, N, C]`` float32, ``timestamps``
            int64 ns, ``sensor_ids``, attrs ``channels``, ``null_value``) or
            ``"pandas"``: a fixed-format frame, ``T`` rows x ``N`` sensor
            columns of float32, readable by ``pandas.read_hdf(path, key)``.
        key: group name of the pandas frame.
        channel: with ``layout="pandas"``, the channel (name or index) to
            write when the series has several; a frame holds one.
        chunk_rows: store the values in HDF5 chunks of this many time steps (all sensors and
            channels), which a lazy read (``read_series(path, lazy=True)``) fetches one at a time;
            ``None``: contiguous.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise ConfigError(f"write_series: layout={layout!r} is unknown; expected one of {list(LAYOUTS)}")
    if not path.parent.is_dir():
        raise MissingFileError(
            f"{where(path)}: the folder {where(path.parent)} does not exist; create it before writing")
    if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ConfigError(f"write_series: chunk_rows={chunk_rows!r}; expected a number of time steps >= 1, or None")
    series.validate()
    chunks = None if chunk_rows is None else min(int(chunk_rows), series.num_steps)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            if layout == "plain":
                _write_plain(f, series, chunks)
            else:
                _write_frame(f, series, key, channel, path, chunks)
    return path


def _write_plain(f: h5py.File, s: Series, chunk_rows: int | None = None) -> None:
    values = _plain_layout(f, s.timestamps, s.sensor_ids, s.channels, s.null_value, chunk_rows)
    values[...] = s.values


def _plain_layout(f: h5py.File, timestamps, sensor_ids, channels, null_value, chunk_rows):
    """Attributes, ``timestamps`` and ``sensor_ids`` of the plain layout; returns the empty float32
    ``values`` dataset ``[T, N, C]`` (chunked ``[chunk_rows, N, C]`` unless ``None``) to fill."""
    T, N, C = len(timestamps), len(sensor_ids), len(channels)
    f.attrs["stgraph_layout"] = "plain"
    f.attrs["channels"] = np.array(list(channels), dtype=h5py.string_dtype("utf-8"))
    f.attrs["null_value"] = float(null_value)
    values = f.create_dataset("values", shape=(T, N, C), dtype=np.float32,
                              chunks=None if chunk_rows is None else (min(chunk_rows, T), N, C))
    ts = f.create_dataset("timestamps", data=np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64))
    ts.attrs["unit"] = "ns"
    f.create_dataset("sensor_ids", data=np.array(list(sensor_ids), dtype=object), dtype=h5py.string_dtype("utf-8"))
    return values


def write_series_blocks(path: str | Path, timestamps, sensor_ids, channels, blocks, *, null_value: float = 0.0,
                        chunk_rows: int | None = None) -> Path:
    """Write a series too large to hold in memory, in stgraph's plain layout, from row blocks.

    Args:
        timestamps: ``[T]`` (``datetime64``); sensor_ids: ``N`` ids; channels: ``C`` names.
        blocks: an iterable of ``[t_k, N, C]`` arrays whose ``t_k`` add up to ``T``, in time order.
        chunk_rows: HDF5 chunk along time (what a lazy read fetches at a time); ``None``: contiguous.

    The file is written to a temporary file and renamed into place (:func:`stgraph.files.atomic_path`).
    Raises :class:`DataFormatError` naming the block whose shape or row count is wrong.
    """
    path = Path(path)
    T, N, C = len(timestamps), len(sensor_ids), len(channels)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            values = _plain_layout(f, timestamps, sensor_ids, channels, null_value, chunk_rows)
            row = 0
            for k, blk in enumerate(blocks):
                blk = np.asarray(blk, dtype=np.float32)
                if blk.ndim != 3 or blk.shape[1:] != (N, C) or row + blk.shape[0] > T:
                    raise DataFormatError(f"{where(path)}: block {k} has shape {blk.shape} at row {row}; expected "
                                          f"[t, {N}, {C}] with at most {T - row} rows left of {T}")
                values[row:row + blk.shape[0]] = blk
                row += blk.shape[0]
            if row != T:
                raise DataFormatError(f"{where(path)}: the blocks hold {row} rows; expected {T} (one per timestamp)")
    return path


# attributes pytables puts on every node; pandas reads the file through pytables
_EMPTY = h5py.Empty(np.dtype("S1"))
_PICKLED_NONE = np.bytes_(b"N.")  # pytables unpickles string attrs: this reads back as None


def _text_attr(obj, name: str, text: str) -> None:
    """A fixed-length UTF-8 string attribute: pytables (so pandas) reads it as ``str``."""
    raw = text.encode("utf-8")
    obj.attrs.create(name, np.bytes_(raw), dtype=h5py.string_dtype("utf-8", max(1, len(raw))))


def _node_attrs(obj, cls: str, version: str) -> None:
    _text_attr(obj, "CLASS", cls)
    obj.attrs["TITLE"] = _EMPTY
    _text_attr(obj, "VERSION", version)


def _write_frame(f: h5py.File, s: Series, key: str, channel, path, chunk_rows: int | None = None) -> None:
    if channel is None:
        if s.num_channels != 1:
            raise DataFormatError(
                f"{where(path)}: the series has {s.num_channels} channels {s.channels} but a pandas "
                f"frame holds one; pass channel='{s.channels[0]}' (or an index) to write one of "
                f"them, or use layout='plain'")
        c = 0
    else:
        c = s.channel_index(channel)[0]
    name = str(key).strip("/")
    if not name or "/" in name:
        raise ConfigError(f"write_series: key={key!r}; expected a single group name such as 'df'")

    _node_attrs(f, "GROUP", "1.0")
    _text_attr(f, "PYTABLES_FORMAT_VERSION", "2.1")
    g = f.create_group(name)
    _node_attrs(g, "GROUP", "1.0")
    for attr, val in (("pandas_type", "frame"), ("pandas_version", "0.15.2"), ("encoding", "UTF-8"),
                      ("errors", "strict"), ("axis0_variety", "regular"), ("axis1_variety", "regular"),
                      ("block0_items_variety", "regular")):
        _text_attr(g, attr, val)
    g.attrs["ndim"] = np.int64(2)
    g.attrs["nblocks"] = np.int64(1)
    # ignored by pandas; lets read_series restore the channel name and null convention
    _text_attr(g, "stgraph_channel", s.channels[c])
    g.attrs["stgraph_null_value"] = np.float64(s.null_value)

    encoded = [sid.encode("utf-8") for sid in s.sensor_ids]
    labels = np.array(encoded, dtype=f"S{max(1, max(len(b) for b in encoded))}")
    for ds_name in ("axis0", "block0_items"):
        ds = g.create_dataset(ds_name, data=labels)
        _array_attrs(ds)
        _text_attr(ds, "kind", "string")
        ds.attrs["name"] = _PICKLED_NONE
        ds.attrs["nan_rep"] = _EMPTY
    ax1 = g.create_dataset("axis1", data=s.timestamps.astype("datetime64[ns]").astype(np.int64))
    _array_attrs(ax1)
    _text_attr(ax1, "index_class", "datetime")
    _text_attr(ax1, "kind", "datetime64[ns]")
    ax1.attrs["name"] = _PICKLED_NONE
    vals = g.create_dataset("block0_values", data=np.ascontiguousarray(s.values[:, :, c], dtype=np.float32),
                            chunks=None if chunk_rows is None else (chunk_rows, s.num_nodes))
    _array_attrs(vals)


def _array_attrs(ds: h5py.Dataset) -> None:
    _node_attrs(ds, "ARRAY", "2.4")
    _text_attr(ds, "FLAVOR", "numpy")
    ds.attrs["transposed"] = np.uint8(1)
