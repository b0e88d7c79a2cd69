"""Safe access to the objects of an HDF5 file: attributes of a known type and datasets whose bytes
are in the file, with a plausible declared size (:func:`safe_dataset`). Both HDF5 layouts
(:mod:`.hdf5` plain, :mod:`.hdf5_frame` pandas) read through them.
"""
from __future__ import annotations

import h5py
import numpy as np

from ..errors import DataFormatError, where
from .raw import check_declared_size

__all__ = ["attr_str", "attr_int", "attr_float", "safe_dataset"]


def attr_str(attrs, name: str, default: str | None = None) -> str | None:
    if name not in attrs:
        return default
    v = attrs[name]
    if isinstance(v, h5py.Empty):
        return ""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def attr_int(obj, name: str, path, default: int | None = None, lo: int = 0) -> int:
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


def attr_float(obj, name: str, path) -> float | None:
    if name not in obj.attrs:
        return None
    v = obj.attrs[name]
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    shown = repr(v)
    raise DataFormatError(f"{where(path)}: attribute '{name}' of {obj.name} is {shown[:60]}; expected a number")


def safe_dataset(g: h5py.Group, name: str, path, budget: bool = True) -> h5py.Dataset | None:
    """``g[name]`` when it is a dataset whose bytes are in this file and whose declared size is
    plausible (within the memory budget unless ``budget=False``: a lazy read); ``None`` when absent or
    not a dataset.

    External links, external raw storage (``createsafe_dataset(..., external=[...])``, which reads any
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
