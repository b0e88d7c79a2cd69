"""Pandas-frame HDF5 series ("fixed" format, written by ``DataFrame.to_hdf``): :func:`parse_frame`.

METR-LA ``metr-la.h5`` (group ``df``), PEMS-BAY ``pems-bay.h5`` and LargeST ``ca_his_2019.h5``
(group ``t``, integer column labels). The group holds ``axis0`` (column labels = sensor ids, bytes or
integers), ``axis1`` (the index: int64 timestamps whose unit is in its ``kind`` attribute, e.g.
``b"datetime64[us]"``; plain ``b"datetime64"`` in older files means ns), and for every block ``k``
the labels ``block{k}_items`` and the values ``block{k}_values`` (stored ``[T, n_k]`` when its
``transposed`` attribute is 1). Columns are put back in ``axis0`` order. A frame is one channel.
"""
from __future__ import annotations

import h5py
import numpy as np

from ..errors import DataFormatError, where
from .h5safe import attr_float, attr_int, attr_str, safe_dataset
from .raw import RawTable, check_declared_size

__all__ = ["parse_frame", "copy_block"]


def parse_frame(g: h5py.Group, path, lazy: dict | None = None) -> RawTable:
    """A pandas frame; ``lazy`` (keyword arguments of :class:`~stgraph.io.lazy.H5Values`): leave the values in the file."""
    gname = g.name
    nblocks = _frame_blocks(g, path, lazy)
    encoding = attr_str(g.attrs, "encoding", "UTF-8") or "UTF-8"
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
    values = _read_blocks(g, path, nblocks, encoding, columns, pos, T, lazy)
    null = attr_float(g, "stgraph_null_value", path)
    channel = attr_str(g.attrs, "stgraph_channel")
    # a pandas frame is the METR-LA / PEMS-BAY / LargeST layout: a dead detector is recorded as 0
    origin = "stored in the file" if null is not None else "the METR-LA / PEMS-BAY HDF5 layout's convention"
    return RawTable(values, timestamps, columns, [channel] if channel else None,
                    0.0 if null is None else float(null), reason, origin)


def _frame_blocks(g: h5py.Group, path, lazy: dict | None) -> int:
    """The frame's ``nblocks`` after checking it is a fixed-format frame of one column level whose
    axes and blocks are all there."""
    gname = g.name
    ptype = attr_str(g.attrs, "pandas_type")
    if ptype == "frame_table":
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' was written with format='table'; only the fixed format "
            f"is read. Re-save it with df.to_hdf(path, key='{gname.strip('/')}', format='fixed')")
    if ptype != "frame":
        raise DataFormatError(
            f"{where(path)}: group '{gname}' has pandas_type={ptype!r}; expected 'frame' "
            f"(a DataFrame with one column per sensor)")
    for axis in ("axis0", "axis1"):
        variety = attr_str(g.attrs, f"{axis}_variety", "regular")
        if variety != "regular":
            raise DataFormatError(
                f"{where(path)}: frame '{gname}' has a {variety} {axis} (MultiIndex); expected one "
                f"level of sensor ids as columns and timestamps as index")
    nblocks = attr_int(g, "nblocks", path, default=0)
    members = len(g)
    if 2 * nblocks + 2 > members:
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' declares nblocks={nblocks}, which needs {2 * nblocks + 2} datasets, "
            f"but the group holds {members}; the attribute is corrupted")
    needed = ["axis0", "axis1"] + [f"block{k}_{p}" for k in range(nblocks) for p in ("items", "values")]
    absent = [n for n in needed if safe_dataset(g, n, path, budget=lazy is None) is None]
    if absent or nblocks == 0:
        found = sorted(g.keys())
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' lacks {absent[:10] or ['blocks (nblocks=0)']}"
            f"{' ...' if len(absent) > 10 else ''}; found {found[:10]}{' ...' if len(found) > 10 else ''}. "
            f"Expected axis0, axis1 and block<k>_items/block<k>_values")
    return nblocks


def _read_blocks(g: h5py.Group, path, nblocks: int, encoding: str, columns: list[str], pos: dict[str, int],
                 T: int, lazy: dict | None):
    """The frame's ``[T, N]`` float32 values in ``axis0`` order (an :class:`~stgraph.io.lazy.H5Values` when
    ``lazy``), every column from exactly one block."""
    gname, N = g.name, len(columns)
    values = None if lazy is not None else np.empty((T, N), dtype=np.float32)
    filled = np.zeros(N, dtype=np.int64)
    for k in range(nblocks):
        items = _labels(g[f"block{k}_items"], encoding, path)
        ds = g[f"block{k}_values"]
        if ds.dtype.kind not in "fiub":
            raise DataFormatError(
                f"{where(path)}: frame '{gname}' block {k} holds non-numeric data (HDF5 dtype {ds.dtype}) "
                f"for columns {items[:5]}; expected numeric sensor readings only")
        transposed = bool(attr_int(ds, "transposed", path, default=0))
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
            copy_block(ds, transposed, values, idx)
        np.add.at(filled, idx, 1)
    if (filled != 1).any():
        bad = [columns[i] for i in np.flatnonzero(filled != 1)[:5]]
        raise DataFormatError(
            f"{where(path)}: frame '{gname}' columns {bad} appear in no block or in several; "
            f"expected each axis0 label in exactly one block<k>_items")
    return values


def copy_block(ds: h5py.Dataset, transposed: bool, out: np.ndarray, idx: np.ndarray,
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
    kind = attr_str(ds.attrs, "kind", "")
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
    kind = attr_str(ds.attrs, "kind", "")
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
