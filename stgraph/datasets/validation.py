"""Validate a dataset manifest and build its :class:`~stgraph.datasets.specs.Manifest`: :func:`parse_manifest`,
:func:`load_manifest`.

Types, allowed values and shapes are checked against the JSON Schema of :mod:`.schema`; the rules that
relate fields (unique file names, one data file, files named elsewhere listed under ``files``, ``start``
where a time axis is built from it) here. Every error is a :class:`~stgraph.errors.ConfigError` naming
the manifest file and the field, what was found, what was expected and how to fix it.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from ..errors import ConfigError
from .schema import check, describe, fail
from .specs import FileSpec, GraphSpec, Manifest, MemberSpec, SubsetSpec, canonical_name, manifest_where

__all__ = ["parse_manifest", "load_manifest"]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


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
    where = manifest_where(path)
    data, name = _checked_mapping(data, path, where)
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

    graph, subset = _graph_and_subset(data, where, known)
    return Manifest(name=name, description=data["description"].strip(), files=files, sensors=int(data["sensors"]),
                    interval=data["interval"].strip(), channels=_texts(data["channels"]),
                    null_value=_null_value(data["null_value"]), format=data["format"], graph=graph,
                    citation=data["citation"].strip(), source=data["source"].strip(),
                    aliases=_texts(data.get("aliases")), steps=data.get("steps"), start=start,
                    end=_strip(data.get("end")), key=_strip(data.get("key")), header=header, calendar=calendar,
                    directory=directory, ids_file=known("ids_file", data.get("ids_file")), subset=subset,
                    license=_strip(data.get("license")), notes=_strip(data.get("notes")),
                    page=_strip(data.get("page")), path=path)


def _checked_mapping(data: Any, path: Path | None, where: str) -> tuple[dict, str]:
    """``(fields, name)``: the manifest's fields checked against the schema (dates read by YAML as
    text again, ``calendar`` defaulting to ``all``) and its name checked against the file's."""
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
    return data, name


def _graph_and_subset(data: dict, where: str, known) -> tuple[GraphSpec, SubsetSpec | None]:
    """The manifest's :class:`GraphSpec` and :class:`SubsetSpec` (``None`` without ``subset``); ``known``
    checks that a file they name is listed under ``files``."""
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
    return graph, subset


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate one YAML manifest file."""
    from ..yamlfile import load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"'{path}': manifest file not found; expected a YAML file. "
                          f"Check the path or $STGRAPH_MANIFESTS")
    data = load_yaml(path, what="manifest")
    return parse_manifest(data, path)
