"""Named traffic datasets: METR-LA, PEMS-BAY, PEMS03/04/07/08, PeMSD7(M), LargeST.

Each dataset is described by a YAML manifest (see :mod:`.manifest` and
``datasets/README.md``). :func:`fetch` makes sure its files are in the cache
folder -- using copies already there (checked against ``sha256`` when the
manifest knows it), else downloading them from the published URLs in order --
and returns their paths. :func:`load` also reads the series (through
:func:`stgraph.io.read_series`) and builds the road graph (through
:mod:`stgraph.graph`)::

    from stgraph.datasets import load
    ds = load("metr-la")               # Dataset(series, graph, manifest, paths)
    series, graph = load("pems08")     # a Dataset also unpacks as a pair

The cache root is ``root=``, else ``$STGRAPH_DATA``, else ``~/.cache/stgraph``;
a dataset's files live in ``ROOT/<name>/`` (LargeST's four subsets share
``ROOT/largest/``). When a file can neither be found nor downloaded,
:class:`~stgraph.errors.MissingFileError` says which file to put at which path
and where to get it.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (ConfigError, DataFormatError, DownloadError, GraphError, MissingFileError, StgraphError,
                      StgraphWarning)
from ..files import atomic_write
from .download import DEFAULT_MAX_BYTES, extract, sha256_file
from .download import download as download_file
from .manifest import (FileSpec, GraphSpec, Manifest, MemberSpec, SubsetSpec, canonical_name,
                       get_manifest, list_datasets, load_manifest, manifest_dirs)

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from ..io import Series

__all__ = [
    "Dataset",
    "Manifest",
    "FileSpec",
    "MemberSpec",
    "GraphSpec",
    "SubsetSpec",
    "list_datasets",
    "get_manifest",
    "load_manifest",
    "manifest_dirs",
    "canonical_name",
    "default_root",
    "dataset_dir",
    "fetch",
    "needed_files",
    "load",
    "download_file",
    "extract",
]

_STAMP = ".stgraph-verified.json"
_ROLE_TEXT = {"data": "sensor series", "graph": "road graph", "locations": "sensor locations",
              "ids": "sensor ids", "meta": "sensor metadata", "archive": "archive"}
_READ_FORMAT = {"pandas-h5": "hdf5", "npz": "npz", "csv": "csv"}


# ------------------------------------------------------------------ result
@dataclass
class Dataset:
    """A loaded dataset; unpacks as ``series, graph = load(name)``."""

    name: str
    series: "Series"
    graph: "nx.DiGraph"
    manifest: Manifest
    paths: dict[str, Path] = field(default_factory=dict)
    root: Path | None = None

    def __iter__(self):
        yield self.series
        yield self.graph

    def __repr__(self) -> str:
        v = getattr(self.series, "values", None)
        shape = tuple(v.shape) if v is not None else "?"
        return (f"Dataset({self.name!r}, series{shape}, graph: "
                f"{self.graph.number_of_nodes()} nodes / {self.graph.number_of_edges()} edges, "
                f"root={str(self.root)!r})")


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


def needed_files(m: Manifest) -> set[str]:
    """Files (or archive members) :func:`load` reads: series, graph, ids, metadata."""
    names = {m.data_file, m.graph.file}
    for extra in (m.ids_file, m.graph.ids_file, m.subset.file if m.subset else None):
        if extra:
            names.add(extra)
    return names


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


# -------------------------------------------------------------------- load
def _interval(m: Manifest):
    """The manifest's sampling interval as ``np.timedelta64[ns]`` (validated when the manifest was read)."""
    from ..io import parse_interval

    return parse_interval(m.interval)


def _read_headerless_csv(m: Manifest, path: Path):
    """A CSV of numbers with no header and no time column (STGCN's ``V_228.csv``)."""
    import numpy as np

    from ..io import Series

    try:
        values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataFormatError(f"'{path}': expected a header-less CSV of numbers "
                              f"(one row per time step, one column per sensor); {e}") from None
    null = m.null_value
    t0 = np.datetime64(str(m.start).replace(" ", "T"), "ns")
    step = _interval(m)
    stamps = t0 + np.arange(values.shape[0], dtype=np.int64) * step
    ids = [str(i) for i in range(values.shape[1])]
    return Series(values[:, :, None], stamps, ids, list(m.channels), null, str(path))


