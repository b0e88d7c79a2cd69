"""The JSON Schema of a dataset manifest, and its errors as messages a person can act on.

:data:`MANIFEST_SCHEMA` states every field's type, allowed values and shape; it is checked with
``jsonschema`` (Draft 2020-12). Each schema node carries two annotations that ``jsonschema``
ignores: ``expected`` (what the field must hold, in words; a string, or a dict keyed by the
failing keyword) and ``missing`` (what a required field is, when it is absent). :func:`check`
turns the first error into a :class:`~stgraph.errors.ConfigError` that names the manifest file,
the field (``files[0].sha256``), what was found and what was expected. Rules that relate fields to
each other (a file listed under ``files``, one data file, ``verified`` against ``sha256``) are
checked by :func:`stgraph.datasets.validation.parse_manifest`.
"""
from __future__ import annotations

import difflib
import math
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from ..errors import ConfigError, SeriesError

__all__ = ["FORMATS", "ROLES", "GRAPH_METHODS", "KERNELS", "CALENDARS", "MANIFEST_SCHEMA", "check",
           "describe", "fail"]

FORMATS = ("pandas-h5", "npz", "csv")
ROLES = ("data", "graph", "locations", "ids", "meta", "archive")
GRAPH_METHODS = ("adj-pickle", "distances", "distance-matrix", "adj-npy")
KERNELS = ("gaussian", "binary")
CALENDARS = ("all", "weekdays")

# ------------------------------------------------------------------ formats
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("relpath")
def _is_relpath(value) -> bool:
    if not isinstance(value, str):
        return True
    p = PurePosixPath(value)
    return not (p.is_absolute() or "\\" in value or ".." in p.parts or value.startswith("~")
                or re.match(r"^[A-Za-z]:", value))


@_FORMATS.checks("http-url")
def _is_http_url(value) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@_FORMATS.checks("interval")
def _is_interval(value) -> bool:
    from ..io.series import parse_interval

    if not isinstance(value, str):
        return True
    try:
        parse_interval(value)
    except SeriesError:
        return False
    return True


@_FORMATS.checks("timestamp")
def _is_timestamp(value) -> bool:
    import numpy as np

    if not isinstance(value, str):
        return True
    try:
        np.datetime64(value.strip().replace(" ", "T"))
    except ValueError:
        return False
    return True


@_FORMATS.checks("finite")
def _is_finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


# ------------------------------------------------------------------- schema
def _text(*, optional: bool = False, **annotations) -> dict:
    """A non-empty string (``null`` too when ``optional``)."""
    return {"type": ["string", "null"] if optional else "string", "pattern": r"\S",
            "expected": "a non-empty string", **annotations}


def _relpath(**annotations) -> dict:
    return {"type": "string", "pattern": r"\S", "format": "relpath",
            "expected": "a relative POSIX path inside the dataset folder (no leading '/', no '..', no backslashes)",
            **annotations}


def _texts(*, optional: bool = False) -> dict:
    """One non-empty string or a list of them."""
    return {"type": ["string", "array", "null"] if optional else ["string", "array"], "pattern": r"\S",
            "items": {"type": "string", "pattern": r"\S"}, "expected": "a list of non-empty strings"}


def _count(minimum: int, *, optional: bool = True) -> dict:
    return {"type": ["integer", "null"] if optional else "integer", "minimum": minimum,
            "expected": f"an integer >= {minimum}"}


def _flag(*, optional: bool = True) -> dict:
    return {"type": ["boolean", "null"] if optional else "boolean", "expected": "true or false"}


def _number(**annotations) -> dict:
    return {"type": ["number", "null"], "format": "finite", "expected": "a finite number", **annotations}


def _one_of(values, *, optional: bool = False, **annotations) -> dict:
    return {"enum": [*values, None] if optional else list(values), "expected": f"one of {list(values)}",
            "missing": f"one of {list(values)}", **annotations}


_URL = {"type": "string", "pattern": r"\S", "format": "http-url", "expected": "an http:// or https:// URL",
        "fix": "Only http(s) downloads are supported; put other links in 'page'"}

