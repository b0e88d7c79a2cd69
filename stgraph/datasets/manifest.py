"""Dataset manifests: one YAML file per named dataset.

A manifest says which files make up a dataset, where their authors publish
them, how to check them (``sha256``), how to read the series and how to build
the road graph. Manifests live in the top-level ``datasets/`` folder of the
checkout (``Path(__file__).resolve().parents[2] / "datasets"``); folders named
in ``$STGRAPH_MANIFESTS`` (``os.pathsep``-separated) are searched first, so a
user manifest with the same name overrides a built-in one. Functions that take
``manifests=`` search only the folders given there.

Field reference (see ``datasets/README.md`` for the full description)::

    name, description, files, sensors, interval, channels, null_value,
    format, graph, citation, source                     -- required
    aliases, steps, start, end, key, header, calendar, directory,
    ids_file, subset, license, notes, page               -- optional

Every validation error is a :class:`~stgraph.errors.ConfigError` whose message
names the manifest file and the field, what was found, what was expected and
how to fix it.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ConfigError

__all__ = [
    "FORMATS",
    "ROLES",
    "GRAPH_METHODS",
    "FileSpec",
    "MemberSpec",
    "GraphSpec",
    "SubsetSpec",
    "Manifest",
    "manifest_dirs",
    "builtin_manifest_dir",
    "list_datasets",
    "get_manifest",
    "load_manifest",
    "parse_manifest",
    "canonical_name",
]

FORMATS = ("pandas-h5", "npz", "csv")
ROLES = ("data", "graph", "locations", "ids", "meta", "archive")
GRAPH_METHODS = ("adj-pickle", "distances", "distance-matrix", "adj-npy")
KERNELS = ("gaussian", "binary")
CALENDARS = ("all", "weekdays")

_REQUIRED = ("name", "description", "files", "sensors", "interval", "channels",
             "null_value", "format", "graph", "citation", "source")
_OPTIONAL = ("aliases", "steps", "start", "end", "key", "header", "calendar", "directory",
             "ids_file", "subset", "license", "notes", "page")
_FILE_KEYS = ("name", "role", "url", "urls", "sha256", "size", "max_size", "verified", "manual", "page",
              "instructions", "members", "notes")
_GRAPH_KEYS = ("method", "file", "ids_file", "kernel", "sigma", "threshold",
               "symmetric", "notes")
_SUBSET_KEYS = ("file", "column", "values", "id_column", "index_column", "notes")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


# --------------------------------------------------------------------- types
@dataclass(frozen=True)
class MemberSpec:
    """A file that lives inside an archive listed in ``files``."""

    name: str
    role: str


@dataclass(frozen=True)
class FileSpec:
    """One published file of a dataset.

    Attributes:
        name: path relative to the dataset folder (POSIX, no ``..``).
        role: ``data``, ``graph``, ``locations``, ``ids``, ``meta`` or ``archive``.
        urls: direct download URLs, tried in order (may be empty).
        sha256: expected SHA-256 hex digest, or ``None`` when unknown.
        size: size in bytes when known; a download never reads more than this.
        max_size: cap in bytes on a download whose size is not known (default
            :data:`stgraph.datasets.download.DEFAULT_MAX_BYTES`).
        verified: ``False`` when no published checksum is known (``sha256: null``): the
            download says so and the hash of what arrived is recorded, so a later change is caught.
        manual: ``True`` when a person normally has to fetch the file
            (Google Drive folder, Kaggle login, Baidu share).
        page: the page a person opens to get the file.
        instructions: how to get it by hand.
        members: for archives, the files it holds and their roles.
    """

    name: str
    role: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    manual: bool = False
    max_size: int | None = None
    verified: bool = True
    page: str | None = None
    instructions: str | None = None
    members: tuple[MemberSpec, ...] = ()
    notes: str | None = None


@dataclass(frozen=True)
class GraphSpec:
    """How to build the road graph.

    ``method`` is one of:

    * ``adj-pickle`` -- DCRNN's ``[sensor_ids, id_to_index, adj]`` pickle,
      read by :func:`stgraph.graph.from_adj_pickle`;
    * ``distances`` -- a ``from,to,cost`` table turned into a graph by
      :func:`stgraph.graph.from_distances` with ``kernel``/``sigma``/``threshold``;
    * ``distance-matrix`` -- a dense ``N x N`` distance CSV without header
      (STGCN's ``W_228.csv``), turned into a ``from,to,cost`` table first;
    * ``adj-npy`` -- a dense ``N x N`` weighted adjacency saved with
      ``numpy.save`` (LargeST's ``ca_rn_adj.npy``).
    """

    method: str
    file: str
    ids_file: str | None = None
    kernel: str | None = None
    sigma: float | None = None
    threshold: float | None = None
    symmetric: bool | None = None
    notes: str | None = None


@dataclass(frozen=True)
class SubsetSpec:
    """Select the sensors of a sub-dataset from a metadata table.

    Rows of ``file`` (CSV) whose ``column`` is one of ``values`` are kept; the
    sensor id is ``id_column`` and the row/column of the full adjacency matrix
    is ``index_column``.
    """

    file: str
    column: str
    values: tuple[Any, ...]
    id_column: str = "ID"
    index_column: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A validated dataset manifest."""

    name: str
    description: str
    files: tuple[FileSpec, ...]
    sensors: int
    interval: str
    channels: tuple[str, ...]
    null_value: float
    format: str
    graph: GraphSpec
    citation: str
    source: str
    aliases: tuple[str, ...] = ()
    steps: int | None = None
    start: str | None = None
    end: str | None = None
    key: str | None = None
    header: bool = True
    calendar: str = "all"
    directory: str | None = None
    ids_file: str | None = None
    subset: SubsetSpec | None = None
    license: str | None = None
    notes: str | None = None
    page: str | None = None
    path: Path | None = field(default=None, compare=False)

    # ----------------------------------------------------------- helpers
    @property
    def folder(self) -> str:
        """Name of the folder under the cache root that holds the files."""
        return self.directory or self.name

    def entries(self) -> list[FileSpec | MemberSpec]:
        """Every file and archive member, in manifest order."""
        out: list[FileSpec | MemberSpec] = []
        for f in self.files:
            out.append(f)
            out.extend(f.members)
        return out

    def entry(self, name: str) -> FileSpec | MemberSpec:
        for e in self.entries():
            if e.name == name:
                return e
        raise ConfigError(
            f"{_where(self.path)}: no file or archive member named {name!r}; "
            f"known: {[e.name for e in self.entries()]}")

    def archive_of(self, member: str) -> FileSpec | None:
        """The archive that holds ``member``, or ``None`` for a plain file."""
        for f in self.files:
            if any(m.name == member for m in f.members):
                return f
        return None

    @property
    def data_file(self) -> str:
        """Name of the file (or archive member) holding the series."""
        for e in self.entries():
            if e.role == "data":
                return e.name
        raise ConfigError(f"{_where(self.path)}: no file has role 'data'")

    def source_of(self, name: str) -> str:
        """Where a person gets ``name``: its page, first URL or the manifest source."""
        arch = self.archive_of(name)
        spec = arch if arch is not None else self.entry(name)
        if isinstance(spec, FileSpec):
            if spec.page:
                return spec.page
            if spec.urls:
                return spec.urls[0]
        return self.page or self.source


# ------------------------------------------------------------- discovery
def builtin_manifest_dir() -> Path:
    """The top-level ``datasets/`` folder of the checkout."""
    return Path(__file__).resolve().parents[2] / "datasets"


def _package_manifest_dir() -> Path:
    return Path(__file__).resolve().parent / "manifests"


def manifest_dirs(manifests: str | os.PathLike | Sequence[str | os.PathLike] | None = None
                  ) -> list[Path]:
    """Folders searched for manifests, highest priority first.

    With ``manifests`` given, only those folders. Otherwise the folders in
    ``$STGRAPH_MANIFESTS`` then the built-in ``datasets/`` folder (and
    ``stgraph/datasets/manifests`` when the package was installed with them).
    """
    if manifests is not None:
        items = [manifests] if isinstance(manifests, (str, os.PathLike)) else list(manifests)
        return [Path(p).expanduser() for p in items]
    dirs: list[Path] = []
    env = os.environ.get("STGRAPH_MANIFESTS")
    if env:
        dirs.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p.strip())
    for d in (builtin_manifest_dir(), _package_manifest_dir()):
        if d not in dirs:
            dirs.append(d)
    return dirs


def _manifest_files(dirs: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if d.is_file() and d.suffix in (".yaml", ".yml"):
            out.append(d)
        elif d.is_dir():
            out.extend(sorted(p for p in d.iterdir()
                              if p.suffix in (".yaml", ".yml") and p.is_file()))
    return out


def canonical_name(name: str) -> str:
    """Lower-case, ``_``/spaces -> ``-``: ``'METR_LA'`` -> ``'metr-la'``."""
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _index(manifests) -> tuple[dict[str, Manifest], list[Manifest]]:
    """Map every canonical and squashed name/alias to its manifest."""
    dirs = manifest_dirs(manifests)
    by_key: dict[str, Manifest] = {}
    ordered: list[Manifest] = []
    seen: dict[str, Path] = {}
    for path in _manifest_files(dirs):
        m = load_manifest(path)
        if m.name in seen:
            if seen[m.name].parent == path.parent:
                raise ConfigError(
                    f"'{path}': dataset name {m.name!r} is also used by '{seen[m.name]}' in the "
                    f"same folder; every manifest needs a unique name (rename one of them)")
            continue  # an earlier folder overrides this one
        seen[m.name] = path
        ordered.append(m)
        for alias in (m.name, *m.aliases):
            for key in (canonical_name(alias), _squash(alias)):
                other = by_key.get(key)
                if other is None:
                    by_key[key] = m
                elif other.name != m.name and other.path is not None and \
                        other.path.parent == path.parent:
                    raise ConfigError(
                        f"'{path}': field 'aliases': {alias!r} also names dataset "
                        f"{other.name!r} ('{other.path}'); expected every name and alias to "
                        f"be unique within a folder. Remove or change the alias")
    return by_key, ordered


def list_datasets(manifests=None) -> list[str]:
    """Names of every dataset with a manifest, sorted."""
    return sorted(m.name for m in _index(manifests)[1])


def get_manifest(name: str | Manifest, manifests=None) -> Manifest:
    """The manifest for ``name`` (case-insensitive; aliases like ``'METR_LA'`` work).

    ``name`` may also be a path to a YAML manifest or a :class:`Manifest`.

    Raises:
        ConfigError: unknown name; the message suggests the nearest names.
    """
    if isinstance(name, Manifest):
        return name
    if not isinstance(name, (str, os.PathLike)):
        raise ConfigError(f"dataset name must be a string, got {type(name).__name__} {name!r}")
    s = os.fspath(name)
    if s.endswith((".yaml", ".yml")) and Path(s).is_file():
        return load_manifest(s)
    by_key, ordered = _index(manifests)
    for key in (canonical_name(s), _squash(s)):
        if key in by_key:
            return by_key[key]
    names = sorted(m.name for m in ordered)
    candidates = sorted(by_key)
    close = difflib.get_close_matches(canonical_name(s), candidates, n=6, cutoff=0.5)
    close += difflib.get_close_matches(_squash(s), candidates, n=6, cutoff=0.5)
    suggest: list[str] = []
    for c in close:
        if by_key[c].name not in suggest:
            suggest.append(by_key[c].name)
    hint = f"did you mean {', '.join(repr(x) for x in suggest[:3])}? " if suggest else ""
    where = ", ".join(f"'{d}'" for d in manifest_dirs(manifests))
    raise ConfigError(
        f"unknown dataset {s!r}; {hint}known datasets: {names or 'none'}. "
        f"Use one of those names, or add a manifest <name>.yaml to one of {where} "
        f"(or to a folder named in $STGRAPH_MANIFESTS)")


# ------------------------------------------------------------ validation
def _where(path) -> str:
    return f"'{path}'" if path is not None else "<manifest>"


def _desc(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


class _Checker:
    def __init__(self, path):
        self.where = _where(path)

    def fail(self, fieldname: str, value, expected: str, fix: str | None = None):
        msg = (f"{self.where}: field '{fieldname}': found {_desc(value)}; expected {expected}")
        msg += f". {fix}" if fix else ". Fix the manifest"
        raise ConfigError(msg)

    def missing(self, fieldname: str, expected: str):
        raise ConfigError(f"{self.where}: required field '{fieldname}' is missing; "
                          f"expected {expected}. Add it to the manifest")

    def unknown(self, fieldname: str, keys, allowed):
        extra = sorted(set(keys) - set(allowed))
        if extra:
            near = difflib.get_close_matches(extra[0], allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{self.where}: unknown field(s) {extra} in '{fieldname}'{hint}; "
                              f"allowed: {list(allowed)}. Remove or rename them")

    def string(self, fieldname, value, *, optional=False, nonempty=True) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or (nonempty and not value.strip()):
            self.fail(fieldname, value, "a non-empty string")
        return value.strip() if isinstance(value, str) else value

    def integer(self, fieldname, value, *, optional=False, minimum=0) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(fieldname, value, f"an integer >= {minimum}")
        return int(value)

    def number(self, fieldname, value, *, optional=False) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(fieldname, value, "a finite number")
        return float(value)

    def boolean(self, fieldname, value, *, default=False) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(fieldname, value, "true or false")
        return value

    def str_list(self, fieldname, value, *, optional=False) -> tuple[str, ...]:
        if value is None and optional:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(fieldname, value, "a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def relpath(self, fieldname, value) -> str:
        self.string(fieldname, value)
        p = PurePosixPath(value)
        if (p.is_absolute() or "\\" in value or ".." in p.parts or value.startswith("~")
                or re.match(r"^[A-Za-z]:", value)):
            self.fail(fieldname, value, "a relative POSIX path inside the dataset folder "
                      "(no leading '/', no '..', no backslashes)")
        return str(p)


def _check_url(chk: _Checker, fieldname: str, url) -> str:
    chk.string(fieldname, url)
    from urllib.parse import urlsplit
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        chk.fail(fieldname, url, "an http:// or https:// URL",
                 "Only http(s) downloads are supported; put other links in 'page'")
    return url.strip()


def _check_file(chk: _Checker, i: int, raw) -> FileSpec:
    fn = f"files[{i}]"
    if not isinstance(raw, Mapping):
        chk.fail(fn, raw, "a mapping with at least 'name' and 'role'")
    chk.unknown(fn, raw.keys(), _FILE_KEYS)
    if "name" not in raw:
        chk.missing(f"{fn}.name", "the file name relative to the dataset folder")
    name = chk.relpath(f"{fn}.name", raw["name"])
    if "role" not in raw:
        chk.missing(f"{fn}.role", f"one of {list(ROLES)}")
    role = raw["role"]
    if role not in ROLES:
        chk.fail(f"{fn}.role", role, f"one of {list(ROLES)}")
    urls: list[str] = []
    if raw.get("url") is not None:
        urls.append(_check_url(chk, f"{fn}.url", raw["url"]))
    if raw.get("urls") is not None:
        if not isinstance(raw["urls"], list):
            chk.fail(f"{fn}.urls", raw["urls"], "a list of http(s) URLs")
        for j, u in enumerate(raw["urls"]):
            u = _check_url(chk, f"{fn}.urls[{j}]", u)
            if u not in urls:
                urls.append(u)
    sha = raw.get("sha256")
    if sha is not None:
        if not isinstance(sha, str) or not _HEX64.match(sha.strip()):
            chk.fail(f"{fn}.sha256", sha, "64 hexadecimal digits or null",
                     "Compute it with `sha256sum FILE`, or set it to null when unknown")
        sha = sha.strip().lower()
    size = chk.integer(f"{fn}.size", raw.get("size"), optional=True)
    max_size = chk.integer(f"{fn}.max_size", raw.get("max_size"), optional=True)
    verified = raw.get("verified", sha is not None)
    if not isinstance(verified, bool):
        chk.fail(f"{fn}.verified", verified, "true or false")
    if verified and sha is None:
        chk.fail(f"{fn}.verified", verified, "false while sha256 is null",
                 "A file without a published checksum cannot be verified; set verified: false")
    manual = chk.boolean(f"{fn}.manual", raw.get("manual"))
    page = raw.get("page")
    if page is not None:
        page = chk.string(f"{fn}.page", page)
    instructions = chk.string(f"{fn}.instructions", raw.get("instructions"), optional=True)
    notes = chk.string(f"{fn}.notes", raw.get("notes"), optional=True)
    members: list[MemberSpec] = []
    if raw.get("members") is not None:
        if role != "archive":
            chk.fail(f"{fn}.members", raw["members"], "no members unless role is 'archive'",
                     "Set role: archive or remove 'members'")
        if not isinstance(raw["members"], list) or not raw["members"]:
            chk.fail(f"{fn}.members", raw["members"], "a non-empty list of {name, role}")
        for j, m in enumerate(raw["members"]):
            mf = f"{fn}.members[{j}]"
            if not isinstance(m, Mapping):
                chk.fail(mf, m, "a mapping with 'name' and 'role'")
            chk.unknown(mf, m.keys(), ("name", "role"))
            if "name" not in m:
                chk.missing(f"{mf}.name", "the path of the member inside the archive")
            mname = chk.relpath(f"{mf}.name", m["name"])
            mrole = m.get("role")
            if mrole not in ROLES or mrole == "archive":
                chk.fail(f"{mf}.role", mrole, f"one of {[r for r in ROLES if r != 'archive']}")
            members.append(MemberSpec(mname, mrole))
    elif role == "archive":
        chk.missing(f"{fn}.members", "the list of files inside the archive ({name, role})")
    if not urls and not manual:
        chk.fail(f"{fn}.urls", raw.get("urls"), "at least one http(s) URL unless manual: true",
                 "Add the published URL, or set manual: true with 'page' and 'instructions'")
    if manual and not (page or instructions):
        chk.missing(f"{fn}.page", "a page or instructions telling a person where to get the file "
                    "(manual: true)")
    return FileSpec(name=name, role=role, urls=tuple(urls), sha256=sha, size=size,
                    max_size=max_size, verified=verified, manual=manual, page=page, instructions=instructions,
                    members=tuple(members), notes=notes)


def _check_interval(chk: _Checker, value) -> str:
    from ..errors import SeriesError
    from ..io.series import parse_interval

    s = chk.string("interval", value)
    try:
        parse_interval(s)
    except SeriesError:
        chk.fail("interval", value, "a sampling interval such as '5min', '15min', '1h' or '30s'")
    return s


def _check_timestamp(chk: _Checker, fieldname: str, value) -> str | None:
    if value is None:
        return None
    import datetime as _dt
    if isinstance(value, (_dt.date, _dt.datetime)):
        value = value.isoformat()
    s = chk.string(fieldname, value)
    try:
        import numpy as np
        np.datetime64(s.replace(" ", "T"))
    except Exception:
        chk.fail(fieldname, value, "an ISO date or timestamp such as '2018-01-01' or "
                 "'2018-01-01 00:00:00'")
    return s


def _check_null(chk: _Checker, value) -> float:
    if isinstance(value, str) and value.strip().lower() in ("nan", ".nan", "null-nan"):
        return float("nan")
    if isinstance(value, float) and math.isnan(value):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        chk.fail("null_value", value, "a number such as 0.0, or 'nan'",
                 "Use 0.0 when a dead detector reads 0, 'nan' when missing readings are NaN")
    return float(value)


def parse_manifest(data: Any, path: str | os.PathLike | None = None) -> Manifest:
    """Validate a parsed YAML mapping and build a :class:`Manifest`."""
    path = Path(path) if path is not None else None
    chk = _Checker(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{chk.where}: the manifest must be a YAML mapping of fields, "
                          f"found {_desc(data)}; see datasets/README.md for the layout")
    chk.unknown("<top level>", data.keys(), _REQUIRED + _OPTIONAL)
    for key in _REQUIRED:
        if key not in data:
            chk.missing(key, {"files": "a list of {name, url(s), sha256, role}",
                              "graph": "a mapping {method, file, ...}"}.get(key, "a value"))
    name = chk.string("name", data["name"])
    if canonical_name(name) != name or not _NAME_RE.match(name):
        chk.fail("name", name, "a lower-case name of letters, digits, '-' and '.' "
                 "(e.g. 'metr-la')", f"Use {canonical_name(name)!r}")
    if path is not None and path.stem != name:
        raise ConfigError(f"{chk.where}: field 'name' is {name!r} but the file is named "
                          f"{path.name!r}; expected the file to be '{name}{path.suffix}'. "
                          f"Rename the file or fix 'name'")
    description = chk.string("description", data["description"])
    files_raw = data["files"]
    if not isinstance(files_raw, list) or not files_raw:
        chk.fail("files", files_raw, "a non-empty list of files")
    files = tuple(_check_file(chk, i, f) for i, f in enumerate(files_raw))
    names = [f.name for f in files] + [m.name for f in files for m in f.members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        chk.fail("files", dup, "unique file names", "Each file or member may appear once")
    sensors = chk.integer("sensors", data["sensors"], minimum=1)
    interval = _check_interval(chk, data["interval"])
    channels = chk.str_list("channels", data["channels"])
    if not channels:
        chk.fail("channels", data["channels"], "at least one channel name")
    null_value = _check_null(chk, data["null_value"])
    fmt = data["format"]
    if fmt not in FORMATS:
        chk.fail("format", fmt, f"one of {list(FORMATS)}")
    citation = chk.string("citation", data["citation"])
    source = chk.string("source", data["source"])
    aliases = chk.str_list("aliases", data.get("aliases"), optional=True)
    steps = chk.integer("steps", data.get("steps"), optional=True, minimum=1)
    start = _check_timestamp(chk, "start", data.get("start"))
    end = _check_timestamp(chk, "end", data.get("end"))
    key = chk.string("key", data.get("key"), optional=True)
    header = chk.boolean("header", data.get("header"), default=True)
    if not header and fmt != "csv":
        chk.fail("header", False, "header: false only with format: csv",
                 "Remove 'header' or set format: csv")
    if not header and start is None:
        chk.missing("start", "the first timestamp (a header-less CSV has no time column)")
    calendar = data.get("calendar") or "all"
    if calendar not in CALENDARS:
        chk.fail("calendar", calendar, f"one of {list(CALENDARS)}")
    if calendar != "all" and start is None:
        chk.missing("start", f"a start date (calendar: {calendar} builds timestamps from it)")
    directory = data.get("directory")
    if directory is not None:
        directory = chk.relpath("directory", directory)
        if "/" in directory:
            chk.fail("directory", directory, "a single folder name")
    license_ = chk.string("license", data.get("license"), optional=True)
    notes = chk.string("notes", data.get("notes"), optional=True)
    page = chk.string("page", data.get("page"), optional=True)

    # data file
    data_entries = [n for n, role in ((f.name, f.role) for f in files) if role == "data"]
    data_entries += [m.name for f in files for m in f.members if m.role == "data"]
    if len(data_entries) != 1:
        chk.fail("files", [f.name for f in files],
                 f"exactly one file or archive member with role 'data' (found {len(data_entries)})",
                 "Mark the series file with role: data")

    def _known(fieldname, value):
        value = chk.relpath(fieldname, value)
        if value not in names:
            chk.fail(fieldname, value, f"one of the files listed in 'files' {names}",
                     "List the file under 'files' or fix the name")
        return value

    ids_file = _known("ids_file", data["ids_file"]) if data.get("ids_file") is not None else None

    # graph
    g = data["graph"]
    if not isinstance(g, Mapping):
        chk.fail("graph", g, "a mapping {method, file, ...}")
    chk.unknown("graph", g.keys(), _GRAPH_KEYS)
    method = g.get("method")
    if method not in GRAPH_METHODS:
        chk.fail("graph.method", method, f"one of {list(GRAPH_METHODS)}")
    if "file" not in g:
        chk.missing("graph.file", "the file the graph is built from")
    gfile = _known("graph.file", g["file"])
    gids = _known("graph.ids_file", g["ids_file"]) if g.get("ids_file") is not None else None
    kernel = g.get("kernel")
    if kernel is not None and kernel not in KERNELS:
        chk.fail("graph.kernel", kernel, f"one of {list(KERNELS)}")
    if method in ("distances", "distance-matrix") and kernel is None:
        kernel = "gaussian"
    sigma = chk.number("graph.sigma", g.get("sigma"), optional=True)
    if sigma is not None and sigma <= 0:
        chk.fail("graph.sigma", sigma, "a positive number or null (null: the std of the distances)")
    threshold = chk.number("graph.threshold", g.get("threshold"), optional=True)
    symmetric = g.get("symmetric")
    if symmetric is not None:
        symmetric = chk.boolean("graph.symmetric", symmetric)
    graph = GraphSpec(method=method, file=gfile, ids_file=gids, kernel=kernel, sigma=sigma,
                      threshold=threshold, symmetric=symmetric,
                      notes=chk.string("graph.notes", g.get("notes"), optional=True))

    # subset
    subset = None
    if data.get("subset") is not None:
        s = data["subset"]
        if not isinstance(s, Mapping):
            chk.fail("subset", s, "a mapping {file, column, values, id_column, index_column}")
        chk.unknown("subset", s.keys(), _SUBSET_KEYS)
        for k in ("file", "column", "values"):
            if k not in s:
                chk.missing(f"subset.{k}", "a value")
        vals = s["values"]
        if not isinstance(vals, list) or not vals or not all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in vals):
            chk.fail("subset.values", vals, "a non-empty list of strings or integers")
        subset = SubsetSpec(
            file=_known("subset.file", s["file"]),
            column=chk.string("subset.column", s["column"]),
            values=tuple(vals),
            id_column=chk.string("subset.id_column", s.get("id_column", "ID")),
            index_column=chk.string("subset.index_column", s.get("index_column"), optional=True),
            notes=chk.string("subset.notes", s.get("notes"), optional=True))
    if method == "adj-npy" and subset is not None and subset.index_column is None:
        chk.missing("subset.index_column", "the metadata column that indexes the adjacency matrix")

    return Manifest(name=name, description=description, files=files, sensors=sensors,
                    interval=interval, channels=channels, null_value=null_value, format=fmt,
                    graph=graph, citation=citation, source=source, aliases=aliases, steps=steps,
                    start=start, end=end, key=key, header=header, calendar=calendar, directory=directory,
                    ids_file=ids_file, subset=subset, license=license_, notes=notes, page=page,
                    path=path)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate one YAML manifest file."""
    from ..config import load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"'{path}': manifest file not found; expected a YAML file. "
                          f"Check the path or $STGRAPH_MANIFESTS")
    data = load_yaml(path, what="manifest")
    return parse_manifest(data, path)