def _read_ids(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig")
    return [t for t in re.split(r"[\s,]+", text.strip()) if t]


def _with(series, **changes):
    from ..io import Series

    kw = dict(values=series.values, timestamps=series.timestamps, sensor_ids=series.sensor_ids,
              channels=series.channels, null_value=series.null_value, source=series.source,
              null_origin=series.null_origin)
    kw.update(changes)
    return Series(**kw)


def _weekday_stamps(m: Manifest, steps: int, path) -> Any:
    import numpy as np

    step = _interval(m)
    per_day = int(np.timedelta64(1, "D") // step)
    if per_day < 1:
        raise DataFormatError(f"'{m.path}': field 'interval': found {m.interval!r}; expected at most one day "
                              f"with calendar: weekdays. Fix the manifest")
    if steps % per_day:
        raise DataFormatError(
            f"'{path}': {steps} time steps is not a whole number of days of {per_day} "
            f"{m.interval} steps; expected calendar 'weekdays' data to hold whole days. "
            f"Check the file or set calendar: all in the manifest")
    ndays = steps // per_day
    first = np.datetime64(str(m.start).replace(" ", "T")[:10], "D")
    span = np.arange(first, first + np.timedelta64(ndays * 2 + 14, "D"))
    days = span[np.is_busday(span)][:ndays]
    offsets = np.arange(per_day) * step
    return (days.astype("datetime64[ns]")[:, None] + offsets[None, :]).reshape(-1)


def _read_meta(path: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataFormatError(f"'{path}': metadata table is empty; expected a header and rows")
    return [h.strip() for h in rows[0]], [r for r in rows[1:] if r]


def _subset_rows(m: Manifest, path: Path) -> tuple[list[str], list[int] | None]:
    """Sensor ids (and adjacency indices) of the rows selected by ``m.subset``."""
    s = m.subset
    header, rows = _read_meta(path)
    need = [c for c in (s.column, s.id_column, s.index_column) if c is not None]
    absent = [c for c in need if c not in header]
    if absent:
        raise DataFormatError(f"'{path}': metadata has no column(s) {absent}; found {header}. "
                              f"Fix the manifest's 'subset' or use the published metadata file")
    ci, ii = header.index(s.column), header.index(s.id_column)
    xi = header.index(s.index_column) if s.index_column else None
    wanted = {str(v) for v in s.values}
    ids, index = [], []
    for r in rows:
        cell = r[ci].strip()
        try:
            cell = str(int(float(cell)))
        except ValueError:
            pass
        if cell in wanted:
            ids.append(r[ii].strip())
            if xi is not None:
                index.append(int(float(r[xi])))
    if not ids:
        raise DataFormatError(f"'{path}': no row has {s.column} in {sorted(wanted)}; "
                              f"expected the sensors of {m.name}")
    return ids, (index if xi is not None else None)


def _graph_module():
    import importlib

    g = importlib.import_module("stgraph.graph")
    try:
        b = importlib.import_module("stgraph.graph.build")
    except ImportError:  # pragma: no cover - depends on the graph package layout
        b = g

    def get(name):
        fn = getattr(g, name, None) or getattr(b, name, None)
        if fn is None:
            raise ImportError(f"stgraph.graph has no {name}(); the graph module is incomplete")
        return fn
    return get


def _build_graph(m: Manifest, paths: dict[str, Path], series, subset_index):
    import numpy as np

    get = _graph_module()
    spec = m.graph
    path = paths[spec.file]
    ids = list(series.sensor_ids)
    if spec.method == "adj-pickle":
        return get("from_adj_pickle")(path)
    if spec.method == "distances":
        gids = _read_ids(paths[spec.ids_file]) if spec.ids_file else ids
        return get("from_distances")(path, gids, sigma=spec.sigma, threshold=spec.threshold,
                                     kernel=spec.kernel or "gaussian")
    if spec.method == "distance-matrix":
        try:
            d = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise DataFormatError(f"'{path}': expected an N x N header-less CSV of distances; "
                                  f"{e}") from None
        if d.shape != (len(ids), len(ids)):
            raise DataFormatError(f"'{path}': distance matrix has shape {d.shape}; expected "
                                  f"({len(ids)}, {len(ids)}) for the {len(ids)} sensors of "
                                  f"{m.name}. Check that the two files belong together")
        i, j = np.nonzero(np.isfinite(d) & ~np.eye(len(ids), dtype=bool))
        rows = np.empty((len(i), 3), dtype=object)
        rows[:, 0] = np.asarray(ids, dtype=object)[i]
        rows[:, 1] = np.asarray(ids, dtype=object)[j]
        rows[:, 2] = d[i, j]
        return get("from_distances")(rows, ids, sigma=spec.sigma, threshold=spec.threshold,
                                     kernel=spec.kernel or "gaussian")
    if spec.method == "adj-npy":
        adj = np.load(path, mmap_mode="r", allow_pickle=False)
        if subset_index is not None:
            idx = np.asarray(subset_index, dtype=np.int64)
            if idx.max(initial=-1) >= adj.shape[0]:
                raise DataFormatError(f"'{path}': adjacency has {adj.shape[0]} rows but the "
                                      f"metadata indexes row {int(idx.max())}; the files do not "
                                      f"belong together")
            adj = adj[np.ix_(idx, idx)]
        return get("from_adjacency")(np.asarray(adj), ids, source=path)
    raise GraphError(f"{m.path}: graph.method {spec.method!r} is not supported")  # pragma: no cover


def load(name: str | Manifest, root: str | os.PathLike | None = None, *, download: bool = True,
         progress: bool = True, manifests=None, timeout: float = 60, retries: int = 3
         ) -> Dataset:
    """Fetch (see :func:`fetch`), read and return dataset ``name``.

    Only the files it reads are required (see :func:`needed_files`); e.g. a
    missing sensor-locations file does not stop it.

    The series is read with :func:`stgraph.io.read_series` using the
    manifest's ``format``, ``key``, ``null_value``, ``channels`` and, for files
    without timestamps, ``start`` and ``interval``; sensor ids come from
    ``ids_file`` when given; ``subset`` picks a sub-network's sensors;
    ``calendar: weekdays`` lays the steps on weekdays only (PeMSD7). The graph
    is built by :mod:`stgraph.graph` as ``graph.method`` says.

    Returns:
        :class:`Dataset` (``series, graph = load(...)`` also works).

    Raises:
        ConfigError, MissingFileError, DownloadError: see :func:`fetch`.
        DataFormatError: the files do not match the manifest (sensor count,
            shapes, metadata columns).
        GraphError: the graph's sensors differ from the series' sensors.
    """
    m = get_manifest(name, manifests)
    root_p = Path(root).expanduser() if root is not None else default_root()
    paths = fetch(m, root_p, download=download, progress=progress, timeout=timeout,
                  retries=retries, files=needed_files(m))
    from ..io import read_series

    data_path = paths[m.data_file]
    if m.format == "csv" and not m.header:
        series = _read_headerless_csv(m, data_path)
    else:
        timeless = m.format in ("npz", "csv") and m.start is not None
        series = read_series(
            data_path, format=_READ_FORMAT[m.format], null_value=m.null_value,
            start=m.start if timeless else None, freq=m.interval if timeless else None,
            channels=list(m.channels), key=m.key)
    if m.ids_file:
        ids = _read_ids(paths[m.ids_file])
        if len(ids) != len(series.sensor_ids):
            raise DataFormatError(
                f"'{paths[m.ids_file]}': {len(ids)} sensor ids for {len(series.sensor_ids)} "
                f"sensor columns in '{data_path}'; expected one id per column. The files do not "
                f"belong together")
        series = _with(series, sensor_ids=ids)
    subset_index = None
    if m.subset is not None:
        ids, subset_index = _subset_rows(m, paths[m.subset.file])
        pos = {s: i for i, s in enumerate(series.sensor_ids)}
        absent = [s for s in ids if s not in pos]
        if absent:
            raise DataFormatError(
                f"'{data_path}': {len(absent)} sensors of {m.name} listed in "
                f"'{paths[m.subset.file]}' have no column, e.g. {absent[:5]}; expected every "
                f"selected sensor in the series file")
        import numpy as np
        cols = np.asarray([pos[s] for s in ids], dtype=np.int64)
        series = _with(series, values=series.values[:, cols, :], sensor_ids=ids)
    if m.calendar == "weekdays":
        series = _with(series, timestamps=_weekday_stamps(m, series.values.shape[0], data_path))
    series.null_origin = f"the {m.name} manifest's convention"
    n = len(series.sensor_ids)
    if n != m.sensors:
        raise DataFormatError(
            f"'{data_path}': {n} sensors; the manifest of {m.name} ({m.path}) expects "
            f"{m.sensors}. The file is not the published one, or the manifest's 'sensors' is wrong")
    graph = _build_graph(m, paths, series, subset_index)
    gnodes = {str(v) for v in graph.nodes}
    if gnodes != set(series.sensor_ids):
        extra = sorted(gnodes - set(series.sensor_ids))[:5]
        lack = sorted(set(series.sensor_ids) - gnodes)[:5]
        raise GraphError(
            f"'{paths[m.graph.file]}': graph sensors differ from the series in '{data_path}' "
            f"(only in graph: {extra}, only in series: {lack}); expected the same "
            f"{n} sensors. Check that the graph file belongs to this dataset")
    return Dataset(name=m.name, series=series, graph=graph, manifest=m, paths=paths, root=root_p)
