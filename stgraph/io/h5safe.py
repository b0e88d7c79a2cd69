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
    check_filters(plist, full, path, obj.id)
    stored = obj.id.get_storage_size() if obj.size else 0
    check_declared_size(obj.shape or (), obj.dtype.itemsize, f"dataset '{full}'", path,
                        stored=stored if obj.size else None, compressed=compressed or obj.chunks is not None,
                        budget=budget)
    return obj


#: HDF5 filters h5py does not bring, by registered id: (name, the package that provides the filter)
FILTER_PACKAGES = {32001: ("Blosc", "hdf5plugin"), 32026: ("Blosc2", "hdf5plugin"), 32004: ("LZ4", "hdf5plugin"),
                   32008: ("Bitshuffle", "hdf5plugin"), 32015: ("Zstandard", "hdf5plugin"),
                   307: ("bzip2", "hdf5plugin"), 32013: ("ZFP", "hdf5plugin"), 32017: ("SZ", "hdf5plugin"),
                   32024: ("SZ3", "hdf5plugin"), 32018: ("FCIDECOMP", "hdf5plugin")}


def check_filters(plist, full: str, path, dsid=None) -> None:
    """Every filter of a dataset's pipeline (its creation property list ``plist``; ``dsid`` its dataset id) must
    be available here; an unavailable one is named with the package that provides it (not reported as a
    damaged file). An optional filter that no stored chunk went through is no obstacle.

    Raises:
        DataFormatError: naming the file, the dataset, the filter (id and name) and what to install.
    """
    for i in range(plist.get_nfilters()):
        code, flags, _, name = plist.get_filter(i)
        if h5py.h5z.filter_avail(code) or (_load_plugins() and h5py.h5z.filter_avail(code)):
            continue
        if flags & h5py.h5z.FLAG_OPTIONAL and not _applied(dsid, i):
            continue  # an optional filter skipped when the file was written (no plugin there either): readable
        known, package = FILTER_PACKAGES.get(code, (name.decode(errors="replace") if isinstance(name, bytes)
                                                     else str(name), None))
        fix = (f"`pip install {package}` (stgraph loads it when installed)" if package
               else "install the HDF5 plugin that provides it (HDF5_PLUGIN_PATH)")
        raise DataFormatError(
            f"{where(path)}: dataset '{full}' is compressed with the HDF5 filter {known or 'unnamed'} (id {code}), "
            f"which this h5py does not have: the file is not damaged, the filter is missing. {fix[0].upper()}"
            f"{fix[1:]}, or rewrite the file without it (e.g. gzip)")


def _load_plugins() -> bool:
    """Import ``hdf5plugin`` where installed (it registers its filters with h5py); whether it was."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        return False
    return True


def _applied(dsid, i: int, most: int = 1000) -> bool:
    """Whether filter ``i`` of the pipeline was applied to any of the first ``most`` stored chunks of the
    dataset ``dsid`` (bit ``i`` of a chunk's filter mask is set where it was skipped)."""
    try:
        n = dsid.get_num_chunks()
        return any(not dsid.get_chunk_info(k).filter_mask & (1 << i) for k in range(min(n, most)))
    except (AttributeError, RuntimeError, ValueError, OSError):
        return True
