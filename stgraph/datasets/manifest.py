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

Manifests are validated against a JSON Schema (:mod:`.schema`, checked with
``jsonschema``). Every validation error is a :class:`~stgraph.errors.ConfigError`
whose message names the manifest file and the field, what was found, what was
expected and how to fix it.
"""
from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ConfigError
from .schema import FORMATS, GRAPH_METHODS, ROLES, check, describe, fail

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


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _texts(value) -> tuple[str, ...]:
    """A validated string-or-list field as a tuple of stripped strings."""
    if value is None:
        return ()
    return tuple(v.strip() for v in ([value] if isinstance(value, str) else value))


def _relpath(value) -> str | None:
    return None if value is None else str(PurePosixPath(value))


def _file_spec(where: str, i: int, raw: Mapping) -> FileSpec:
    """One validated entry of ``files``, with the rules that relate its fields."""
    fn = f"files[{i}]"
    urls: list[str] = []
    for u in ([raw["url"]] if raw.get("url") is not None else []) + list(raw.get("urls") or []):
        if u.strip() not in urls:
            urls.append(u.strip())
    sha = raw.get("sha256")
    sha = sha.strip().lower() if sha is not None else None
    verified = raw.get("verified", sha is not None)
    if verified and sha is None:
        fail(where, f"{fn}.verified", verified, "false while sha256 is null",
             "A file without a published checksum cannot be verified; set verified: false")
    manual = bool(raw.get("manual") or False)
    page, instructions = _strip(raw.get("page")), _strip(raw.get("instructions"))
    members = raw.get("members")
    if members is not None and raw["role"] != "archive":
        fail(where, f"{fn}.members", members, "no members unless role is 'archive'",
             "Set role: archive or remove 'members'")
    if members is None and raw["role"] == "archive":
        raise ConfigError(f"{where}: required field '{fn}.members' is missing; expected the list of files "
                          f"inside the archive ({{name, role}}). Add it to the manifest")
    if not urls and not manual:
        fail(where, f"{fn}.urls", raw.get("urls"), "at least one http(s) URL unless manual: true",
             "Add the published URL, or set manual: true with 'page' and 'instructions'")
    if manual and not (page or instructions):
        raise ConfigError(f"{where}: required field '{fn}.page' is missing; expected a page or instructions "
                          f"telling a person where to get the file (manual: true). Add it to the manifest")
    return FileSpec(name=_relpath(raw["name"]), role=raw["role"], urls=tuple(urls), sha256=sha,
                    size=raw.get("size"), max_size=raw.get("max_size"), verified=verified, manual=manual,
                    page=page, instructions=instructions,
                    members=tuple(MemberSpec(_relpath(m["name"]), m["role"]) for m in members or ()),
                    notes=_strip(raw.get("notes")))


def _null_value(value) -> float:
    return float("nan") if isinstance(value, str) else float(value)


def parse_manifest(data: Any, path: str | os.PathLike | None = None) -> Manifest:
    """Validate a parsed YAML mapping and build a :class:`Manifest`.

    Types, allowed values and shapes are checked against :data:`~.schema.MANIFEST_SCHEMA`; the
    rules that relate fields (unique file names, one data file, files named elsewhere listed under
    ``files``, ``start`` where a time axis is built from it) here.

    Raises:
        ConfigError: naming the manifest file, the field, what was found and what was expected.
    """
    path = Path(path) if path is not None else None
    where = _where(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the manifest must be a YAML mapping of fields, "
                          f"found {describe(data)}; see datasets/README.md for the layout")
    data = dict(data)
    for key in ("start", "end"):  # YAML reads an unquoted date as a date
        if isinstance(data.get(key), (_dt.date, _dt.datetime)):
            data[key] = data[key].isoformat()
    data["calendar"] = data.get("calendar") or "all"
    check(data, where)

    name = data["name"].strip()
    if canonical_name(name) != name or not _NAME_RE.match(name):
        fail(where, "name", name, "a lower-case name of letters, digits, '-' and '.' (e.g. 'metr-la')",
             f"Use {canonical_name(name)!r}")
    if path is not None and path.stem != name:
        raise ConfigError(f"{where}: field 'name' is {name!r} but the file is named "
                          f"{path.name!r}; expected the file to be '{name}{path.suffix}'. "
                          f"Rename the file or fix 'name'")
    files = tuple(_file_spec(where, i, f) for i, f in enumerate(data["files"]))
    names = [f.name for f in files] + [m.name for f in files for m in f.members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        fail(where, "files", dup, "unique file names", "Each file or member may appear once")
    start = _strip(data.get("start"))
    header = data.get("header", True) is not False
    if not header and data["format"] != "csv":
        fail(where, "header", False, "header: false only with format: csv", "Remove 'header' or set format: csv")
    if not header and start is None:
        raise ConfigError(f"{where}: required field 'start' is missing; expected the first timestamp "
                          f"(a header-less CSV has no time column). Add it to the manifest")
    calendar = data["calendar"]
    if calendar != "all" and start is None:
        raise ConfigError(f"{where}: required field 'start' is missing; expected a start date (calendar: "
                          f"{calendar} builds timestamps from it). Add it to the manifest")
    directory = _relpath(data.get("directory"))
    if directory is not None and "/" in directory:
        fail(where, "directory", directory, "a single folder name")
    data_entries = [f.name for f in files if f.role == "data"]
    data_entries += [m.name for f in files for m in f.members if m.role == "data"]
    if len(data_entries) != 1:
        fail(where, "files", [f.name for f in files],
             f"exactly one file or archive member with role 'data' (found {len(data_entries)})",
             "Mark the series file with role: data")

    def known(field: str, value):
        if value is None:
            return None
        value = _relpath(value)
        if value not in names:
            fail(where, field, value, f"one of the files listed in 'files' {names}",
                 "List the file under 'files' or fix the name")
        return value

    g = data["graph"]
    kernel = g.get("kernel")
    if g["method"] in ("distances", "distance-matrix") and kernel is None:
        kernel = "gaussian"
    graph = GraphSpec(method=g["method"], file=known("graph.file", g["file"]),
                      ids_file=known("graph.ids_file", g.get("ids_file")), kernel=kernel,
                      sigma=None if g.get("sigma") is None else float(g["sigma"]),
                      threshold=None if g.get("threshold") is None else float(g["threshold"]),
                      symmetric=g.get("symmetric"), notes=_strip(g.get("notes")))
    subset = None
    if data.get("subset") is not None:
        s = data["subset"]
        subset = SubsetSpec(file=known("subset.file", s["file"]), column=s["column"].strip(),
                            values=tuple(s["values"]), id_column=s.get("id_column", "ID").strip(),
                            index_column=_strip(s.get("index_column")), notes=_strip(s.get("notes")))
    if g["method"] == "adj-npy" and subset is not None and subset.index_column is None:
        raise ConfigError(f"{where}: required field 'subset.index_column' is missing; expected the metadata "
                          f"column that indexes the adjacency matrix. Add it to the manifest")
    return Manifest(name=name, description=data["description"].strip(), files=files, sensors=int(data["sensors"]),
                    interval=data["interval"].strip(), channels=_texts(data["channels"]),
                    null_value=_null_value(data["null_value"]), format=data["format"], graph=graph,
                    citation=data["citation"].strip(), source=data["source"].strip(),
                    aliases=_texts(data.get("aliases")), steps=data.get("steps"), start=start,
                    end=_strip(data.get("end")), key=_strip(data.get("key")), header=header, calendar=calendar,
                    directory=directory, ids_file=known("ids_file", data.get("ids_file")), subset=subset,
                    license=_strip(data.get("license")), notes=_strip(data.get("notes")),
                    page=_strip(data.get("page")), path=path)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate one YAML manifest file."""
    from ..yamlfile import load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"'{path}': manifest file not found; expected a YAML file. "
                          f"Check the path or $STGRAPH_MANIFESTS")
    data = load_yaml(path, what="manifest")
    return parse_manifest(data, path)
