"""The one run writer: every run directory stgraph makes is written through :class:`RunWriter`.

A run directory (layout and file names: :class:`~stgraph.training.layout.RunFiles`) is made by training
(:func:`stgraph.training.run.train`), by an online update (:func:`stgraph.online.update.update_run`), and by
the federation (a client folder, the assembled global model, a client's local model and its blend). They all
write the same three things the same way, here:

* ``config.yaml``: the resolved :class:`~stgraph.config.RunConfig`;
* ``run.json``: :meth:`RunRecord.info` (model name, parameter count, sensor ids, channels, target channels,
  fingerprint, source file, then the caller's own keys: ``lineage``, ``federated``, ``members`` ...);
* checkpoints: :meth:`RunRecord.checkpoint` (weights, optimiser, scheduler, progress, RNG, scaler, then the
  run's config, fingerprint and covariate statistics), saved atomically by :meth:`RunWriter.save`.

The data/graph fingerprint of a run is :func:`fingerprint_of` (one function: a resume, ``Run.open`` and a
federated client compare it).

API (a federated client folder is a run directory too)::

    record = RunRecord.of(cfg, prepared)          # config + fingerprint (+ covariate statistics)
    writer = RunWriter(out, record)
    writer.start(record.info(model, prepared))    # a NEW run: staged beside ``out``, swapped into place
    writer.write_start(info)                      # or in place (a resumed run, a client folder that holds data/)
    writer.save(LAST, record.checkpoint(model.state_dict(), scaler=data.scaler.state_dict(), trainer={...}))
    writer.publish(info, {BEST: ck, LAST: ck})    # a finished run written at once (global model, blend)

:class:`~stgraph.training.trainer.Trainer` takes ``writer=`` (it writes checkpoints and ``metrics.csv``
through it) or ``record=`` alone (checkpoint dicts without writing, e.g. a client that saves them itself).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..data.fit import time_info
from ..errors import ForeignFileError, RunDirError
from ..files import atomic_write, record_written, wrap_os_error
from .checkpoint import save_checkpoint
from .layout import RunFiles
from .prepare import graph_fingerprint


def fingerprint_of(data, graph) -> dict:
    """``{"data": 16 hex digits, "graph": 16 hex digits}``: what a run was trained on
    (a :class:`~stgraph.data.ForecastData` and its PyG graph)."""
    return {"data": data.fingerprint(), "graph": graph_fingerprint(graph)}


def covariate_state(data) -> dict | None:
    """The covariate statistics a checkpoint keeps (``None`` for data without covariates)."""
    cov = getattr(data, "exogenous", None)
    return None if cov is None else cov.state_dict()


@dataclass(frozen=True)
class RunRecord:
    """What every file of one run says about it: its config, its data/graph fingerprint and the statistics
    its covariates were scaled with (``None``: no covariates).

    Attributes:
        config: the run's :class:`~stgraph.config.RunConfig` (its dict goes into every checkpoint).
        fingerprint: :func:`fingerprint_of` the run's data and graph.
        covariates: ``ForecastData.exogenous.state_dict()`` or ``None``.
    """

    config: RunConfig
    fingerprint: dict
    covariates: dict | None = None

    @classmethod
    def of(cls, cfg: RunConfig, prepared) -> "RunRecord":
        """The record of a run of ``cfg`` on ``prepared`` (:class:`~stgraph.training.prepare.Prepared`)."""
        return cls(cfg, fingerprint_of(prepared.data, prepared.graph), covariate_state(prepared.data))

    def info(self, model, prepared, *, source: str | None = None, **extra) -> dict:
        """``run.json``: the model's name and parameter count, the series' sensor ids and channels, the data's
        target channels, the series' time span and interval (:func:`stgraph.data.fit.time_info`: what new data
        are checked against, :func:`stgraph.data.fit.check_fits`), the fingerprint and the series file
        (``source``, default its absolute path), then
        ``extra`` in the order given (``lineage=``, ``federated=``, ``members=`` ...)."""
        from ..models.registry import count_parameters

        series, data = prepared.series, prepared.data
        return {"model": self.config.model.name, "parameters": count_parameters(model),
                "sensor_ids": list(series.sensor_ids), "channels": list(series.channels),
                "target_channels": list(data.target_channels), "time": time_info(series),
                "fingerprint": self.fingerprint,
                "source": os.path.abspath(str(series.source)) if source is None else source, **extra}

    def checkpoint(self, model: dict, *, scaler: dict, trainer: dict | None = None, optimizer: dict | None = None,
                   scheduler: dict | None = None, rng: dict | None = None) -> dict:
        """A checkpoint dict (plain data: loads with ``weights_only=True``) in the one key order:
        ``model``, ``optimizer``, ``scheduler``, ``trainer`` (progress), ``rng``, ``scaler``, ``config``,
        ``fingerprint``, ``covariates``; an argument left ``None`` is left out.

        ``model``: a state dict; ``scaler``: ``ForecastData.scaler.state_dict()``."""
        parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "trainer": trainer, "rng": rng,
                 "scaler": scaler, "config": self.config.to_dict(), "fingerprint": self.fingerprint,
                 "covariates": self.covariates}
        return {k: v for k, v in parts.items() if v is not None}


class RunWriter:
    """Writes the run directory ``root`` of the run :attr:`record`.

    Args:
        root: the run directory.
        record: the run's :class:`RunRecord`.
        force: replace or delete files in the way that stgraph cannot show it wrote (:func:`check_replace`).
    """

    def __init__(self, root: str | Path, record: RunRecord, *, force: bool = False) -> None:
        self.files = RunFiles(root)
        self.record = record
        self.force = force

    @property
    def root(self) -> Path:
        return self.files.root

    def write_start(self, info: dict, cfg: RunConfig | None = None) -> None:
        """Write ``config.yaml`` (``cfg``, default the record's) and ``run.json`` in place."""
        (cfg or self.record.config).to_yaml(self.files.config)
        atomic_write(self.files.info, json.dumps(info, indent=1))
        record_written([self.files.config, self.files.info])  # the mark: stgraph made a run here

    def save(self, name: str, state: dict) -> Path:
        """Save the checkpoint dict ``state`` (:meth:`RunRecord.checkpoint`) as ``checkpoints/<name>``, atomically."""
        return save_checkpoint(state, self.files.checkpoint(name))

    def start(self, info: dict) -> None:
        """Begin a new run: ``config.yaml`` and ``run.json`` are written into a new folder beside the root and
        renamed into place; an old run there is swapped out and deleted only then (never through a link).
        In a folder that holds no run (no ``config.yaml``) the files a run writes that are there already are
        removed first (results of a run whose config was deleted): a new run inherits none. Only what stgraph
        can show it wrote is replaced or removed (:func:`check_replace`)."""
        self._swap_in(lambda stage: stage.write_start(info))

    def publish(self, info: dict, checkpoints: dict[str, dict], cfg: RunConfig | None = None) -> None:
        """Write a finished run at once: ``checkpoints`` (name -> checkpoint dict), ``run.json`` and, last,
        ``config.yaml`` (``cfg``, default the record's), by the same swap as :meth:`start`."""
        def write(stage: "RunWriter") -> None:
            for name, state in checkpoints.items():
                stage.save(name, state)
            stage.write_start(info, cfg)

        self._swap_in(write)

    def _swap_in(self, write) -> None:
        out, files = self.root, self.files
        check_replace(out, self.force)
        if out.is_dir() and any(out.iterdir()) and not files.config.exists():
            # a folder stgraph did not make a run of, or a run whose config was deleted: write in place
            try:
                for p in files.written():
                    p.unlink()
            except OSError as e:
                raise wrap_os_error(e, out, "clear the run directory") from None
            write(self)
            return
        tag = f"{os.getpid()}-{int(time.time() * 1000)}"
        stage = out.parent / f".{out.name}.new-{tag}"
        stage.mkdir()
        try:
            write(RunWriter(stage, self.record))
            if out.exists():
                old = out.parent / f".{out.name}.old-{tag}"
                os.rename(out, old)
                os.rename(stage, out)
                shutil.rmtree(old)  # never follows links (and the run held none: check_no_links)
            else:
                os.rename(stage, out)
        except OSError as e:
            raise wrap_os_error(e, out, "create the run directory") from None
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)


