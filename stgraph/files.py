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
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DataFormatError, RunDirError, where

CHUNK = 1 << 20

__all__ = ["atomic_path", "atomic_write", "atomic_open", "replace_file", "refuse_symlink",
           "check_no_links", "run_lock", "fingerprint", "sha256_file", "file_fingerprint", "read_json",
           "wrap_os_error"]


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


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on run folder ``run_dir`` for the block.

    The lock is the file ``.<name>.lock`` beside the folder (so it survives the folder being
    replaced); it records this process's pid, host, start time and command. A second process
    gets :class:`RunDirError` naming the holder. The lock ends with the process, even a killed one.
    """
    run_dir = Path(run_dir)
    lock = _lock_file(run_dir)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(lock, flags, 0o644)
    except OSError as e:
        raise wrap_os_error(e, lock, "create the lock file") from None
    fh = os.fdopen(fd, "r+b")
    try:
        if not _try_lock(fd):
            raise RunDirError(f"run directory '{run_dir}' is in use by {_holder(fh)} (lock file '{lock}'); "
                              f"wait for it to finish, or choose another out")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": _dt.datetime.now().isoformat(timespec="seconds"),
                "command": command or " ".join(["stgraph"] + sys.argv[1:])}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info).encode("utf-8"))
        fh.flush()
        try:
            yield lock
        finally:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
            _unlock(fd)
    finally:
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
