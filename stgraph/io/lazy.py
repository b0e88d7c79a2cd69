"""Series values that stay in their HDF5 file: ``read_series(path, lazy=True)``.

:class:`H5Values` stands where a ``[T, N, C]`` float32 array would: it has ``shape``, ``dtype`` and
``ndim``, a row slice ``values[a:b]`` reads those rows from the file, and :meth:`H5Values.take_rows`
gathers the rows of a batch of windows ``[B, L]`` into a tensor ``[B, L, N, C']``. Reads are aligned
to the dataset's row chunks (its HDF5 chunk along time, or about 1 MB of rows for a contiguous
dataset); chunks are kept in a least-recently-used cache of ``cache_bytes``, and consecutive missing
chunks are read with one h5py call. Values are converted as :func:`~stgraph.io.read.read_series`
converts them (float32; NaN becomes the null value when that is not NaN), so a lazy series gives
the bytes of the loaded one. Memory stays about the cache plus one batch, whatever the file's size.

The file is opened on first use in each process (never shared across a fork) and read only.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch

from ..errors import ConfigError, DataFormatError, where

#: default cache of row chunks per lazy series (bytes)
DEFAULT_CACHE_BYTES = 256 << 20
_CONTIGUOUS_CHUNK_BYTES = 1 << 20  # rows read at a time from a dataset HDF5 stores unchunked


class H5Values:
    """A read-only ``[T, N, C]`` float32 view of a dataset in an HDF5 file.

    Args:
        path: the HDF5 file.
        name: the dataset inside it: ``[T, N, C]`` or ``[T, N]`` (plain layout), ``[T, N]`` (a pandas
            block stored transposed) or ``[N, T]`` (``time_axis=1``).
        time_axis: 0, or 1 for a dataset stored sensors x time.
        null_value: NaN in the file becomes this value (unless it is NaN itself).
        cache_bytes: size of the LRU cache of row chunks.
    """

    def __init__(self, path: str | Path, name: str, *, time_axis: int = 0, null_value: float = 0.0,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)) or cache_bytes < 1:
            raise ConfigError(f"cache_bytes = {cache_bytes!r}: expected a positive number of bytes, e.g. {256 << 20}")
        self.path = str(path)
        self.name = name
        self.time_axis = int(time_axis)
        self.null_value = float(null_value)
        self.cache_bytes = int(cache_bytes)
        self._file = None
        self._pid = None
        ds = self._dataset()
        shape = ds.shape
        if ds.ndim == 2:
            T, N = (shape[1], shape[0]) if self.time_axis == 1 else shape
            self.shape = (int(T), int(N), 1)
        else:
            self.shape = tuple(int(d) for d in shape)
        self.file_dtype = ds.dtype
        chunks = ds.chunks
        row_bytes = self.shape[1] * self.shape[2] * 4
        if chunks is not None:
            self.chunk_rows = int(chunks[self.time_axis])
        else:
            # about 1 MB of rows, at most a 16th of the cache (so it holds several)
            self.chunk_rows = max(1, min(_CONTIGUOUS_CHUNK_BYTES, self.cache_bytes // 16) // max(1, row_bytes))
        self.chunk_bytes = self.chunk_rows * row_bytes
        self.max_chunks = max(1, self.cache_bytes // max(1, self.chunk_bytes))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        #: chunk reads from the file and cache hits since creation (see :meth:`stats`)
        self.reads = 0
        self.hits = 0

    # ------------------------------------------------------------------ array-like
    dtype = np.dtype(np.float32)
    ndim = 3
    device = torch.device("cpu")

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"H5Values('{self.path}:{self.name}', shape={self.shape}, chunk_rows={self.chunk_rows}, "
                f"cache={self.max_chunks} chunks)")

    def __getitem__(self, key) -> np.ndarray:
        """``values[a:b]`` (rows ``[a, b)``, step 1) as a ``[b - a, N, C]`` float32 array read from the file."""
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise DataFormatError(f"{where(self.path)}: a lazy series reads row ranges values[a:b] (and batches of "
                                  f"windows); got the index {key!r}. Read it with lazy=False for other indexing")
        a, b, _ = key.indices(self.shape[0])
        return self._read(a, max(a, b))

    def channels(self, index: Sequence[int]) -> "H5Channels":
        """The ``[T, N, len(index)]`` view of some channels (what a :class:`~stgraph.data.ForecastData` keeps)."""
        return H5Channels(self, [int(i) for i in index])

    def stats(self) -> dict:
        """``{"chunk_reads", "cache_hits", "cached_chunks", "chunk_rows", "cache_bytes"}``."""
        return {"chunk_reads": self.reads, "cache_hits": self.hits, "cached_chunks": len(self._cache),
                "chunk_rows": self.chunk_rows, "cache_bytes": self.cache_bytes}

    # ------------------------------------------------------------------ reading
    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataFormatError(f"{where(self.path)}: cannot open the HDF5 file for lazy reading (h5py: "
                                      f"{exc}); it was moved, truncated or replaced since it was opened") from None
            self._pid = os.getpid()
        return self._file[self.name]

    def _read(self, a: int, b: int) -> np.ndarray:
        """Rows ``[a, b)`` converted: float32 ``[b - a, N, C]``, NaN -> null value."""
        ds = self._dataset()
        try:
            raw = ds[:, a:b].T if self.time_axis == 1 else ds[a:b]
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataFormatError(f"{where(self.path)}: cannot read rows [{a}, {b}) of '{self.name}' (h5py "
                                  f"{type(exc).__name__}: {exc}); the file is truncated or corrupted") from None
        out = np.asarray(raw, dtype=np.float32).reshape(b - a, self.shape[1], self.shape[2])
        if not np.isnan(self.null_value):
            nan = np.isnan(out)
            if nan.any():
                out[nan] = np.float32(self.null_value)
        return out

    def _chunks(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """The row chunks ``ids`` (ascending, unique): from the cache, the others read from the file,
        consecutive ones with one call; every chunk read is cached (least recently used ones evicted)."""
        got: dict[int, np.ndarray] = {}
        missing = []
        for k in ids.tolist():
            blk = self._cache.get(k)
            if blk is None:
                missing.append(k)
            else:
                self._cache.move_to_end(k)
                got[k] = blk
                self.hits += 1
        if missing:
            miss = np.asarray(missing)
            runs = np.split(miss, np.flatnonzero(np.diff(miss) != 1) + 1)
            rc, T = self.chunk_rows, self.shape[0]
            for run in runs:
                first, last = int(run[0]), int(run[-1])
                block = self._read(first * rc, min(T, (last + 1) * rc))
                for k in range(first, last + 1):
                    blk = block[(k - first) * rc:(k - first + 1) * rc]
                    blk = blk.copy() if len(run) > 1 else blk  # an evicted chunk frees its memory
                    got[k] = blk
                    self._cache[k] = blk
                    self.reads += 1
                while len(self._cache) > self.max_chunks:
                    self._cache.popitem(last=False)
        return got

    def take_rows(self, rows: torch.Tensor, channels: Sequence[int] | None = None) -> torch.Tensor:
        """Gather ``rows [B, L]`` (int64) -> ``[B, L, N, C']`` float32 on the CPU (``C'``: ``channels``, or all).

        One pass over the distinct row chunks the rows fall in (not over the windows): the rows are
        sorted by chunk once and each chunk fills its rows with one vectorised copy.
        """
        flat = rows.reshape(-1).cpu().numpy().astype(np.int64, copy=False)
        N, C = self.shape[1], self.shape[2]
        cidx = list(range(C)) if channels is None else list(channels)
        out = np.empty((flat.size, N, len(cidx)), dtype=np.float32)
        if flat.size:
            if flat.min() < 0 or flat.max() >= self.shape[0]:
                raise DataFormatError(f"{where(self.path)}: rows {int(flat.min())}..{int(flat.max())} asked of a "
                                      f"series of {self.shape[0]} rows")
            cid = flat // self.chunk_rows
            order = np.argsort(cid, kind="stable")
            ids, first = np.unique(cid[order], return_index=True)
            bounds = np.append(first, flat.size)
            whole = cidx == list(range(C))
            lo = cidx[0]
            span = cidx == list(range(lo, lo + len(cidx)))
            for i, (k, blk) in enumerate(sorted(self._chunks(ids).items())):
                sel = order[bounds[i]:bounds[i + 1]]
                part = blk[flat[sel] - k * self.chunk_rows]
                out[sel] = part if whole else (part[:, :, lo:lo + len(cidx)] if span else part[:, :, cidx])
        return torch.from_numpy(out).view(*rows.shape, N, len(cidx))

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._cache.clear()

    def __getstate__(self) -> dict:  # a worker process opens the file itself
        state = dict(self.__dict__)
        state.update(_file=None, _pid=None, _cache=OrderedDict())
        return state


class H5Channels:
    """Some channels of an :class:`H5Values`, ``[T, N, C']``: what a lazy ``ForecastData`` holds in place
    of the ``raw_inputs`` / ``targets`` tensors. Row slices give tensors; batches use :meth:`take_rows`."""

    def __init__(self, values: H5Values, index: list[int]) -> None:
        bad = [i for i in index if not 0 <= i < values.shape[2]]
        if bad or not index:
            raise ConfigError(f"channels {index} of a series with {values.shape[2]} channels")
        self.values = values
        self.index = index
        self.shape = torch.Size((values.shape[0], values.shape[1], len(index)))
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> torch.Tensor:
        """``view[a:b]``: rows ``[a, b)`` of these channels, a ``[b - a, N, C']`` tensor read from the file."""
        return torch.from_numpy(np.ascontiguousarray(self.values[key][:, :, self.index]))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def take_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows [B, L]`` -> ``[B, L, N, C']`` (see :meth:`H5Values.take_rows`)."""
        return self.values.take_rows(rows, self.index)

    def to(self, device, non_blocking: bool = False) -> "H5Channels":
        """Itself on the CPU; lazy data are gathered on the CPU and batches move to the device."""
        if torch.device(device).type != "cpu":
            raise ConfigError(f"a lazy series is read on the CPU (device '{device}' asked): keep the data on "
                              f"'cpu'; the trainer moves every batch to its device")
        return self

    def __repr__(self) -> str:
        return f"H5Channels({self.values!r}, channels={self.index})"


__all__ = ["H5Values", "H5Channels", "DEFAULT_CACHE_BYTES"]