def check_replace(out: str | Path, force: bool = False) -> None:
    """Refuse (:class:`~stgraph.errors.ForeignFileError`, naming them) to start a run in ``out`` over files stgraph
    cannot show it wrote, unless ``force``: in a folder holding a run (``config.yaml``), anything but the files of
    a run stgraph made (:meth:`~stgraph.training.layout.RunFiles.foreign`), which a new run would delete; in
    another folder, files with the names of run files (a new run would delete them; the folder's other files
    stay)."""
    out, files = Path(out), RunFiles(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"run directory '{out}' is a file; expected a folder (out=)")
    if force or not out.is_dir():
        return
    if files.config.exists():
        foreign = files.foreign()
        if not foreign:
            return
        names = ", ".join(f"'{p}'" for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        mine = files.made_by_stgraph()
        raise ForeignFileError(
            f"run directory '{out}' holds {names}, which stgraph did not write"
            + ("" if mine else f" (it is not a run stgraph made: {files.info.name} is not in its manifest)")
            + "; replacing the run would delete them. Move them out of the folder, choose another out, or pass "
              "force=True to delete them with the old run")
    named = [p for p in files.written() if p != files.config]
    if named and not files.made_by_stgraph():
        raise ForeignFileError(
            f"'{named[0]}' is in the way of a new run in '{out}' and stgraph did not write it (the folder holds no "
            f"run stgraph made); a new run would delete it. Move it, choose another out, or pass force=True to "
            f"delete it")


__all__ = ["RunRecord", "RunWriter", "fingerprint_of", "covariate_state", "check_replace"]
