"""What a run on disk was trained on (:class:`~stgraph.data.fit.TrainedOn`), for the one check of new data
against it (:func:`stgraph.data.fit.check_fits`) that ``predict``, ``evaluate``, ``drift`` and ``update`` make.

It is read from the run's ``run.json`` (its sensors, channels and the ``time`` entry: interval, first and
last timestamps). A run written before ``run.json`` recorded the time falls back on its training file; where
that is gone too, the interval and the time order cannot be checked and a warning says so.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..data.fit import TrainedOn
from ..errors import RunDirError, StgraphError, where
from ..files import read_json
from .layout import RunFiles

log = logging.getLogger(__name__)


def run_trained_on(run_dir: str | Path, cfg, info: dict | None = None) -> TrainedOn:
    """What the run in ``run_dir`` (config ``cfg``, ``run.json`` ``info`` when already read) was trained on."""
    from .prepare import load_series_and_graph

    run_dir = Path(run_dir)
    if info is None and RunFiles(run_dir).info.is_file():
        info = read_json(RunFiles(run_dir).info, what="run file", error=RunDirError)
    trained = None if info is None else TrainedOn.of_info(info, run_dir)
    if trained is not None and trained.known:
        return trained
    try:
        series = load_series_and_graph(cfg)[0]
    except (StgraphError, OSError) as e:
        if trained is None:
            raise RunDirError(f"the run in '{run_dir}' has no {RunFiles(run_dir).info.name} and its training file "
                              f"cannot be read ({e}); what it was trained on is unknown, so new data cannot be "
                              f"checked against it") from None
        log.warning(f"the run in '{run_dir}' records no time span (an older stgraph wrote it) and its training file "
                    f"{where(cfg.data.path or cfg.data.dataset)} cannot be read ({e}); the new data's interval and "
                    f"time order are not checked against it")
        return trained
    if trained is None:
        return TrainedOn.of_series(series, run_dir)
    return TrainedOn(trained.sensor_ids, trained.channels, series.interval if series.num_steps > 1 else None,
                     series.timestamps[-1], str(run_dir), trained.source or series.source)


__all__ = ["run_trained_on"]