_MEMBER = {
    "type": "object", "expected": "a mapping with 'name' and 'role'",
    "required": ["name", "role"], "additionalProperties": False,
    "properties": {
        "name": _relpath(missing="the path of the member inside the archive"),
        "role": _one_of([r for r in ROLES if r != "archive"]),
    },
}

_FILE = {
    "type": "object", "expected": "a mapping with at least 'name' and 'role'",
    "required": ["name", "role"], "additionalProperties": False,
    "properties": {
        "name": _relpath(missing="the file name relative to the dataset folder"),
        "role": _one_of(ROLES),
        "url": {**_URL, "type": ["string", "null"]},
        "urls": {"type": ["array", "null"], "items": _URL, "expected": "a list of http(s) URLs"},
        "sha256": {"type": ["string", "null"], "pattern": r"^\s*[0-9a-fA-F]{64}\s*$",
                   "expected": "64 hexadecimal digits or null",
                   "fix": "Compute it with `sha256sum FILE`, or set it to null when unknown"},
        "size": _count(0),
        "max_size": _count(0),
        "verified": _flag(optional=False),
        "manual": _flag(),
        "page": _text(optional=True),
        "instructions": _text(optional=True),
        "members": {"type": ["array", "null"], "minItems": 1, "items": _MEMBER,
                    "expected": "a non-empty list of {name, role}"},
        "notes": _text(optional=True),
    },
}

_GRAPH = {
    "type": "object", "expected": "a mapping {method, file, ...}",
    "required": ["method", "file"], "additionalProperties": False,
    "properties": {
        "method": _one_of(GRAPH_METHODS),
        "file": _relpath(missing="the file the graph is built from"),
        "ids_file": {**_relpath(), "type": ["string", "null"]},
        "kernel": _one_of(KERNELS, optional=True),
        "sigma": _number(exclusiveMinimum=0, expected={
            "exclusiveMinimum": "a positive number or null (null: the std of the distances)",
            "*": "a finite number"}),
        "threshold": _number(),
        "symmetric": _flag(),
        "notes": _text(optional=True),
    },
}

_SUBSET = {
    "type": "object", "expected": "a mapping {file, column, values, id_column, index_column}",
    "required": ["file", "column", "values"], "additionalProperties": False,
    "properties": {
        "file": _relpath(),
        "column": _text(),
        "values": {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]},
                   "expected": "a non-empty list of strings or integers"},
        "id_column": _text(),
        "index_column": _text(optional=True),
        "notes": _text(optional=True),
    },
}

