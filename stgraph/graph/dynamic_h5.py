"""A graph that changes over time in HDF5: one graph per period, stored as :class:`~stgraph.graph.dynamic.DynamicGraph`
keeps it (:func:`write_dynamic_h5`; :func:`stgraph.graph.dynamic.read_dynamic_graph` reads it through
:func:`read_dynamic_h5`, which gives the checked arrays).

Layout (root of the file, attribute ``stgraph_kind = "dynamic_graph"``):

* ``sensor_ids`` ``[N]`` UTF-8 strings: the nodes;
* ``times`` ``[P]`` UTF-8 ISO timestamps, strictly increasing: period ``p`` starts at ``times[p]`` and holds until
  the next one;
* ``ptr`` ``[P + 1]`` int64: period ``p``'s edges are ``ptr[p]:ptr[p + 1]`` of
* ``edge_index`` ``[2, E_all]`` int64 (source, target positions in ``sensor_ids``) and
* ``edge_weight`` ``[E_all]`` float32 similarities in ``[0, 1]`` (used as they are).

Every dataset is read through :func:`stgraph.io.h5safe.safe_dataset` (no external links or storage, declared
sizes checked). Nodes are put in the series' order when read; an id the series lacks is an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataFormatError, GraphError, where

__all__ = ["KIND", "is_dynamic_h5", "read_dynamic_h5", "write_dynamic_h5"]

#: the root attribute ``stgraph_kind`` of a dynamic graph file
KIND = "dynamic_graph"
_DATASETS = ("sensor_ids", "times", "ptr", "edge_index", "edge_weight")


def is_dynamic_h5(path) -> bool:
    """Whether ``path`` is an HDF5 file stgraph wrote with :func:`write_dynamic_h5` (or in its layout)."""
    p = Path(str(path))
    if p.suffix.lower() not in (".h5", ".hdf5") or not p.is_file():
        return False
    import h5py

    from ..io.h5safe import attr_str
    try:
        with h5py.File(p, "r") as f:
            return attr_str(f.attrs, "stgraph_kind") == KIND
    except OSError:
        return False


def write_dynamic_h5(path, graph) -> Path:
    """Write ``graph`` (a :class:`~stgraph.graph.dynamic.DynamicGraph`) in the layout above, atomically.
    Returns the path."""
    import h5py

    from ..files import atomic_path

    text = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["stgraph_kind"] = KIND
            f.create_dataset("sensor_ids", data=np.array(graph.sensor_ids, dtype=object), dtype=text)
            stamps = np.datetime_as_string(graph.times.astype("datetime64[ns]"), unit="s")
            f.create_dataset("times", data=stamps.astype(object), dtype=text)
            f.create_dataset("ptr", data=graph.ptr.cpu().numpy().astype(np.int64))
            f.create_dataset("edge_index", data=graph.edge_index.cpu().numpy().astype(np.int64))
            f.create_dataset("edge_weight", data=graph.edge_weight.cpu().numpy().astype(np.float32))
    return Path(path)


def read_dynamic_h5(path, sensor_ids: Sequence[str] | None = None) -> dict:
    """Read a dynamic graph file (layout above), its nodes in the order of ``sensor_ids`` (default: the file's):
    ``{'sensor_ids': [N], 'times': [P] datetime64[ns], 'edge_index': [2, E_all] int64, 'edge_weight': [E_all]
    float32, 'ptr': [P + 1] int64, 'source': path}`` (:func:`stgraph.graph.dynamic.read_dynamic_graph` makes the
    ``DynamicGraph``).

    Raises:
        DataFormatError: a dataset missing or of the wrong shape, times not increasing, pointers out of order.
        GraphError: an edge naming a node outside ``sensor_ids``, a weight outside ``[0, 1]``.
    """
    import h5py

    from ..io.h5safe import safe_dataset
    from ..io.sniff import existing_file

    path = existing_file(str(path))
    arrays = {}
    with h5py.File(path, "r") as f:
        for name in _DATASETS:
            ds = safe_dataset(f, name, path)
            if ds is None:
                raise DataFormatError(f"{where(path)}: no dataset '{name}'; a dynamic graph file holds "
                                      f"{list(_DATASETS)} (stgraph.graph.dynamic_h5)")
            arrays[name] = ds.asstr()[()] if name in ("sensor_ids", "times") else ds[()]
    ids = [str(s) for s in arrays["sensor_ids"]]
    times = np.array([str(t) for t in arrays["times"]], dtype="datetime64[ns]")
    ptr, ei, w = (np.asarray(arrays[k]) for k in ("ptr", "edge_index", "edge_weight"))
    _check(path, ids, times, ptr, ei, w)
    if sensor_ids is not None:
        pos = {s: i for i, s in enumerate(str(s) for s in sensor_ids)}
        missing = [s for s in ids if s not in pos]
        if missing:
            raise GraphError(f"{where(path)}: nodes {missing[:5]} are not sensors of the series; expected its ids "
                             f"(e.g. {list(pos)[:3]})")
        ei = np.array([pos[s] for s in ids], dtype=np.int64)[ei] if ei.size else ei
        ids = [str(s) for s in sensor_ids]
    return {"sensor_ids": ids, "times": times, "edge_index": ei.astype(np.int64), "edge_weight": w.astype(np.float32),
            "ptr": ptr.astype(np.int64), "source": str(path)}


def _check(path, ids, times, ptr, ei, w) -> None:
    P, E = times.size, w.size
    if ptr.shape != (P + 1,) or ei.shape != (2, E) or ptr[0] != 0 or ptr[-1] != E or (np.diff(ptr) < 0).any():
        raise DataFormatError(f"{where(path)}: ptr {ptr.shape}, edge_index {ei.shape}, edge_weight {w.shape} for "
                              f"{P} periods; expected ptr [{P + 1}] from 0 to E, not decreasing, edge_index [2, E]")
    if (np.diff(times.astype(np.int64)) <= 0).any():
        raise DataFormatError(f"{where(path)}: times must be strictly increasing (one entry per period)")
    if E and (ei.min() < 0 or ei.max() >= len(ids)):
        raise GraphError(f"{where(path)}: edge_index holds node {int(ei.max())}; expected 0 .. {len(ids) - 1}")
    if E and not (np.isfinite(w).all() and w.min() >= 0 and w.max() <= 1):
        raise GraphError(f"{where(path)}: edge weights {float(np.nanmin(w)):g} .. {float(np.nanmax(w)):g}; "
                         f"expected similarities in [0, 1]")
