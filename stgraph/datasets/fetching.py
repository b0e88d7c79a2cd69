"""Find or download a dataset's files into the cache folder, checked against their checksums.

:func:`fetch` makes sure the files of a dataset are in ``ROOT/<folder>/`` -- using copies already
there (checked against ``sha256`` when the manifest knows it), else downloading them from the
published URLs in order (:mod:`.download`) -- and returns their paths. A verified file is remembered
in a stamp file (``.stgraph-verified.json``: size, mtime and hash) so it is not re-hashed every time;
a file without a published checksum is remembered by the hash it had when first seen.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DownloadError, MissingFileError, StgraphError, StgraphWarning
from ..files import atomic_write
from .archives import extract
from .download import DEFAULT_MAX_BYTES, sha256_file
from .download import download as download_file
from .manifest import get_manifest
from .specs import FileSpec, Manifest

__all__ = ["default_root", "dataset_dir", "fetch"]

_STAMP = ".stgraph-verified.json"
_ROLE_TEXT = {"data": "sensor series", "graph": "road graph", "locations": "sensor locations",
              "ids": "sensor ids", "meta": "sensor metadata", "archive": "archive"}


# ----------------------------------------------------------------- folders
def default_root() -> Path:
    """``$STGRAPH_DATA`` or ``~/.cache/stgraph``."""
    env = os.environ.get("STGRAPH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stgraph"


def dataset_dir(name: str | Manifest, root: str | os.PathLike | None = None, *,
                manifests=None) -> Path:
    """The folder that holds ``name``'s files under ``root``."""
    m = get_manifest(name, manifests)
    return (Path(root).expanduser() if root is not None else default_root()) / m.folder


