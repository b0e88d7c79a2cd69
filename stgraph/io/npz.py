"""PEMS03/04/07/08 ``.npz`` archives (and bare ``.npy`` arrays).

The archive holds one array ``data`` of shape ``[T, N, C]`` (or ``[T, N]``):
PEMS04/08 have ``C = 3`` channels (flow, occupancy, speed), PEMS03/07 one
(flow). There are no timestamps and no sensor ids: the caller gives ``start``
and ``freq`` (the dataset manifest knows them) and sensors are named
``'0' .. 'N-1'``.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, where
from .raw import RawTable, check_declared_size
from .sniff import NPY_SIGNATURE

#: channel names by channel count, following the PEMS0X convention
PEMS_CHANNELS = {1: ["flow"], 3: ["flow", "occupancy", "speed"]}


def _check_members(names: list[str], path) -> None:
    """A zip that holds no ``.npy`` member is not a numpy archive: say what it is."""
    if any(n.endswith(".npy") for n in names):
        return
    if "xl/workbook.xml" in names or "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
        raise DataFormatError(
            f"{where(path)}: is an Excel workbook (.xlsx), not a .npz or CSV series; export the sheet "
            f"with 'Save As' -> 'CSV UTF-8' (one column per sensor, one row per time step) and read that")
    shown = names[:10]
    raise DataFormatError(
        f"{where(path)}: is a zip archive without numpy arrays (members: {shown}"
        f"{' ...' if len(names) > 10 else ''}); expected a .npz holding an array 'data' [T, N, C]. "
        f"Unzip it and read the series file inside")


def _check_header(fh, what: str, path, *, available: int, compressed_size: int | None = None) -> None:
    """Read the ``.npy`` header at ``fh`` and refuse a declared shape that the file cannot hold
    (``available``: bytes after the header's start) or that exceeds the memory budget."""
    start = fh.tell()
    try:
        major, _ = np.lib.format.read_magic(fh)
        if major == 1:
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except ValueError:
        return  # np.load reports a damaged header itself
    header = fh.tell() - start
    if dtype.hasobject:
        return  # refused by allow_pickle=False, with its own message
    check_declared_size(shape, dtype.itemsize, what, path, stored=available - header,
                        compressed=False)
    if compressed_size is not None:
        check_declared_size(shape, dtype.itemsize, what, path, stored=compressed_size, compressed=True)


def parse_npz(path: str | Path, *, key: str | None = None) -> RawTable:
    """Parse ``path`` (``.npz`` with array ``key``, default ``data``, or a ``.npy``).

    Raises:
        DataFormatError: corrupted archive, no such array (the message lists
            the arrays found), object arrays, or not ``[T, N]`` / ``[T, N, C]``.
    """
    name = "data" if key is None else str(key)
    is_npy = False
    try:
        # open the file here: np.load(path) leaks its handle when the zip is corrupted
        with open(path, "rb") as fh:
            is_npy = fh.read(len(NPY_SIGNATURE)) == NPY_SIGNATURE
            fh.seek(0)
            if is_npy:
                _check_header(fh, "the .npy array", path, available=Path(path).stat().st_size)
                fh.seek(0)
                data = np.load(fh, allow_pickle=False)
            else:
                zf = zipfile.ZipFile(fh)
                _check_members(zf.namelist(), path)
                info = next((i for i in zf.infolist() if i.filename in (name + ".npy", name)), None)
                if info is not None:
                    with zf.open(info) as member:
                        _check_header(member, f"array '{name}'", path, available=info.file_size,
                                      compressed_size=info.compress_size if info.compress_type else None)
                    check_declared_size((info.file_size,), 1, f"array '{name}' (uncompressed)", path,
                                        stored=info.compress_size, compressed=bool(info.compress_type))
                fh.seek(0)
                with np.load(fh, allow_pickle=False) as archive:
                    if name not in archive.files:
                        raise DataFormatError(
                            f"{where(path)}: the archive has no array '{name}'; arrays found: "
                            f"{archive.files[:20]}. Pass key= to name the one holding the [T, N, C] readings")
                    data = archive[name]
    except DataFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataFormatError(
            f"{where(path)}: not a readable {'.npy' if is_npy else '.npz'} file, it is truncated or "
            f"corrupted ({exc}); re-download it") from None
    except ValueError as exc:
        raise DataFormatError(
            f"{where(path)}: array '{name}' cannot be loaded ({exc}); expected a numeric array "
            f"saved without pickle") from None
    if data.dtype.kind not in "fiub":
        raise DataFormatError(
            f"{where(path)}: array '{name}' has dtype {data.dtype}; expected numeric sensor readings")
    if data.ndim not in (2, 3) or 0 in data.shape:
        raise DataFormatError(
            f"{where(path)}: array '{name}' has shape {data.shape}; expected [T, N, C] or [T, N] "
            f"(time steps, sensors, channels)")
    channels = PEMS_CHANNELS.get(1 if data.ndim == 2 else data.shape[2])
    ids = [str(i) for i in range(data.shape[1])]
    return RawTable(data, None, ids, channels, None, no_time_reason="a .npz array has no timestamps")

