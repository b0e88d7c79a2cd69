"""The facts ``stgraph serve`` and ``stgraph report`` show beside a forecast: the sensors (ids, coordinates,
degree, graph edges), the model (name, config, fingerprint, when trained, test MAE per horizon) and the drift
flags of ``stgraph drift``."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: the name DCRNN's data and ``stgraph data synth`` give the coordinates beside the graph file
LOCATIONS_NAME = "graph_sensor_locations.csv"


def sensor_positions(run, locations=None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lat [N], lon [N])`` of the run's sensors from ``locations`` (a CSV), the graph's node attributes, or
    ``graph_sensor_locations.csv`` beside the run's graph file; ``None`` when some sensor has no position."""
    from ..plot import _locations

    if locations is None:
        pos = _locations(run, None)
        if pos is not None:
            return pos[0], pos[1]
        graph = run.config.data.graph
        beside = None if not graph else Path(graph).with_name(LOCATIONS_NAME)
        if beside is None or not beside.is_file():
            return None
        locations = beside
        log.debug(f"sensor coordinates from {beside}")
    pos = _locations(run, str(locations))
    return None if pos is None else (pos[0], pos[1])


def check_tiles(tiles: str | None) -> str | None:
    """A map tile URL template (``https://tile.example.org/{z}/{x}/{y}.png``, or a ``data:`` URL): it must hold
    ``{z}``, ``{x}`` and ``{y}``. ``None``: no tiles (the page draws the sensors alone)."""
    from ..errors import ConfigError

    if tiles is None:
        return None
    if not tiles.startswith(("https://", "http://", "data:")) or not all(k in tiles for k in ("{z}", "{x}", "{y}")):
        raise ConfigError(f"tiles = {tiles!r}: expected a URL template starting with https:// (or http://, data:) "
                          f"holding {{z}}, {{x}} and {{y}}, e.g. https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png")
    return tiles


def sensor_table(run, locations=None) -> dict:
    """``{"sensors": [{"id", "lat", "lon", "in_degree", "out_degree"}], "edges": [[i, j], ...]}``: ``edges`` are
    the graph's ``edge_index [2, E]`` columns (source, target positions in the list), self loops left out."""
    ei = run.graph.edge_index.cpu().numpy()
    keep = ei[0] != ei[1]
    ei = ei[:, keep]
    n = len(run.series.sensor_ids)
    out_deg, in_deg = np.bincount(ei[0], minlength=n), np.bincount(ei[1], minlength=n)
    pos = sensor_positions(run, locations)
    rows = []
    for i, s in enumerate(run.series.sensor_ids):
        lat = lon = None
        if pos is not None:
            lat, lon = float(pos[0][i]), float(pos[1][i])
        rows.append({"id": str(s), "lat": lat, "lon": lon, "in_degree": int(in_deg[i]), "out_degree": int(out_deg[i])})
    return {"sensors": rows, "edges": ei.T.tolist()}


def model_facts(run) -> dict:
    """``{"model", "parameters", "config", "fingerprint", "trained_at", "input_len", "horizon", "interval",
    "probabilistic", "test_mae": {step: MAE}}``; the test MAE from ``evaluation_test.json`` when the run has one,
    else computed now (every horizon step, not recorded)."""
    from ..io.series import format_interval, infer_interval
    from ..models.registry import count_parameters

    files = run.files
    info = _json(files.info) if files is not None else {}
    trained_at = None
    if files is not None and files.best.is_file():
        trained_at = datetime.fromtimestamp(files.best.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {"model": run.config.model.name, "parameters": count_parameters(run.model),
            "config": run.config.to_dict(), "fingerprint": info.get("fingerprint"), "trained_at": trained_at,
            "input_len": run.data.input_len, "horizon": run.data.horizon,
            "interval": format_interval(infer_interval(run.series.timestamps)),
            "probabilistic": bool(run.config.model.probabilistic), "test_mae": test_mae(run)}


def test_mae(run) -> dict:
    """``{"1": MAE, ..., str(horizon): MAE}`` of the test split in data units (from ``evaluation_test.json``
    when it has every step, else computed)."""
    files = run.files
    saved = _json(files.evaluation("test")) if files is not None else {}
    steps = [str(h) for h in range(1, run.data.horizon + 1)]
    if all(h in saved.get("horizons", {}) for h in steps):
        return {h: saved["horizons"][h]["mae"] for h in steps}
    result = run.evaluate("test", horizons=list(range(1, run.data.horizon + 1)))
    return {h: result["horizons"][h]["mae"] for h in steps}


def drift_flags(run) -> list[str]:
    """Sensor ids ``stgraph drift`` flagged (``RUN_DIR/drift/drift.csv``), ``[]`` when the run has none."""
    import csv

    from ..cells import read_cell

    path = None if run.files is None else run.files.drift / "drift.csv"
    if path is None or not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [read_cell(r["sensor_id"]) for r in rows if r.get("flagged") == "1"]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
