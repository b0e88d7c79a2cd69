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

The distance helpers live here too: :func:`haversine_km` (great-circle distances), :func:`pairwise_km`
(``[N, N]`` distances in either system) and :func:`distance_kernel` (distances -> weights).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError, GraphError, where

__all__ = ["EARTH_RADIUS_KM", "KERNELS", "parse_crs", "check_coordinates", "pairwise_km", "haversine_km",
           "distance_kernel", "axis_labels"]

#: Weight kernels understood by :func:`~stgraph.graph.distances.from_distances` and :func:`distance_kernel`.
KERNELS = ("gaussian", "inverse", "binary")

#: Mean Earth radius in kilometres (IUGG).
EARTH_RADIUS_KM = 6371.0088


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
    return haversine_km(a[:, None], b[:, None], a[None, :], b[None, :])


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (broadcasts).

    Args:
        lat1, lon1: first points, any broadcastable shapes.
        lat2, lon2: second points.

    Returns:
        float64 distances, the broadcast shape; Earth radius 6371.0088 km.
    """
    p1, l1, p2, l2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def distance_kernel(
    distance: Any,
    *,
    kernel: str = "gaussian",
    sigma: float | None = None,
) -> np.ndarray:
    """Weights from distances.

    * ``'gaussian'``: ``exp(-(d / sigma)^2)`` (DCRNN), ``sigma`` defaults to the
      population std of the finite distances given;
    * ``'inverse'``: ``1 / d`` (``d > 0`` required);
    * ``'binary'``: ``1`` for every finite distance.

    Args:
        distance: distances of any shape; ``inf`` means "no road" (weight 0).
        kernel: one of :data:`KERNELS`.
        sigma: Gaussian width, same unit as ``distance``.

    Returns:
        float64 array of the same shape.
    """
    d = np.asarray(distance, dtype=np.float64)
    finite = np.isfinite(d)
    if kernel == "gaussian":
        if sigma is None:
            sigma = float(d[finite].std()) if finite.any() else 0.0
        if not np.isfinite(sigma) or sigma <= 0:
            raise GraphError(
                f"gaussian kernel: sigma is {sigma}; expected a positive number. With "
                "sigma=None it is the std of the distances, which is 0 when they are all "
                "equal -- pass sigma= explicitly"
            )
        return np.where(finite, np.exp(-np.square(np.where(finite, d, 0.0) / sigma)), 0.0)
    if kernel == "inverse":
        if (finite & (d <= 0)).any():
            raise GraphError(
                "inverse kernel: found distances <= 0; expected d > 0 (weight 1/d). Drop "
                "zero-length pairs or use kernel='gaussian'"
            )
        with np.errstate(divide="ignore"):
            return np.where(finite, 1.0 / np.where(finite, d, 1.0), 0.0)
    if kernel == "binary":
        return finite.astype(np.float64)
    raise GraphError(f"kernel is {kernel!r}; expected one of {KERNELS}")


def axis_labels(crs: str | None) -> tuple[str, str]:
    """``(x label, y label)`` of a map in ``crs``."""
    if crs == "projected":
        return "easting (m)", "northing (m)"
    return "longitude (degrees)", "latitude (degrees)"
