"""YAML read safely: :func:`load_yaml` with :class:`StrictLoader` (no aliases, no duplicated keys, UTF-8 only).

What every YAML file stgraph reads goes through: run configs (:mod:`stgraph.config`), dataset manifests,
published result files. Errors name the file and the line.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import ConfigError, where

__all__ = ["StrictLoader", "load_yaml"]


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``: a few hundred bytes of nested aliases
    expand to gigabytes) and duplicated keys (YAML would silently keep the last)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"alias '*{event.anchor}' refused: stgraph configs do not use anchors and aliases "
                f"(they can expand a tiny file to gigabytes); write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} appears twice (first at line {seen[key] + 1}); YAML would silently keep "
                    f"the last one. Keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)


def _yaml_error_text(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None)
    if problem and mark is not None:
        return f"at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return "(" + " ".join(str(e).split()) + ")"


def load_yaml(source: str | Path | bytes, *, what: str = "YAML file", error=ConfigError):
    """Parse YAML with :class:`StrictLoader`: no aliases, no duplicated keys, UTF-8 only.

    ``source`` is a :class:`~pathlib.Path` (its bytes are read, ``what`` says what the file is)
    or the text/bytes themselves (``what`` names them). Errors are ``error`` naming the file (and line)."""
    if isinstance(source, Path):
        name = f"{what} {where(source)}"
        try:
            raw = source.read_bytes()
        except OSError as e:
            from .files import wrap_os_error
            raise wrap_os_error(e, source, "read") from None
    else:
        name, raw = what, source
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise error(f"{name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}, line {line}); "
                        f"save it as UTF-8 (e.g. iconv -f CP1252 -t UTF-8)") from None
    else:
        text = raw
    try:
        return yaml.load(text, Loader=StrictLoader)
    except RecursionError:
        raise error(f"{name} nests mappings/lists too deeply to read") from None
    except yaml.YAMLError as e:
        raise error(f"{name} is not valid YAML {_yaml_error_text(e)}") from None
