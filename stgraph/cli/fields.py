"""Command-line flags derived from the config dataclasses.

A :class:`Flag` names one field of a config dataclass (``train.batch_size`` of
:class:`~stgraph.config.RunConfig`, ``clients`` of :class:`~stgraph.federated.config.FederatedConfig`);
:func:`add_flags` gives it its argparse type from the field's type hint (a list field is repeatable, a
boolean one a switch) and fills ``{default}`` in its help text with the dataclass's default, and
:func:`given` reads back the values the command line set. So no table of flags, types or defaults is
kept by hand beside the dataclasses.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Flag:
    """One command-line flag over one config field.

    Attributes:
        field: the field, dotted through nested dataclasses (``train.epochs``) or a plain name (``clients``).
        help: help text; ``{default}`` is replaced by the field's default in the dataclass.
        name: the ``argparse`` destination (and Python API argument): default the field's last part;
            the flag is ``--`` + ``name`` with dashes unless ``flag`` says otherwise.
        flag: the flag's spelling when it is not ``--name`` (``--no-progress``, ``--fresh-optimizer``).
        negate: a boolean field the flag sets to false.
        options: more ``add_argument`` keywords (``choices``, ``metavar``, a ``type`` of its own).
    """

    field: str
    help: str = ""
    name: str | None = None
    flag: str | None = None
    negate: bool = False
    options: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.name or self.field.rpartition(".")[2]

    @property
    def spelling(self) -> str:
        return self.flag or "--" + self.dest.replace("_", "-")


def field_type_and_default(config_class: type, dotted: str) -> tuple[Any, Any]:
    """The type (``Optional[X]`` as ``X``) and the default of field ``dotted`` of ``config_class``."""
    cls, value = config_class, config_class()
    tp: Any = config_class
    for part in dotted.split("."):
        tp = typing.get_type_hints(cls)[part]
        value = getattr(value, part)
        cls = tp if dataclasses.is_dataclass(tp) else None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:
        tp = args[0] if len(args) == 1 else str
    return tp, value


def add_flags(parser, config_class: type, flags: typing.Iterable[Flag]) -> None:
    """Add each flag to ``parser``; every one defaults to ``None`` (not given)."""
    for f in flags:
        tp, default = field_type_and_default(config_class, f.field)
        kw: dict[str, Any] = {"dest": f.dest, "default": None}
        if tp is bool:
            kw["action"] = "store_false" if f.negate else "store_true"
        elif tp is list:
            kw.update(action="append", type=str)
        else:
            kw["type"] = tp
        kw.update(f.options)
        shown = "none" if default is None else f"{default:g}" if isinstance(default, float) else default
        parser.add_argument(f.spelling, help=f.help.format(default=shown) or None, **kw)


def given(args, flags: typing.Iterable[Flag]) -> dict[str, Any]:
    """``{dest: value}`` of the flags the command line gave (their value is not ``None``)."""
    return {f.dest: getattr(args, f.dest) for f in flags if getattr(args, f.dest, None) is not None}
