"""``stgraph report RUN_DIR --out report.html``: the page of ``stgraph serve`` as one self-contained HTML file
for sharing (styles, script and data inside; it opens offline, from disk or a mail attachment).

It shows the same views as the live page, from the run's own series: the sensor map coloured by the forecast
from the series' last step at a chosen horizon (or its change from the last reading), each sensor's history,
forecast and 90% band, the sensors the spatial attention weighed most for it (models with attention), drift
flags; and, from one pass over the test split, the test MAE per horizon step, the MAE by time of day and the
worst sensors ringed on the map (a colour mode shows every sensor's test MAE).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("serve") / "static"
#: sensors ringed as the worst on the map and listed
WORST = 10
#: sensors listed as weighed most by attention, per sensor
TOP = 5


def report_data(run, locations=None, tiles: str | None = None) -> dict:
    """What the page reads from the server, under the same keys (``sensors``, ``model``, ``forecast/latest``),
    plus ``attention`` (sensor id -> its ``TOP`` most weighed other sensors) and ``report`` (``per_sensor`` test
    MAE ``[N]``, ``worst`` ids, ``tod``: ``{"labels", "mae"}`` of the last horizon step by time of day)."""
    from .explain import attention_maps, spatial_into
    from .plot import _collect
    from .serve.engine import Engine
    from .serve.facts import drift_flags

    engine = Engine(run, locations=locations, tiles=tiles)
    sensors = engine.sensors()
    flagged = set(drift_flags(run))
    for row in sensors["sensors"]:
        row["drift"] = row["id"] in flagged
    latest = engine.latest()
    x, cov, _ = run.data.window_at(run.series, None)
    att = attention_maps(run, x, cov)
    attention = {}
    if att is not None and att.get("spatial") is not None:
        for n, sid in enumerate(engine.ids):
            attention[sid] = [r for r in spatial_into(run, att, n) if r["sensor"] != sid][:TOP]
    per_sensor, by_tod, _ = _collect(run, None)
    bins = len(by_tod)
    labels = [f"{int(24 * 60 * b / bins) // 60:02d}:{int(24 * 60 * b / bins) % 60:02d}" for b in range(bins)]
    finite = np.flatnonzero(np.isfinite(per_sensor))
    worst = [engine.ids[i] for i in finite[np.argsort(-per_sensor[finite])][:WORST]]
    return {"sensors": sensors, "model": engine.model(), "forecast/latest": latest, "attention": attention,
            "report": {"per_sensor": _nulls(per_sensor), "worst": worst, "tod": {"labels": labels,
                                                                                  "mae": _nulls(by_tod)}}}


def render(data: dict) -> str:
    """The page (``stgraph/serve/static``) with its stylesheet, its script and ``data`` inlined."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "page.css").read_text(encoding="utf-8")
    js = (STATIC / "page.js").read_text(encoding="utf-8")
    from .serve.engine import plain

    blob = json.dumps(data, separators=(",", ":"), allow_nan=False, default=plain).replace("</", "<\\/")
    for tag in ('<link rel="stylesheet" href="static/page.css">', '<script src="static/page.js"></script>'):
        if tag not in page:
            raise RuntimeError(f"{STATIC / 'index.html'} lacks {tag}; the report cannot inline it")
    page = page.replace('<link rel="stylesheet" href="static/page.css">', f"<style>\n{css}</style>")
    page = page.replace("<title>stgraph forecast</title>", "<title>stgraph report</title>")
    return page.replace('<script src="static/page.js"></script>',
                        f"<script>window.STGRAPH_DATA = {blob};</script>\n<script>\n{js}</script>")


def write_report(run_dir, out, *, locations=None, model: str | None = None, force: bool = False,
                 tiles: str | None = None) -> Path:
    """Write the report of ``run_dir`` (a run directory or an opened run) to ``out`` (``.html``), atomically; a
    file already there is replaced only if stgraph wrote it (or with ``force``). ``tiles``: a map tile URL
    template (the report then loads tiles from it when opened). Returns the path."""
    from .files import atomic_write, check_replaceable, record_written

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"out='{out}': expected an .html file (suffix {out.suffix or 'none'!r})")
    if out.is_dir():
        raise ConfigError(f"out='{out}' is a folder; expected an .html file name")
    check_replaceable([out], force=force)
    from .serve.facts import check_tiles
    check_tiles(tiles)
    if hasattr(run_dir, "forecaster"):
        run = run_dir
    else:
        from .api import open_run
        run = open_run(run_dir, model=model)
    html = render(report_data(run, locations, tiles))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, html)
    record_written([out])
    log.debug(f"wrote {out} ({len(html) / 1e6:.1f} MB)")
    return out


def _nulls(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
