"""What several command groups share: argparse types that refuse in one line, help texts, ``emit``."""
from __future__ import annotations

import argparse
import json
import re
import sys

from .fields import Flag

NULL_HELP = ("which readings are missing: nan (or none) = empty cells / NaN only, zeros are readings; 0 = zeros "
             "are missing too (the METR-LA / PEMS-BAY convention); or another number. Default: the file's own "
             "convention (0 for the METR-LA / PEMS-BAY HDF5 layout and named datasets, nan for CSV, plain HDF5 "
             "and .npz). The same as --set data.null_value=VALUE")

CRS_HELP = ("coordinate system: degrees (latitude/longitude, default), projected (metres, Euclidean "
            "distances), or EPSG:<code> to convert to degrees with pyproj (pip install 'stgraph[geo]')")

BUDGET_HELP = ("training budget in CPU time of the process (time.process_time: training steps and validation "
               "passes), e.g. 10m, 90s, 1.5h or 10 (minutes)")

MODEL_PATH_HELP = "import path of the run's user model (package.module:Class)"


#: how a library message names an argument -> how the command line says it (the library speaks of arguments,
#: ``resume=True``; the command of flags, ``--resume``)
ARGUMENT_FLAGS = ((re.compile(r"\bresume=True\b"), "--resume"), (re.compile(r"\boverwrite=True\b"), "--overwrite"),
                  (re.compile(r"\bforce=True\b"), "--force"),
                  (re.compile(r"\banother out\b"), "another --out"),
                  (re.compile(r"\bmodel=(['\"])([^'\"]+)\1"), r"--model \2"),
                  (re.compile(r"\bfederated\.certificates\b"), "--certificates"),
                  (re.compile(r"\bfederated\.root_certificates\b"), "--root-certificates"),
                  (re.compile(r"\bthreshold=VALUE\b"), "--regime-threshold VALUE"),
                  (re.compile(r"\bby=(['\"])(\w+)\1"), r"--by \2"),
                  (re.compile(r"\b(free_flow_quantile|congested_fraction) = "),
                   lambda m: "--" + m.group(1).replace("_", "-") + " "))


def in_flags(message: str) -> str:
    """A library message as the command line says it: ``pass resume=True`` -> ``pass --resume``, ``another out``
    -> ``another --out``, ``model='pkg.mod:Class'`` -> ``--model pkg.mod:Class`` (:data:`ARGUMENT_FLAGS`)."""
    for pattern, flag in ARGUMENT_FLAGS:
        message = pattern.sub(flag, message)
    return message


def _argparse_type(parse, text: str):
    """``parse(text)`` with a :class:`~stgraph.errors.ConfigError` as an argparse error (one line, exit status 2)."""
    from ..errors import ConfigError

    try:
        return parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def checked(parse):
    """An argparse type: ``parse(text)`` (a library check that raises
    :class:`~stgraph.errors.ConfigError`), a refused value an argparse error (one line, exit status 2)."""
    return lambda text: _argparse_type(parse, text)


def null_value_arg(text: str):
    """argparse type of ``--null-value``: :func:`stgraph.io.series.parse_null_value`, refused values are
    argparse errors (one line, exit status 2)."""
    from ..io.series import parse_null_value

    return _argparse_type(parse_null_value, text)


def budget_arg(text: str) -> float:
    """argparse type of ``--budget`` (``stgraph train``): :func:`stgraph.budgets.parse_budget`, minutes."""
    from ..budgets import parse_budget

    return _argparse_type(lambda t: parse_budget(t, None), text)


def budgets_arg(text: str) -> list[float]:
    """argparse type of ``--budget`` (``stgraph bench``): :func:`stgraph.budgets.parse_budgets`, minutes."""
    from ..budgets import parse_budgets

    return _argparse_type(lambda t: parse_budgets(t, None), text)


#: ``--null-value {nan,none,0,<number>}``: ``data.null_value`` of a command that reads a series
NULL_FLAG = Flag("data.null_value", NULL_HELP, options={"type": null_value_arg, "metavar": "{nan,none,0,NUMBER}"})


def add_null_value(p) -> None:
    """``--null-value {nan,none,0,<number>}`` on a command that reads a series."""
    from ..config import RunConfig
    from .fields import add_flags

    add_flags(p, RunConfig, [NULL_FLAG])


def emit(obj, as_json: bool) -> None:
    """Print ``obj`` as one JSON object or as aligned ``key: value`` lines."""
    if as_json:
        sys.stdout.write(json.dumps(obj) + "\n")
        return
    width = max((len(str(k)) for k in obj), default=0)
    for k, v in obj.items():
        print(f"{str(k).ljust(width)}  {v}")
