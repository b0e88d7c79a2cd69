"""The files stgraph writes, the run folders it locks, the fingerprints it compares.

One place for each job:

* :func:`atomic_path` (and :func:`atomic_write`, :func:`atomic_open` on top of it): every
  file stgraph writes goes to a temporary file in the same folder, is flushed to disk
  (``fsync``) and renamed over the target, so a crash or a full disk leaves the old file
  (or none), never half a file. A target that is a symbolic link is refused: stgraph never
  writes through a link. An ``OSError`` while writing names the file.
* :func:`run_lock`: an exclusive lock on a run folder (``fcntl`` on POSIX, ``msvcrt`` on
  Windows) held by one process at a time; a second one is told who holds it.
* :func:`fingerprint` / :func:`file_fingerprint`: 16 hex digits of SHA-256 over content,
  so a run, a resume or a bench can tell whether its data or graph changed.
* :func:`read_json`: a JSON file stgraph wrote, with errors that name it.
* :func:`owned_outputs` (:func:`check_replaceable` before, :func:`record_written` after): stgraph replaces
  only files it can show it wrote. Each folder it writes outputs into keeps a manifest, ``.stgraph-files.json``
  (file name -> fingerprint of the bytes stgraph wrote); a file in the way that is not in it, or changed since,
  is a :class:`~stgraph.errors.ForeignFileError` naming it unless ``force=True``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DataFormatError, ForeignFileError, RunDirError, where

CHUNK = 1 << 20
log = logging.getLogger(__name__)

__all__ = ["atomic_path", "atomic_write", "atomic_open", "replace_file", "refuse_symlink",
           "check_no_links", "run_lock", "fingerprint", "sha256_file", "file_fingerprint", "read_json",
           "wrap_os_error", "MANIFEST", "written_by_stgraph", "check_replaceable", "record_written", "owned_outputs",
           "manifest_names"]


# ------------------------------------------------------------------ writing
def wrap_os_error(exc: OSError, path, doing: str = "write") -> OSError:
    """An ``OSError`` whose message names ``path`` (``[Errno 27] File too large`` alone does not)."""
    hint = ""
    if exc.errno in (27, 28, 122):  # EFBIG, ENOSPC, EDQUOT
        hint = " (the disk is full or a file-size limit was reached); nothing was replaced"
    text = exc.strerror or str(exc)
    err = OSError(exc.errno, f"cannot {doing} {where(path)}: {text}{hint}")
    err.filename = None  # the message already names it
    return err


def refuse_symlink(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`RunDirError` when ``path`` is a symbolic link (stgraph never writes or deletes through one)."""
    p = Path(path)
    if p.is_symlink():
        raise RunDirError(f"{where(p)}: is a symbolic link (to '{os.readlink(p)}'); stgraph never writes or "
                          f"deletes through a link. Remove the link (or write the {what} elsewhere)")


def check_no_links(run_dir: str | os.PathLike) -> None:
    """Refuse a run folder that is, or holds, a symbolic link (a link there would let stgraph
    overwrite or delete files outside the run)."""
    root = Path(run_dir)
    refuse_symlink(root, "run folder")
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise RunDirError(
                    f"run directory '{root}' holds a symbolic link '{p}' -> '{os.readlink(p)}'; stgraph never "
                    f"writes or deletes through a link in a run directory. Replace the link by the file itself, "
                    f"or choose another out")


