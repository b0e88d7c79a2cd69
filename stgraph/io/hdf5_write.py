"""Write HDF5 series files that :func:`~stgraph.io.read_series` reads back (h5py only, no pandas / pytables).

:func:`write_series` writes the plain layout (datasets ``values`` ``[T, N, C]``, ``timestamps`` int64
ns, ``sensor_ids``; attributes ``channels`` and ``null_value``) or a fixed-format pandas frame that
``pandas.read_hdf`` reads; :func:`write_series_blocks` writes the plain layout from row blocks, for a
series too large to hold in memory. Every file is written to a temporary file and renamed into place.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError, DataFormatError, MissingFileError, where
from ..files import atomic_path
from .series import Series

__all__ = ["LAYOUTS", "write_series", "write_series_blocks"]

LAYOUTS = ("plain", "pandas")


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