# ------------------------------------------------------- verification stamps
def _stamps(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _stamp_ok(folder: Path, rel: str, path: Path, sha: str) -> bool:
    rec = _stamps(folder).get(rel)
    try:
        st = path.stat()
    except OSError:
        return False
    return (isinstance(rec, dict) and rec.get("sha256") == sha and rec.get("size") == st.st_size
            and rec.get("mtime_ns") == st.st_mtime_ns)


def _write_stamp(folder: Path, rel: str, path: Path, sha: str, *, verified: bool = True) -> None:
    data = _stamps(folder)
    st = path.stat()
    data[rel] = {"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "verified": verified}
    try:
        atomic_write(folder / _STAMP, json.dumps(data, indent=1, sort_keys=True))
    except (OSError, StgraphError):  # a read-only cache still works, it just re-hashes next time
        pass


def _pin_hint(m: Manifest, spec: FileSpec) -> str:
    return f"`stgraph data download {m.name} --sha256 {spec.name}=HEX`"


def _record_unverified(m: Manifest, spec: FileSpec, folder: Path, dest: Path, how: str) -> None:
    """A file with no published checksum: say so, and remember the hash of what we have."""
    digest = sha256_file(dest)
    _write_stamp(folder, spec.name, dest, digest, verified=False)
    warnings.warn(
        f"'{dest}': {m.name}'s {_ROLE_TEXT.get(spec.role, spec.role)} file {spec.name!r} is unverified (no "
        f"published checksum is known); {how}. Its sha256 {digest} is recorded in '{folder / _STAMP}' so a later "
        f"change is caught; pin the checksum you trust with {_pin_hint(m, spec)}", StgraphWarning, stacklevel=3)


def _existing_ok(m: Manifest, spec: FileSpec, folder: Path, dest: Path, *, can_download: bool,
                 expected: str | None = None) -> bool:
    """True when ``dest`` exists and passes its checksum (the manifest's, the user's pin or, for an
    unverified file, the hash recorded when it was first seen); raise when it fails and cannot be
    replaced; move it aside when it fails and can be re-downloaded."""
    if not dest.is_file():
        return False
    if expected is None:
        rec = _stamps(folder).get(spec.name)
        recorded = rec.get("sha256") if isinstance(rec, dict) else None
        if not recorded:
            _record_unverified(m, spec, folder, dest, "it was found in place")
            return True
        if _stamp_ok(folder, spec.name, dest, recorded):
            return True
        digest = sha256_file(dest)
        if digest == recorded:
            _write_stamp(folder, spec.name, dest, digest, verified=False)
            return True
        raise DownloadError(
            f"'{dest}': {m.name}'s {spec.name!r} changed since it was first downloaded or found: sha256 {digest}, "
            f"recorded {recorded} in '{folder / _STAMP}'. It is unverified (no published checksum), so stgraph "
            f"cannot tell which copy is right: delete the file to download it again, or pin the checksum you "
            f"trust with {_pin_hint(m, spec)}")
    if _stamp_ok(folder, spec.name, dest, expected):
        return True
    digest = sha256_file(dest)
    if digest == expected:
        _write_stamp(folder, spec.name, dest, digest)
        return True
    if can_download:
        os.replace(dest, dest.with_name(dest.name + ".corrupt"))
        return False
    raise DownloadError(
        f"'{dest}': sha256 mismatch for {m.name}'s {_ROLE_TEXT.get(spec.role, spec.role)} file: "
        f"found {digest}, expected {expected}. The file is damaged or is not the published "
        f"one; delete it and get it again from {m.source_of(spec.name)}")


def _obtain(m: Manifest, spec: FileSpec, folder: Path, *, download: bool, progress: bool,
            timeout: float, retries: int, pins: dict[str, str] | None = None
            ) -> tuple[Path | None, list[str]]:
    """Find or download one published file; ``(path or None, download errors)``."""
    dest = folder / spec.name
    expected = (pins or {}).get(spec.name) or spec.sha256
    can_download = download and bool(spec.urls)
    if _existing_ok(m, spec, folder, dest, can_download=can_download, expected=expected):
        return dest, []
    tried: list[str] = []
    if not can_download:
        return None, tried
    cap = spec.size or spec.max_size or DEFAULT_MAX_BYTES
    for url in spec.urls:
        try:
            download_file(url, dest, sha256=expected, progress=progress, timeout=timeout,
                          retries=retries, max_bytes=cap)
        except DownloadError as e:
            tried.append(str(e))
            continue
        if expected is not None:
            _write_stamp(folder, spec.name, dest, expected)
        else:
            _record_unverified(m, spec, folder, dest, f"downloaded from {url}")
        return dest, tried
    return None, tried


def _check_pins(m: Manifest, pins) -> dict[str, str]:
    out = {}
    for name, sha in (pins or {}).items():
        spec = next((f for f in m.files if f.name == name), None)
        if spec is None:
            raise ConfigError(f"--sha256 {name}=...: {m.name} has no file {name!r}; its files are "
                              f"{[f.name for f in m.files]}")
        sha = str(sha).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ConfigError(f"--sha256 {name}={sha!r}: expected 64 hexadecimal digits (sha256sum FILE)")
        if spec.sha256 is not None and spec.sha256 != sha:
            raise ConfigError(f"--sha256 {name}={sha}: the manifest {m.path} already publishes {spec.sha256} "
                              f"for this file; drop --sha256")
        out[name] = sha
    return out


def _find_member(folder: Path, member: str) -> Path | None:
    exact = folder / member
    if exact.is_file():
        return exact
    base = Path(member).name
    hits = [p for p in folder.rglob(base) if p.is_file()]
    return hits[0] if len(hits) == 1 else None


def _missing_message(m: Manifest, folder: Path, problems, *, download: bool, root: Path) -> str:
    lines = [f"dataset {m.name!r}: {len(problems)} file(s) missing under '{folder}':"]
    for spec, dest, tried, archive in problems:
        role = _ROLE_TEXT.get(spec.role, spec.role)
        lines.append(f"  * {spec.name!r} ({role}): put it at '{dest}'.")
        holder = archive if archive is not None else spec
        if archive is not None:
            lines.append(f"    It comes inside {archive.name!r}; put that archive at "
                         f"'{folder / archive.name}' and it is unpacked for you.")
        if holder.page:
            lines.append(f"    Get it from: {holder.page}")
        if holder.urls:
            lines.append(f"    Direct URL(s): {', '.join(holder.urls)}")
        if not holder.page and not holder.urls:
            lines.append(f"    Source: {m.source}")
        if holder.instructions:
            lines.append(f"    How: {' '.join(holder.instructions.split())}")
        if holder.sha256:
            lines.append(f"    Expected sha256: {holder.sha256}")
        for t in tried:
            lines.append(f"    Download failed: {t}")
    if not download:
        lines.append("Downloading was off (download=False); pass download=True to fetch the files "
                     "that have direct URLs.")
    lines.append(f"Then run again (or `stgraph data download {m.name} --root '{root}'`).")
    return "\n".join(lines)


def fetch(name: str | Manifest, root: str | os.PathLike | None = None, *, download: bool = True,
          progress: bool = True, manifests=None, timeout: float = 60, retries: int = 3,
          files=None, sha256: dict[str, str] | None = None) -> dict[str, Path]:
    """Locate or download the files of dataset ``name``; no parsing.

    ``sha256`` pins checksums the user trusts (``{file name: hex}``) for files whose manifest
    entry has none (``verified: false``); such files are otherwise checked against the hash
    recorded when they were first downloaded or found, with a warning that they are unverified.

    ``files`` limits the work to those file or archive-member names (default:
    every file of the manifest).

    Files already in ``ROOT/<folder>/`` are used (after a SHA-256 check when
    the manifest gives one; a verified file is remembered by size and mtime so
    it is not re-hashed every time). Missing files are downloaded from their
    URLs in order when ``download`` is true; archives are unpacked safely.

    Returns:
        ``{file name: path}`` for every (selected) file and archive member.

    Raises:
        ConfigError: unknown dataset name or invalid manifest.
        DownloadError: a local file fails its checksum and cannot be replaced.
        MissingFileError: some files are neither present nor downloadable; the
            message lists each one with its destination path and where to get it.
    """
    m = get_manifest(name, manifests)
    root_p = Path(root).expanduser() if root is not None else default_root()
    folder = root_p / m.folder
    wanted = None if files is None else {str(f) for f in ([files] if isinstance(files, str)
                                                           else files)}
    if wanted is not None:
        unknown = sorted(wanted - {e.name for e in m.entries()})
        if unknown:
            raise ConfigError(f"{m.path}: fetch(files=...) names {unknown}, which are not files "
                              f"of {m.name}; expected some of {[e.name for e in m.entries()]}")
    if download:
        folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    problems: list[tuple[Any, Path, list[str], FileSpec | None]] = []
    kw = dict(download=download, progress=progress, timeout=timeout, retries=retries,
              pins=_check_pins(m, sha256))
    for spec in m.files:
        if wanted is not None and spec.name not in wanted and not (
                {mem.name for mem in spec.members} & wanted):
            continue
        if spec.role != "archive":
            path, tried = _obtain(m, spec, folder, **kw)
            if path is None:
                problems.append((spec, folder / spec.name, tried, None))
            else:
                paths[spec.name] = path
            continue
        found = {mem.name: _find_member(folder, mem.name) for mem in spec.members}
        if all(found.values()):
            paths.update(found)  # type: ignore[arg-type]
            if (folder / spec.name).is_file():
                paths[spec.name] = folder / spec.name
            continue
        path, tried = _obtain(m, spec, folder, **kw)
        if path is None:
            for mem in spec.members:
                if found[mem.name] is None:
                    problems.append((mem, folder / mem.name, tried, spec))
                else:
                    paths[mem.name] = found[mem.name]  # type: ignore[assignment]
            continue
        paths[spec.name] = path
        extract(path, folder)
        for mem in spec.members:
            hit = _find_member(folder, mem.name)
            if hit is None:
                problems.append((mem, folder / mem.name,
                                 [f"'{path}' was unpacked but holds no {mem.name!r}"], spec))
            else:
                paths[mem.name] = hit
    if problems:
        raise MissingFileError(_missing_message(m, folder, problems, download=download,
                                                root=root_p))
    return paths