def replace_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """fsync ``tmp``, rename it over ``path`` and fsync the folder (``tmp`` is in ``path``'s folder)."""
    path = Path(path)
    refuse_symlink(path)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it becomes ``path``.

    The temporary file is removed on any error (and stale ones of the same name pattern are
    the only files left by a killed process). ``path``'s folder must exist.
    """
    path = Path(path)
    refuse_symlink(path)
    if path.is_dir():
        raise DataFormatError(f"{where(path)}: is a folder; expected a file name to write")
    if not path.parent.is_dir():
        from .errors import MissingFileError
        raise MissingFileError(f"{where(path)}: the folder {where(path.parent)} does not exist; create it "
                               f"before writing")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise wrap_os_error(e, path) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            yield tmp
            replace_file(tmp, path)
        except OSError as e:
            if getattr(e, "filename", None) is None and str(path) in str(e):
                raise
            raise wrap_os_error(e, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns ``Path(path)``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """``open`` a temporary file beside ``path`` for writing; it becomes ``path`` when the block ends."""
    if "w" not in mode:
        raise ValueError(f"atomic_open: mode {mode!r}; expected a writing mode ('w', 'wb')")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


# --------------------------------------------------------------------- lock
def _lock_file(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


def _holder(fh) -> str:
    try:
        fh.seek(0)
        info = json.loads(fh.read().decode("utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info:
        return "another process"
    parts = [f"pid {info.get('pid')}"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    if info.get("since"):
        parts.append(f"since {info['since']}")
    if info.get("command"):
        parts.append(f"running `{info['command']}`")
    return "another process (" + ", ".join(parts) + ")"


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl
    fcntl.flock(fd, fcntl.LOCK_UN)


def _open_lock(lock: Path, read_only: bool) -> int | None:
    """A descriptor of the lock file (created), or ``None`` for a read-only command where it cannot be made."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        return os.open(lock, flags, 0o644)
    except OSError as e:
        if read_only and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            log.info(f"{where(lock.parent)} is read-only: reading the run without a lock")
            return None
        raise wrap_os_error(e, lock, "create the lock file") from None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a holder that ended may have removed it)."""
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str | None = None, *, read_only: bool = False) -> Iterator[Path | None]:
    """Hold an exclusive lock on run folder ``run_dir`` for the block.

    The lock is the file ``.<name>.lock`` beside the folder (so it survives the folder being
    replaced); it records this process's pid, host, start time and command, and is removed when the
    block ends (a refused command leaves none behind). A second process gets :class:`RunDirError` naming
    the holder. The lock ends with the process, even a killed one. ``read_only``: a command that only
    reads the run runs without a lock (yields ``None``) where the folder beside the run cannot be written.
    """
    run_dir = Path(run_dir)
    lock = _lock_file(run_dir)
    for _ in range(20):
        fd = _open_lock(lock, read_only)
        if fd is None:
            yield None
            return
        fh = os.fdopen(fd, "r+b")
        if not _try_lock(fd):
            holder = _holder(fh)
            fh.close()
            raise RunDirError(f"run directory '{run_dir}' is in use by {holder} (lock file '{lock}'); "
                              f"wait for it to finish, or choose another out")
        if _same_file(fd, lock):
            break
        _unlock(fd)  # the holder before us removed this file as it ended: lock the new one
        fh.close()
    else:  # pragma: no cover - twenty holders ending one after the other while we try
        raise RunDirError(f"run directory '{run_dir}' is in use (lock file '{lock}' keeps changing); try again")
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": _dt.datetime.now().isoformat(timespec="seconds"),
                "command": command or " ".join(["stgraph"] + sys.argv[1:])}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info).encode("utf-8"))
        fh.flush()
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if sys.platform != "win32":  # removed while held: a process waiting on it sees it gone and retries
                lock.unlink()
        _unlock(fd)
        fh.close()


# -------------------------------------------------------------- fingerprints
def fingerprint(*parts) -> str:
    """16 hex digits of SHA-256 over ``parts`` in order: bytes, str (UTF-8), numbers (their text),
    numpy arrays (their bytes, C order) or iterables of those (streamed, e.g. row blocks of a large array)."""
    import numpy as np

    h = hashlib.sha256()

    def feed(p):
        if isinstance(p, np.ndarray):
            if p.flags.c_contiguous and p.size:
                h.update(memoryview(p).cast("B"))  # no copy of a large array
            else:
                h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, (bytes, bytearray, memoryview)):
            h.update(p)
        elif isinstance(p, (str, int, float)):
            h.update(str(p).encode("utf-8"))
        else:
            for q in p:
                feed(q)
    for part in parts:
        feed(part)
    return h.hexdigest()[:16]


def sha256_file(path: str | os.PathLike, *, chunk: int = CHUNK) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> str:
    """16 hex digits of the SHA-256 of a file's bytes."""
    return sha256_file(path)[:16]


