"""Which series format a file holds, told by its content: :func:`sniff_format`.

HDF5 files start with the signature ``\\x89HDF\\r\\n\\x1a\\n`` (at offset 0, or 512, 1024, ... when
the file has a user block), ``.npz`` archives with the zip signature ``PK\\x03\\x04``, ``.npy`` arrays
with ``\\x93NUMPY``, and anything else that is UTF-8 text is a wide CSV. Gzip, pickles, UTF-16 and
text in another 8-bit encoding are refused with a message saying what the file is.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from ..errors import DataFormatError, MissingFileError, where

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
NPY_SIGNATURE = b"\x93NUMPY"

#: accepted ``format=`` names -> canonical format
FORMATS = {"hdf5": "hdf5", "h5": "hdf5", "npz": "npz", "npy": "npz", "csv": "csv", "txt": "csv"}


def sniff_format(path: str | Path) -> str:
    """``"hdf5"``, ``"npz"`` or ``"csv"`` from the first bytes of ``path``.

    Raises:
        MissingFileError: the file does not exist.
        DataFormatError: the path is a directory, the file is empty, or its
            content is none of the supported formats.
    """
    path = existing_file(path)
    size = path.stat().st_size
    if size == 0:
        raise DataFormatError(
            f"{where(path)}: the file is empty (0 bytes); expected an HDF5, .npz or CSV sensor "
            f"series. Re-download or re-export it.")
    with open(path, "rb") as fh:
        head = fh.read(65536)
        if _has_hdf5_signature(fh, size):
            return "hdf5"
    if head.startswith(ZIP_SIGNATURES) or head.startswith(NPY_SIGNATURE):
        return "npz"
    if head.startswith(b"\x1f\x8b"):
        raise DataFormatError(
            f"{where(path)}: the file is gzip-compressed; expected an uncompressed HDF5, .npz or "
            f"CSV file. Decompress it first (gunzip).")
    if (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5) or head.startswith((b"(lp", b"(dp")):
        raise DataFormatError(
            f"{where(path)}: is a Python pickle (a road graph such as DCRNN's adj_mx.pkl?), not a sensor "
            f"series; expected an HDF5, .npz or CSV series. Pass a pickle as the graph (--graph), "
            f"the series as the data (--data)")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataFormatError(
            f"{where(path)}: is UTF-16 text (what Excel writes as 'Unicode Text'); expected UTF-8. "
            f"Save it as 'CSV UTF-8', or convert it: iconv -f UTF-16 -t UTF-8")
    if _is_text(head, complete=len(head) == size):
        return "csv"
    bad = _not_utf8(head, complete=len(head) == size)
    if bad is not None:
        offset, byte = bad
        line = head[:offset].count(b"\n") + 1
        raise DataFormatError(
            f"{where(path)}: looks like text but is not UTF-8 (byte 0x{byte:02x} at offset {offset}, "
            f"line {line}); expected a UTF-8 CSV. Save it as 'CSV UTF-8', "
            f"or convert it, e.g. iconv -f CP1252 -t UTF-8")
    raise DataFormatError(
        f"{where(path)}: unknown file format (first bytes {head[:8]!r}); expected HDF5 "
        f"(starts with {HDF5_SIGNATURE!r}), .npz (zip, starts with b'PK\\x03\\x04') or UTF-8 CSV text")


def _has_hdf5_signature(fh, size: int) -> bool:
    """The HDF5 superblock sits at offset 0, 512, 1024, 2048, ..."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        fh.seek(offset)
        if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _is_text(head: bytes, complete: bool) -> bool:
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _not_utf8(head: bytes, complete: bool) -> tuple[int, int] | None:
    """``(offset, byte)`` of the first non-UTF-8 byte of text in another 8-bit
    encoding (CP1252, Latin-1); ``None`` when ``head`` does not look like text."""
    if b"\x00" in head:
        return None
    printable = sum(1 for b in head if b >= 0x20 or b in (0x09, 0x0A, 0x0D))
    if not head or printable < 0.95 * len(head):
        return None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError as exc:
        if sum(1 for b in head if b >= 0x80) > 0.1 * len(head):
            return None  # mostly high bytes: binary, not text
        return exc.start, head[exc.start]
    return None


def existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            f"{where(path)}: series file not found; expected an HDF5, .npz or CSV file there. "
            f"Check the path, or download the dataset first (stgraph data download).")
    if path.is_dir():
        raise DataFormatError(f"{where(path)}: is a directory; expected a series file (HDF5, .npz or CSV)")
    return path