#: The manifest's JSON Schema; property order is the order fields are documented (and listed in errors).
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "description", "files", "sensors", "interval", "channels", "null_value", "format",
                 "graph", "citation", "source"],
    "additionalProperties": False,
    "properties": {
        "name": _text(),
        "description": _text(),
        "files": {"type": "array", "minItems": 1, "items": _FILE, "expected": "a non-empty list of files",
                  "missing": "a list of {name, url(s), sha256, role}"},
        "sensors": _count(1, optional=False),
        "interval": {"type": "string", "format": "interval",
                     "expected": "a sampling interval such as '5min', '15min', '1h' or '30s'"},
        "channels": {**_texts(), "minItems": 1,
                     "expected": {"minItems": "at least one channel name", "*": "a list of non-empty strings"}},
        "null_value": {"anyOf": [{"type": "number"},
                                 {"type": "string", "pattern": r"(?i)^\s*(nan|\.nan|null-nan)\s*$"}],
                       "expected": "a number such as 0.0, or 'nan'",
                       "fix": "Use 0.0 when a dead detector reads 0, 'nan' when missing readings are NaN"},
        "format": _one_of(FORMATS),
        "graph": {**_GRAPH, "missing": "a mapping {method, file, ...}"},
        "citation": _text(),
        "source": _text(),
        "aliases": _texts(optional=True),
        "steps": _count(1),
        "start": {"type": ["string", "null"], "pattern": r"\S", "format": "timestamp",
                  "expected": "an ISO date or timestamp such as '2018-01-01' or '2018-01-01 00:00:00'"},
        "end": {"type": ["string", "null"], "pattern": r"\S", "format": "timestamp",
                "expected": "an ISO date or timestamp such as '2018-01-01' or '2018-01-01 00:00:00'"},
        "key": _text(optional=True),
        "header": _flag(),
        "calendar": _one_of(CALENDARS),
        "directory": {**_relpath(), "type": ["string", "null"]},
        "ids_file": {**_relpath(), "type": ["string", "null"]},
        "subset": {**_SUBSET, "type": ["object", "null"]},
        "license": _text(optional=True),
        "notes": _text(optional=True),
        "page": _text(optional=True),
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(MANIFEST_SCHEMA, format_checker=_FORMATS)


# ------------------------------------------------------------------- errors
def describe(value) -> str:
    """``'abc' (str)``: a found value for an error message (cut at 60 characters)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def fail(where: str, field: str, value, expected: str, fix: str | None = None):
    """Raise the manifest error for ``field`` holding ``value``."""
    raise ConfigError(f"{where}: field '{field}': found {describe(value)}; expected {expected}. "
                      f"{fix or 'Fix the manifest'}")


def _field(path) -> str:
    """``('files', 0, 'sha256')`` -> ``'files[0].sha256'``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _rank(error: jsonschema.ValidationError) -> tuple:
    """Report the error of the first field (in schema order), the outermost problem first."""
    order = list(MANIFEST_SCHEMA["properties"])
    head = error.absolute_path[0] if error.absolute_path else None
    first = order.index(head) if head in order else -1
    kind = {"type": 0, "anyOf": 0, "additionalProperties": 1, "required": 2}.get(error.validator, 3)
    return first, len(error.absolute_path), kind, list(map(str, error.absolute_path))


def check(data: Any, where: str) -> None:
    """Validate a parsed manifest against :data:`MANIFEST_SCHEMA`.

    Raises:
        ConfigError: naming the manifest ``where``, the field, what was found and what was expected.
    """
    errors = sorted(_VALIDATOR.iter_errors(data), key=_rank)
    if not errors:
        return
    e = errors[0]
    node = e.schema
    if e.validator == "additionalProperties":
        allowed = list(node["properties"])
        extra = sorted(set(e.instance) - set(allowed))
        near = difflib.get_close_matches(extra[0], allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"{where}: unknown field(s) {extra} in '{_field(e.absolute_path) or '<top level>'}'{hint}; "
                          f"allowed: {allowed}. Remove or rename them")
    if e.validator == "required":
        name = next(r for r in node["required"] if r not in e.instance)
        missing = node["properties"][name].get("missing", "a value")
        raise ConfigError(f"{where}: required field '{_field([*e.absolute_path, name])}' is missing; "
                          f"expected {missing}. Add it to the manifest")
    node, depth = _owner(e)
    path = list(e.absolute_path)[:depth]
    value = data
    for p in path:
        value = value[p]
    expected = node["expected"]
    if isinstance(expected, dict):
        expected = expected.get(e.validator, expected["*"])
    fail(where, _field(path), value, expected, node.get("fix"))


def _owner(error: jsonschema.ValidationError) -> tuple[dict, int]:
    """The innermost schema node on the error's schema path that says what it ``expected``, and
    the depth of its field in the instance (an error in a list item is reported on the list)."""
    node, depth, owner = MANIFEST_SCHEMA, 0, (MANIFEST_SCHEMA, 0)
    keys = list(error.schema_path)[:-1]  # the last key is the failing keyword
    j = 0
    while j < len(keys):
        k = keys[j]
        if k == "properties":
            node, depth, j = node["properties"][keys[j + 1]], depth + 1, j + 2
        elif k == "items":
            node, depth, j = node["items"], depth + 1, j + 1
        elif k == "anyOf":
            node, j = node["anyOf"][keys[j + 1]], j + 2
        else:
            break
        if "expected" in node:
            owner = (node, depth)
    return owner
