"""The public Python API: train a model into a run directory, open a trained run, update a run on new data.

::

    import stgraph

    run = stgraph.train(data="syn/synthetic.h5", graph="syn/adj_mx.pkl", model="stgt", out="runs/stgt", epochs=5)
    run = stgraph.open_run("runs/stgt")              # later, in another process
    stgraph.evaluate(run, "test")["average"]["mae"]
    summary = stgraph.update("runs/stgt", data="new/synthetic.h5", out="runs/stgt-1")

These are thin functions over the library (:func:`stgraph.training.run.train`,
:meth:`stgraph.training.run.Run.open`, :func:`stgraph.online.update.update_run`), exposed lazily as
``stgraph.train``, ``stgraph.open_run``, ``stgraph.evaluate`` and ``stgraph.update``; the ``stgraph``
command calls them (its flags are these keyword arguments). They log through
``logging.getLogger("stgraph")`` and print nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .arguments import TRAIN_FIELDS, given_fields, run_config

log = logging.getLogger(__name__)


def train(data: str | Path | None = None, graph: str | Path | None = None, *, model: str | None = None,
          out: str | Path | None = None, epochs: int | None = None, config=None,
          overrides: Mapping[str, Any] | Iterable[str] | None = None, resume: bool = False, overwrite: bool = False,
          force: bool = False,
          **fields) -> "Run":  # noqa: F821 - stgraph.training.run.Run
    """Train a model on a series and its road graph into the run directory ``out``; returns the finished run.

    Args:
        data: series file (HDF5, .npz, CSV), values ``[T, N, C]``.
        graph: road graph file (adj pickle, distance CSV, node-link JSON, GraphML).
        model: registry name or ``package.module:Class`` (default ``stgt``).
        out: run directory (``None``: keep nothing on disk).
        epochs: training epochs (default: the model's shipped config).
        config: YAML file, shipped set-up name or :class:`~stgraph.config.RunConfig` (:func:`run_config`).
        overrides: more config fields (:func:`run_config`).
        resume: continue the interrupted run in ``out``: the fields you set here must be ones a resume may
            change, and the data and graph must be the run's.
        overwrite: replace a different run already in ``out``.
        force: also delete files in ``out`` that stgraph did not write (without it they are an error naming them).
        **fields: the other keyword arguments of :data:`TRAIN_FIELDS`: ``dataset``, ``covariates``,
            ``null_value``, ``probabilistic``, ``distribution``, ``budget`` (CPU minutes), ``batch_size``,
            ``lr``, ``seed``, ``device``, ``progress``.

    Returns:
        the :class:`~stgraph.training.run.Run` with the weights of its best validation epoch (what
        :func:`open_run` loads later, so both give the same numbers): ``run.evaluate("test")``, ``run.model``,
        ``run.data``, ``run.state`` (epoch, best epoch, best validation MAE, ...).

    Raises:
        ConfigError, RunDirError, MissingFileError: bad settings, a run directory holding another run, or a
            missing file, before anything in ``out`` changes.
    """
    from .training.run import train as train_run

    fields.update(data=data, graph=graph, epochs=epochs)
    cfg = run_config(model=model, config=config, overrides=overrides, **fields)
    given = given_fields(model, config, overrides, fields) if resume else None
    return train_run(cfg, out, resume=resume, overwrite=overwrite, force=force, given=given)


def open_run(run_dir: str | Path, *, model: str | None = None, checkpoint: str = "best.pt",
             data: str | Path | None = None, device: str | None = None, amp: str | None = None) -> "Run":  # noqa: F821
    """Open a trained run from its directory (config, data and graph re-read and checked, weights loaded).

    Args:
        run_dir: the run directory :func:`train` wrote.
        model: import path of the run's user model (``package.module:Class``); a run never chooses a module
            to import by itself.
        checkpoint: ``"best.pt"`` (the best validation epoch) or ``"last.pt"``.
        data: read the series from this file instead of the training file; it must fit the run (the run's
            interval, sensors and channels, :func:`stgraph.data.fit.check_fits`); the run's scaler.
        device: ``"cpu"``, ``"cuda"``, ... (default the run's ``train.device``).
        amp: ``"off"``, ``"bf16"`` or ``"auto"`` for its predictions (default the run's ``train.amp``).

    Returns:
        the :class:`~stgraph.training.run.Run`: ``run.evaluate(split)``, ``run.predictions(split)``, and
        :func:`stgraph.forecast.forecast_at` ``(run, at)`` for a forecast from a timestamp.

    Raises:
        RunDirError: not a run directory, a damaged one, or data / graph files changed since training.
        SeriesError: ``data`` does not fit the run.
    """
    from .training.run import Run

    return Run.open(run_dir, data_path=None if data is None else str(data), checkpoint=checkpoint, device=device,
                    model=model, amp=amp)


def evaluate(run, split: str = "test", *, steps=None, write: bool = True, by: str | None = None,
             regimes=None, calibration: bool = False) -> dict:
    """The masked metrics of a trained run on one split, as ``stgraph evaluate`` reports and records them.

    Args:
        run: a :class:`~stgraph.training.run.Run` (:func:`open_run`, :func:`train`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        steps: horizon steps to report (``[1, 2, 4]`` or ``"1,2,4"``); default :func:`stgraph.metrics.default_steps`:
            every step up to a horizon of 4, else the first, middle and last and 3, 6, 12 where they exist
            (3, 6, 12 = 15, 30, 60 minutes for 12-step 5-minute data).
        write: record the result as ``evaluation_<split>.json`` in the run directory (a run kept on disk, opened
            on its own data: figures on another file, ``open_run(data=)``, are not the run's and are not recorded).
        by: also the figures by group (:mod:`stgraph.regimes`): ``"regime"`` (free flow / congested /
            transition), ``"sensor"`` or ``"hour"``, under ``result["by"]``, per group and step: share, MAE,
            RMSE (and coverage90, CRPS for a probabilistic run).
        regimes: a :class:`stgraph.regimes.RegimeConfig` (thresholds; default its documented defaults).
        calibration: also the PIT histogram and the reliability diagram's observed coverage at 10% .. 90% of a
            probabilistic run, under ``result["calibration"]`` (:func:`stgraph.calibration.evaluate_calibration`);
            with ``by``, also per group under ``result["calibration"]["by"]``.

    Returns:
        ``{"horizons": {"3": {"mae": ..., "rmse": ..., "mape": ...}, ...}, "average": {...}, "split": ...,
        "null_convention": ...}`` in data units (a probabilistic run adds ``coverage90`` and ``crps``; a run that
        did not finish adds ``notice``; ``by`` adds ``"by"``, :func:`stgraph.regimes.evaluate_groups`); ``windows``:
        the split's window count, and ``windows_note`` (also logged) when they are few
        (:func:`stgraph.training.checks.split_windows`).
    """
    from .metrics import parse_steps

    if steps and not isinstance(steps, str):
        steps = ",".join(str(s) for s in steps)
    if by is not None:
        from .regimes import check_by
        check_by(by, run.data)  # before the pass over the split
    result = run.evaluate(split, horizons=parse_steps(steps, run.data.horizon) if steps else None)
    result["split"] = split
    from .training.checks import split_windows
    result["windows"], few = split_windows(run.data, split)
    if few:
        result["windows_note"] = few
        log.warning(few)
    if by is not None:
        from .regimes import evaluate_groups
        hs = [int(h) for h in result["horizons"]]
        result["by"] = evaluate_groups(run.predictions(split), run.data, by, hs, regimes)
    if calibration:
        from .calibration import evaluate_calibration
        groups = None
        if by is not None:
            from .regimes import grouper
            groups = grouper(by, run.data, regimes)
        result["calibration"] = evaluate_calibration(run.predictions(split), run.data.null_value, groups)
    notice = run.notice()
    if notice:
        result["notice"] = notice
    result["null_convention"] = run.null_convention()
    if write and run.files is not None and getattr(run, "data_path", None) is None:
        run.write_evaluation(result, split)
    return result


def update(run_dir: str | Path, data: str | Path, *, out: str | Path | None = None, graph: str | Path | None = None,
           weeks: float = 2.0, lr_scale: float = 0.1, epochs: int = 3, replay: float = 0.25, seed: int | None = None,
           progress: bool = True) -> dict:
    """Continue a trained run on new data into a new run directory (:mod:`stgraph.online.update`).

    Args:
        run_dir: a finished run.
        data: the new series file (the run's channels; sensors matched by id, new ones get fresh embeddings).
        out: the new run directory (default ``RUN_DIR-updateK``, the first free ``K``).
        graph: the road graph of the new file's sensors (default the run's).
        weeks: train on the newest ``weeks`` weeks of the new training split (0: all of it).
        lr_scale: learning rate = the run's ``train.lr`` times this.
        epochs: passes over the new windows.
        replay: share of each batch replayed from the run's own training windows, against forgetting (0: none).
        seed: the update's seed (default the run's).
        progress: show the tqdm progress bar.

    Returns:
        the summary written to ``out/update.json`` (windows, replay share, epochs, lr, seconds, best validation
        MAE, sensors added and dropped); open the new run with :func:`open_run`.

    Raises:
        RunDirError / ConfigError: not a run, ``out`` exists, other channels, a weight that cannot be carried over.
    """
    from .online.update import update_run

    _, summary = update_run(run_dir, data, out, graph=None if graph is None else str(graph), weeks=weeks,
                            lr_scale=lr_scale, epochs=epochs, replay=replay, seed=seed, progress=progress)
    return summary


__all__ = ["TRAIN_FIELDS", "evaluate", "open_run", "run_config", "train", "update"]
