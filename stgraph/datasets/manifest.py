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

This module finds them (:func:`get_manifest`, :func:`list_datasets`); they are validated
(:mod:`.validation`) against a JSON Schema (:mod:`.schema`, checked with ``jsonschema``)
into :class:`~stgraph.datasets.specs.Manifest` objects. Every validation error is a :class:`~stgraph.errors.ConfigError`
whose message names the manifest file and the field, what was found, what was
expected and how to fix it.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ConfigError
from .schema import FORMATS, GRAPH_METHODS, ROLES
from .specs import Manifest, canonical_name
from .validation import load_manifest

__all__ = [
    "FORMATS",
    "ROLES",
    "GRAPH_METHODS",
    "manifest_dirs",
    "builtin_manifest_dir",
    "list_datasets",
    "get_manifest",
]


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