# --------------------------------------------------------------------- JSON
def read_json(path: str | os.PathLike, what: str = "file", error=DataFormatError):
    """Parse a JSON file stgraph wrote; a truncated, non-UTF-8 or absurdly nested file is
    ``error`` naming it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise error(f"{what} {where(path)} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                    f"{e.start}); it is damaged") from None
    except json.JSONDecodeError as e:
        raise error(f"{what} {where(path)} is truncated or not valid JSON ({e.msg} at line {e.lineno}, "
                    f"column {e.colno}); it is damaged: delete it or write it again") from None
    except RecursionError:
        raise error(f"{what} {where(path)} nests JSON arrays/objects too deeply to read; expected a flat "
                    f"document") from None


# ------------------------------------------------------------ owned outputs
#: the manifest stgraph keeps in each folder it writes outputs into: ``{"files": {name: fingerprint}}``
MANIFEST = ".stgraph-files.json"


def manifest_names(folder: str | os.PathLike) -> dict:
    """``{file name: fingerprint}`` of the files stgraph recorded writing into ``folder`` (``{}``: none, or a
    manifest that is damaged or a link: then stgraph can show nothing there is its own)."""
    p = Path(folder) / MANIFEST
    if p.is_symlink() or not p.is_file():
        return {}
    try:
        doc = read_json(p, "stgraph's file manifest")
    except (DataFormatError, OSError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    return {k: v for k, v in files.items() if isinstance(k, str)} if isinstance(files, dict) else {}


def written_by_stgraph(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file stgraph wrote and nobody changed since (its folder's manifest says so)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    fp = manifest_names(path.parent).get(path.name)
    return isinstance(fp, str) and fp == file_fingerprint(path)


def check_replaceable(paths, *, force: bool = False) -> None:
    """Refuse (:class:`ForeignFileError` naming it) a path among ``paths`` that exists and that stgraph cannot
    show it wrote, unless ``force``. A folder or a link in the way is refused even with ``force``."""
    for p in map(Path, paths):
        if p.is_symlink():
            refuse_symlink(p)
        if not p.exists():
            continue
        if p.is_dir():
            raise ForeignFileError(f"{where(p)} is a folder; expected a file name to write (choose another out)")
        if force or written_by_stgraph(p):
            continue
        raise ForeignFileError(
            f"{where(p)} already exists and stgraph did not write it (it is not in {where(p.parent / MANIFEST)}, or "
            f"it changed since); stgraph replaces only files it wrote. Move it away, choose another out, or pass "
            f"force=True to replace it")


def record_written(paths) -> None:
    """Record the files ``paths`` (their bytes as they are now) in their folders' manifests."""
    by_folder: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, []).append(p)
    for folder, files in by_folder.items():
        entries = manifest_names(folder)
        for p in files:
            if p.is_file() and not p.is_symlink():
                entries[p.name] = file_fingerprint(p)
        atomic_write(folder / MANIFEST, json.dumps({"files": dict(sorted(entries.items()))}, indent=1))


@contextlib.contextmanager
def owned_outputs(paths, *, force: bool = False) -> Iterator[list[Path]]:
    """Check ``paths`` are replaceable (:func:`check_replaceable`), run the block that writes them, then record
    the ones it wrote (:func:`record_written`)."""
    paths = [Path(p) for p in paths]
    check_replaceable(paths, force=force)
    yield paths
    record_written([p for p in paths if p.is_file()])
