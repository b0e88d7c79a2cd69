"""Unpack dataset archives safely: :func:`extract`.

:func:`extract` unpacks ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``
and ``.tar.xz`` archives after checking that no member would land outside the
target folder (absolute paths, ``..``, links pointing out, device files).
"""
from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import DownloadError
from ..files import atomic_path
from .download import CHUNK

__all__ = ["extract", "is_archive"]


def is_archive(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2",
                          ".tar.xz", ".txz"))


def _safe_target(root: Path, name: str, archive: Path) -> Path:
    """``root / name`` after checking that it stays inside ``root``."""
    if not name or "\x00" in name:
        raise DownloadError(f"'{archive}': member with an empty or invalid name {name!r}; "
                            f"refusing to extract")
    posix = PurePosixPath(name.replace("\\", "/"))
    if (posix.is_absolute() or PureWindowsPath(name).drive or name.startswith(("/", "\\"))
            or ".." in posix.parts):
        raise DownloadError(
            f"'{archive}': member {name!r} would be written outside '{root}' (absolute path or "
            f"'..'); refusing to extract. The archive is unsafe; do not unpack it by hand either")
    target = (root / Path(*posix.parts)).resolve()
    if target != root and root not in target.parents:
        raise DownloadError(f"'{archive}': member {name!r} resolves to '{target}', outside "
                            f"'{root}'; refusing to extract")
    return target


def _check_link(root: Path, member_path: Path, link: str, name: str, archive: Path,
                hard: bool) -> None:
    if not link or PurePosixPath(link).is_absolute() or PureWindowsPath(link).drive:
        raise DownloadError(f"'{archive}': link {name!r} -> {link!r} points outside '{root}' "
                            f"(absolute); refusing to extract")
    base = root if hard else member_path.parent
    target = (base / link).resolve()
    if target != root and root not in target.parents:
        raise DownloadError(f"'{archive}': link {name!r} -> {link!r} points outside "
                            f"'{root}'; refusing to extract")


def extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Unpack ``archive`` into ``target`` and return the extracted file paths.

    Every member is checked before anything is written: absolute names,
    ``..`` components, symbolic or hard links that point outside ``target``,
    and device/FIFO members make it raise :class:`DownloadError` with nothing
    extracted.
    """
    archive = Path(archive)
    root = Path(target)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    if not archive.is_file():
        raise DownloadError(f"'{archive}': archive not found; expected a .zip or .tar(.gz) file")
    name = archive.name.lower()
    out: list[Path] = []
    if name.endswith(".zip") or (zipfile.is_zipfile(archive) and not tarfile.is_tarfile(archive)):
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as e:
            raise DownloadError(f"'{archive}': not a valid zip file ({e}); delete it and "
                                f"download it again") from None
        with zf:
            infos = zf.infolist()
            for info in infos:
                dest = _safe_target(root, info.filename, archive)
                ftype = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records none
                if ftype == stat.S_IFLNK:
                    link = zf.read(info).decode("utf-8", "replace")
                    _check_link(root, dest, link, info.filename, archive, hard=False)
                elif ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise DownloadError(f"'{archive}': member {info.filename!r} is not a regular "
                                        f"file or folder; refusing to extract")
            for info in infos:
                dest = _safe_target(root, info.filename, archive)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest) as tmp, zf.open(info) as src, open(tmp, "wb") as dst:
                    for block in iter(lambda: src.read(CHUNK), b""):
                        dst.write(block)
                out.append(dest)
        return out
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DownloadError(f"'{archive}': not a readable zip or tar archive ({e}); expected "
                            f".zip, .tar, .tar.gz, .tar.bz2 or .tar.xz") from None
    with tf:
        members = tf.getmembers()
        for m in members:
            dest = _safe_target(root, m.name, archive)
            if m.issym() or m.islnk():
                _check_link(root, dest, m.linkname, m.name, archive, hard=m.islnk())
            elif not (m.isfile() or m.isdir()):
                raise DownloadError(f"'{archive}': member {m.name!r} is a device, FIFO or other "
                                    f"special file; refusing to extract")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tf.extractall(root, members=members, **kwargs)
        except getattr(tarfile, "FilterError", tarfile.TarError) as e:  # pragma: no cover
            raise DownloadError(f"'{archive}': unsafe member refused: {e}") from None
        out = [(root / m.name).resolve() for m in members if m.isfile()]
    return out
