"""The one check of a YAML value against a type hint: :func:`check_value`.

YAML gives ``bool``, ``int``, ``float``, ``str``, lists, dicts, ``None`` and dates. A run config's fields
(:mod:`stgraph.config`) and a model's constructor arguments (:mod:`stgraph.models.registry`) are checked
against their annotations by the same function:

* ``Any`` takes anything; ``None`` only ``None``; ``Optional[X]`` / ``X | Y`` / ``Union`` one of their
  members; ``Literal[...]`` one of its values;
* ``bool`` only ``true`` / ``false``; ``int`` an integer that is not a bool; ``float`` any number but a
  bool; ``str`` text;
* ``list`` / ``tuple`` / ``Sequence[X]`` a list (each item an ``X`` when the hint names it); ``dict`` /
  ``Mapping`` a mapping; any other class an instance of it.

With ``convert=True`` (a config field) the value is also made what the field holds where that is
harmless: an integer given for a ``float`` becomes a float, a number YAML 1.1 left as text (``1e-3``,
no dot) becomes a float, a date YAML read from ``2012-03-01`` becomes its ISO text, a tuple a list and
a mapping a new dict. With ``convert=False`` (a model argument) the value is returned as it is.
"""
from __future__ import annotations

import collections.abc
import datetime as _dt
import re
import types
import typing
from typing import Any

from .errors import ConfigError

__all__ = ["check_value"]

_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def check_value(value: Any, tp: Any, where: str, *, convert: bool = True) -> Any:
    """``value`` checked against the type hint ``tp`` (see the module docstring); returns it, converted
    where harmless when ``convert``.

    Raises:
        ConfigError: ``"{where} = {value!r}: expected ..., got {type}"``.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is type(None) or tp is None:
        return _ok(value is None, value, where, "null")
    if origin in (typing.Union, types.UnionType):
        return _union(value, args, where, convert)
    if origin is typing.Literal:
        return _ok(value in args, value, where, f"one of {list(args)}")
    if tp is bool:
        return _ok(isinstance(value, bool), value, where, "true or false")
    if tp is int:
        return _ok(isinstance(value, int) and not isinstance(value, bool), value, where, "an integer")
    if tp is float:
        return _float(value, where, convert)
    if tp is str:
        if convert and isinstance(value, (_dt.date, _dt.datetime)):
            return value.isoformat()  # YAML reads 2012-03-01 as a date; the field wants its text
        return _ok(isinstance(value, str), value, where, "a string")
    if tp in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return _sequence(value, tp, origin, args, where, convert)
    if tp is dict or origin in (dict, collections.abc.Mapping):
        _ok(isinstance(value, dict), value, where, "a mapping")
        return dict(value) if convert else value
    return _ok(not isinstance(tp, type) or isinstance(value, tp), value, where, getattr(tp, "__name__", str(tp)))


def _ok(fits: bool, value: Any, where: str, expected: str) -> Any:
    if not fits:
        raise ConfigError(f"{where} = {value!r}: expected {expected}, got {type(value).__name__}")
    return value


def _union(value: Any, args: tuple, where: str, convert: bool) -> Any:
    if value is None and type(None) in args:
        return None
    for a in args:
        if a is type(None):
            continue
        try:
            return check_value(value, a, where, convert=convert)
        except ConfigError:
            pass
    names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
    raise ConfigError(f"{where} = {value!r}: expected {names}, got {type(value).__name__}")


def _float(value: Any, where: str, convert: bool) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if convert else value
    if convert and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return _ok(False, value, where, "a number")


def _sequence(value: Any, tp: Any, origin: Any, args: tuple, where: str, convert: bool) -> Any:
    _ok(isinstance(value, (list, tuple)), value, where, "a list")
    item = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else None
    if item is not None:
        checked = [check_value(v, item, f"{where}[{i}]", convert=convert) for i, v in enumerate(value)]
        return checked if convert else value
    return list(value) if convert else value
