"""Training budgets as a user writes them (``10m``, ``90s``, ``1.5h``, ``1m,3m,10m``) -> CPU minutes
(``train.budget_minutes``, ``stgraph train --budget``, ``stgraph bench --budget``)."""
from __future__ import annotations

import math
import re

from .errors import ConfigError

_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*(s|sec|m|min|h)?")
_UNIT_MINUTES = {"s": 1 / 60, "sec": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0, None: 1.0}


def parse_budget(text, option: str | None = "--budget") -> float:
    """A training budget as a user writes it -> minutes (a float > 0): ``10m``, ``90s``, ``1.5h``, or a
    plain number of minutes (``10``). Anything else is a :class:`ConfigError` naming ``option`` (``None``:
    the caller names it, as argparse does)."""
    raw = str(text).strip().lower()
    m = _DURATION.fullmatch(raw)
    minutes = float(raw[:m.start(2)] if m.group(2) else raw) * _UNIT_MINUTES[m.group(2)] if m else math.nan
    if not (math.isfinite(minutes) and minutes > 0):
        raise ConfigError(f"{option + ' ' if option else ''}{text!r}: expected a positive duration of CPU time, "
                          f"in minutes (10) or with a unit s, m or h (90s, 10m, 1.5h)")
    return minutes


def parse_budgets(text, option: str | None = "--budget") -> list[float]:
    """A comma-separated list of budgets (``1m,3m,10m``, :func:`parse_budget` each) -> minutes, ascending,
    each once."""
    items = [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{option + ' ' if option else ''}{text!r}: expected one or more durations separated "
                          f"by commas, e.g. 1m,3m,10m")
    return sorted(set(parse_budget(t, option) for t in items))
