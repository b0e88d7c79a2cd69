"""What a dataset manifest says, as frozen dataclasses: :class:`Manifest` and its :class:`FileSpec`,
:class:`MemberSpec`, :class:`GraphSpec` and :class:`SubsetSpec` (built by
:func:`~stgraph.datasets.validation.parse_manifest`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["MemberSpec", "FileSpec", "GraphSpec", "SubsetSpec", "Manifest", "canonical_name", "manifest_where"]


def manifest_where(path) -> str:
    """The manifest file for messages: ``'path'``, or ``<manifest>`` for one given in memory."""
    return f"'{path}'" if path is not None else "<manifest>"


def canonical_name(name: str) -> str:
    """Lower-case, ``_``/spaces -> ``-``: ``'METR_LA'`` -> ``'metr-la'``."""
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())



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
            f"{manifest_where(self.path)}: no file or archive member named {name!r}; "
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
        raise ConfigError(f"{manifest_where(self.path)}: no file has role 'data'")

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
