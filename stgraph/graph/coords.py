"""Sensor coordinates in degrees or in projected metres, checked the same way everywhere.

A coordinate system (``crs``) is one of

* ``"degrees"`` (the default): latitude / longitude; out-of-range values are refused;
* ``"projected"``: planar metres (UTM, a national grid...): distances are Euclidean;
* ``"EPSG:<code>"``: planar coordinates in that system, converted to degrees with ``pyproj``
  (the optional extra ``pip install 'stgraph[geo]'``).

Coordinates are passed as ``(a, b)`` = (latitude, longitude) or (northing / y, easting / x): the
same two columns, whatever they hold. Graph nodes keep them as ``lat`` / ``lon`` and the graph
records ``graph.graph["crs"] = "projected"`` when they are metres, so distances and plot axes
follow (:func:`axis_labels`).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError, where

def parse_crs(crs: Any) -> str:
    """``None`` / ``"degrees"`` / ``"projected"`` (also ``metres``, ``meters``, ``m``) / ``"EPSG:32611"``."""
    if crs is None:
        return "degrees"
    text = str(crs).strip()
    low = text.lower()
    if low in ("degrees", "deg", "wgs84", "epsg:4326", "latlon"):
        return "degrees"
    if low in ("projected", "metres", "meters", "m"):
        return "projected"
    m = re.fullmatch(r"epsg:(\d+)", low)
    if m:
        return f"EPSG:{int(m.group(1))}"
    raise ConfigError(f"--crs {crs!r}: expected degrees, projected or EPSG:<code> (e.g. EPSG:32611)")


def check_coordinates(ids: Sequence[Any], a: Any, b: Any, crs: Any = "degrees", source: Any = None,
                      error=DataFormatError) -> tuple[np.ndarray, np.ndarray, str]:
    """Validate (and for ``EPSG:`` convert) coordinates; returns ``(a, b, crs)`` where ``crs`` is
    ``"degrees"`` or ``"projected"``.

    Raises ``error`` naming ``source``, the sensors, the range found and what was expected: not
    finite, or (for degrees) outside latitude [-90, 90] / longitude [-180, 180], with the hint to
    pass ``--crs projected`` or ``--crs EPSG:<code>`` for metres.
    """
    crs = parse_crs(crs)
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    ids_arr = np.asarray([str(s) for s in ids])
    bad = ~np.isfinite(a) | ~np.isfinite(b)
    if bad.any():
        raise error(f"{where(source)}: sensors {ids_arr[bad][:20].tolist()} have coordinates that are missing or "
                    f"not finite; expected a number in both coordinate columns")
    if crs.startswith("EPSG:"):
        a, b = _to_degrees(a, b, crs, source)
        crs = "degrees"
    if crs == "degrees":
        bad = (np.abs(a) > 90) | (np.abs(b) > 180)
        if bad.any():
            raise error(
                f"{where(source)}: sensors {ids_arr[bad][:20].tolist()} have coordinates outside latitude "
                f"[-90, 90] / longitude [-180, 180] (found latitude {a.min():g} .. {a.max():g}, longitude "
                f"{b.min():g} .. {b.max():g}); expected degrees. For projected metres (UTM, a national grid) "
                f"pass --crs projected (Euclidean distances) or --crs EPSG:<code> to convert them (or set the "
                f"graph attribute crs: projected); otherwise check the columns are not swapped")
    return a, b, crs


def _to_degrees(northing: np.ndarray, easting: np.ndarray, crs: str, source) -> tuple[np.ndarray, np.ndarray]:
    try:
        from pyproj import Transformer
    except ImportError:
        raise ConfigError(f"{where(source)}: --crs {crs} converts coordinates with pyproj, which is not "
                          f"installed; pip install 'stgraph[geo]' (pyproj), or pass --crs projected to keep "
                          f"the metres") from None
    try:
        tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    except Exception as e:  # noqa: BLE001 - pyproj's CRSError
        raise ConfigError(f"--crs {crs}: pyproj does not know it ({e}); expected an EPSG code of a projected "
                          f"system, e.g. EPSG:32611 (UTM zone 11N)") from None
    lon, lat = tr.transform(easting, northing)
    return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


def pairwise_km(a: np.ndarray, b: np.ndarray, crs: str) -> np.ndarray:
    """``[N, N]`` distances in km: great-circle for degrees, Euclidean (metres / 1000) for projected."""
    if crs == "projected":
        return np.hypot(a[:, None] - a[None, :], b[:, None] - b[None, :]) / 1000.0
    from .build import haversine_km
    return haversine_km(a[:, None], b[:, None], a[None, :], b[None, :])


def axis_labels(crs: str | None) -> tuple[str, str]:
    """``(x label, y label)`` of a map in ``crs``."""
    if crs == "projected":
        return "easting (m)", "northing (m)"
    return "longitude (degrees)", "latitude (degrees)"
