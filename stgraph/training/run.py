"""Train a run into its directory, and :class:`Run`, the handle of a run that ``evaluate``,
``predict``, ``plot`` and ``bench`` take.

The file names in a run directory come from :class:`~stgraph.training.layout.RunFiles` alone (see
:mod:`stgraph.training.layout` for the layout); its files are written by the one run writer
(:mod:`stgraph.training.writer`); what a run is built from (series, graph, windowed data, model) comes
from :mod:`stgraph.training.prepare`, what may resume or replace it from :mod:`stgraph.training.resume`.
A run's model forecasts through a :class:`~stgraph.training.forecaster.Forecaster`, which a
:class:`~stgraph.training.trainer.Trainer` fits. Messages go to ``logging.getLogger(__name__)``.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path


from ..config import RunConfig, config_from_dict, load_run_config, with_fields
from ..data.fit import TrainedOn, check_fits
from ..errors import ConfigError, RunDirError
from ..files import atomic_write, check_no_links, run_lock
from ..io.series import null_convention
from ..models.registry import count_parameters, get_model_class
from ..runtime import configure_process, resolve_device
from . import distributed
from .checkpoint import load_checkpoint
from .checks import check_windows, choose_defaults, count_windows, peak_memory, report_gates
from .fit_check import run_trained_on
from .forecaster import Forecaster
from .layout import BEST, RunFiles
from .memory import check_training_memory, preflight
from .prepare import (Prepared, empty_graph, graph_fingerprint, load_series_and_graph, make_model, model_sizes,
                      prepare, target_positions)
from .resume import absolute_paths, check_config_matches, check_run_dir, fingerprint_diff, resume_config
from .trainer import Trainer, seed_everything
from .writer import RunRecord, RunWriter, check_replace, fingerprint_of

log = logging.getLogger(__name__)


def train(cfg: RunConfig, out: str | Path | None, *, resume: bool = False, overwrite: bool = False,
          force: bool = False, given=None, snapshot_marks=None) -> "Run":
    """Train ``cfg`` into run directory ``out`` (``None``: keep nothing on disk); returns the finished :class:`Run`,
    holding the weights of its best validation epoch (those :meth:`Run.open` loads from ``best.pt``; without ``out``
    a copy kept in memory), not its last epoch's.

    Everything is checked (config, files, model) before the run directory changes: a failed start
    leaves it as it was. ``overwrite`` replaces an old run by renaming a new folder into place; files there that
    stgraph cannot show it wrote are an error naming them (:func:`~stgraph.training.writer.check_replace`)
    unless ``force``.
    ``resume`` continues the run in ``out``; ``given`` names the settings the caller set (``None``:
    all of ``cfg``): those that differ from the run must be ones a resume may change
    (:data:`~stgraph.training.resume.MAY_CHANGE_ON_RESUME`), and the data and graph must have the run's
    fingerprints. The run directory is locked (:func:`stgraph.files.run_lock`) while this runs.
    ``snapshot_marks`` (CPU minutes) keep copies of ``best.pt`` as it was at each
    (:mod:`stgraph.training.budget`).

    Under ``torchrun`` every process calls this; they join the process group
    (:func:`stgraph.training.distributed.session`) and train data parallel. Rank 0 alone checks,
    locks and writes the run directory and logs; the others only read it (``resume``).
    """
    cfg.validate()
    if resume and overwrite:
        raise ConfigError("resume=True and overwrite=True contradict each other; pass one")
    with distributed.session(cfg.train.device) as dist:
        if not dist.is_main:  # rank 0 speaks for all: the others log nothing and warn nothing
            logging.getLogger("stgraph").setLevel(logging.CRITICAL)
            warnings.simplefilter("ignore")
        if out is None:
            return _train(cfg, None, resume=False, fresh=False, snapshot_marks=snapshot_marks)
        out = Path(out)
        with run_lock(out) if dist.is_main else nullcontext():
            if dist.is_main:
                check_no_links(out)
            if resume:
                cfg = resume_config(out, cfg, given)
            elif dist.is_main:
                check_run_dir(out, cfg, overwrite)
                check_replace(out, force)
            return _train(absolute_paths(cfg), out, resume=resume, fresh=not resume, snapshot_marks=snapshot_marks,
                          force=force)


def _train(cfg: RunConfig, out: Path | None, *, resume: bool, fresh: bool, snapshot_marks=None,
           force: bool = False) -> "Run":
    get_model_class(cfg.model.name)  # an unknown model fails before any file is read
    seed_everything(cfg.train.seed)
    prep = prepare(cfg)
    s = prep.series
    log.info(f"{s.source}: {null_convention(s.zero_ratio, s.null_value, s.null_origin)}")
    windows = count_windows(prep.data)
    if fresh or out is None:
        cfg = choose_defaults(cfg, prep.data)
    dist = distributed.current()
    sizes = dict(batch_size=dist.per_rank_batch(cfg.train.batch_size), num_edges=int(prep.graph.edge_index.size(1)),
                 device=resolve_device(distributed.device_for(cfg.train.device)))
    shell = preflight(cfg, prep.data, **sizes)  # from the config, before anything is built (the meta device)
    seed_everything(cfg.train.seed)
    model = make_model(cfg, prep.data)
    if any(p.requires_grad for p in model.parameters()):  # closed-form models neither batch nor stop early
        check_windows(cfg, windows)
    if shell is None:  # a model that cannot be built on the meta device: checked now
        check_training_memory(model, enabled=cfg.train.memory_check, **sizes)
    elif getattr(shell, "recompute", False):  # the preflight fitted the run by recomputing blocks
        model.recompute = True
    record = RunRecord.of(cfg, prep)
    writes = out is not None and dist.is_main
    writer = None if out is None else RunWriter(out, record, force=force)
    if out is not None:
        if resume:
            ck = load_checkpoint(RunFiles(out).last)
            if ck.get("fingerprint") and ck["fingerprint"] != record.fingerprint:
                raise RunDirError(f"cannot resume '{out}': {fingerprint_diff(ck['fingerprint'], record.fingerprint, cfg)} "
                                  f"differ from what the run started with; pass the original files, or start a new "
                                  f"run (another out, or overwrite=True)")
        info = record.info(model, prep)
        if fresh and writes:
            writer.start(info)
        elif writes:
            writer.write_start(info)
    forecaster = Forecaster(model, prep.data, prep.graph, cfg.train, cfg.model.distribution, cfg.data.nonnegative)
    configure_process(forecaster.device, cfg.train.threads)
    trainer = Trainer(forecaster, cfg.train, writer=writer, record=record, snapshot_marks=snapshot_marks,
                      keep_best=out is None)
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if trainer.restore_best():  # the run answers with its best validation epoch, as when it is reopened
        log.debug(f"weights of the best validation epoch ({trainer.state['best_epoch']}) restored")
    if prep.data.exogenous is not None:
        report_gates(forecaster, out if writes else None)
    if writes:
        atomic_write(RunFiles(out).summary, json.dumps(_summary(cfg, prep, trainer, resume, time.perf_counter() - t0),
                                                       indent=1))
    return Run(cfg, prep, forecaster, None if out is None else RunFiles(out), trainer.state)


def _summary(cfg: RunConfig, prep: Prepared, trainer: Trainer, resume: bool, seconds: float) -> dict:
    """``train_summary.json``: how the training went."""
    state = trainer.state
    return {"model": cfg.model.name, "parameters": count_parameters(trainer.model),
            "epochs": state["epoch"], "best_epoch": state["best_epoch"],
            "best_val_mae": state["best_val"] if math.isfinite(state["best_val"]) else None,
            "train_windows": int(prep.data.split_starts("train").numel()),
            "train_seconds": round(seconds, 3), "resumed": bool(resume),
            # CPU time of the training steps and validation passes, all sessions of the run together
            "cpu_seconds": round(state["cpu_seconds"], 3), "steps": state["steps"],
            "budget_minutes": cfg.train.budget_minutes, "budget_stopped": state["budget_stopped"],
            **({"snapshots": state["snapshots"]} if state["snapshots"] else {}),
            "device": str(trainer.device), "processes": trainer.dist.world, **peak_memory(trainer.device)}


def _model_class_for(cfg: RunConfig, model: str | None, run_dir: Path):
    """The model class of a run: a registry name from the run, or an import path from the caller only."""
    from ..models.registry import available_models

    name = cfg.model.name
    if name.lower() in available_models():
        if model is not None and model.lower() != name.lower():
            raise ConfigError(f"model = {model!r}: the run in '{run_dir}' was trained with model '{name}'")
        return get_model_class(name)
    if model is None:
        raise RunDirError(f"the run in '{run_dir}' uses the user model '{name}', which is imported by path; stgraph "
                          f"never imports a module named in a run file. Pass model={name!r} to import it")
    if model != name:
        raise ConfigError(f"model = {model!r}: the run in '{run_dir}' was trained with model '{name}'; pass that")
    return get_model_class(model)


def _check_fingerprints(cfg: RunConfig, prep: Prepared, stored: dict, run_dir: Path, data_path) -> None:
    """The data (unless read from another file, ``data_path``) and the graph must be what the run was trained on."""
    now = fingerprint_of(prep.data, prep.graph)
    if data_path is None and stored.get("data") not in (None, now["data"]):
        raise RunDirError(f"the data file {cfg.data.path or cfg.data.dataset} changed since '{run_dir}' was "
                          f"trained (fingerprint {now['data']}, the run's {stored.get('data')}); "
                          f"retrain, or pass the original file")
    if stored.get("graph") not in (None, now["graph"]):
        raise RunDirError(f"the graph {cfg.data.graph or cfg.data.dataset or '(none)'} changed since '{run_dir}' "
                          f"was trained (fingerprint {now['graph']}, the run's {stored.get('graph')}); its metrics "
                          f"would not belong to the run. Restore the original graph file, or retrain")


class Run:
    """A run: its config, prepared data and graph (:class:`~stgraph.training.prepare.Prepared`), its
    :class:`~stgraph.training.forecaster.Forecaster` (model, graph, data, device), and its files
    (``None`` for a run kept off disk).

    :func:`train` returns the run it trained; :meth:`open` reads a finished one back from its
    directory. ``stgraph evaluate``, ``predict``, ``plot`` and ``bench`` take a ``Run``.

    Attributes:
        config: the :class:`~stgraph.config.RunConfig`.
        prepared: series, nx graph, PyG graph and :class:`~stgraph.data.ForecastData`.
        forecaster: predicts and evaluates in data units.
        files: :class:`~stgraph.training.layout.RunFiles` of the run directory, or ``None``.
        progress: the training state of the run (epoch, best epoch, best validation MAE, finished, early
            stopped, CPU seconds): of the run's ``last.pt`` for an opened run, the trainer's for a run just
            trained. ``state`` is the same dict.
        model, data, series, graph: the forecaster's model, the windowed data (scaler from the checkpoint for
            an opened run), the series, and the PyG graph on the forecaster's device (``edge_index [2, E]``,
            ``edge_weight [E]``).
    """

    def __init__(self, config: RunConfig, prepared: Prepared, forecaster: Forecaster, files: RunFiles | None = None,
                 progress: dict | None = None) -> None:
        self.config = config
        self.prepared = prepared
        self.forecaster = forecaster
        self.files = files
        self.progress = self.state = dict(progress or {})
        self.model, self.graph = forecaster.model, forecaster.graph
        self.data, self.series = prepared.data, prepared.series
        #: the file the run was opened on instead of its own data (:meth:`open`'s ``data_path``), else ``None``
        self.data_path: str | None = None
        self._trained_on: TrainedOn | None = None

    @property
    def trained_on(self) -> TrainedOn:
        """What the run was trained on (:class:`~stgraph.data.fit.TrainedOn`), which new data must fit
        (:func:`stgraph.data.fit.check_fits`)."""
        if self._trained_on is None:
            self._trained_on = TrainedOn.of_series(self.series, None if self.files is None else self.files.root)
        return self._trained_on

    def evaluate(self, split: str = "test", horizons=None) -> dict:
        """Masked metrics of the split (see :meth:`stgraph.training.forecaster.Forecaster.evaluate`)."""
        return self.forecaster.evaluate(split, horizons=horizons)

    def predictions(self, split: str = "test", batch_size: int | None = None):
        """``(forecast, y, starts)`` per batch in data units (see
        :meth:`~stgraph.training.forecaster.Forecaster.predictions`)."""
        return self.forecaster.predictions(split, batch_size)

    def notice(self) -> str | None:
        """A run that did not finish (interrupted, or still training) or that early stopping ended, in words."""
        p = self.progress or {}
        if not p or not self.forecaster.trainable or self.files is None:
            return None
        epochs, run_dir = self.config.train.epochs, self.files.root
        best = p.get("best_epoch")
        if not p.get("finished"):
            return (f"the run in '{run_dir}' did not finish: {p.get('epoch', 0)} of {epochs} epoch(s) done (it was "
                    f"interrupted or is still training); these are the weights of epoch {best}, the best so far. "
                    f"Continue it with resume=True (train into '{run_dir}' again)")
        if p.get("early_stopped"):
            return (f"early stopping ended the run at epoch {p.get('epoch')} of {epochs} (validation MAE did not "
                    f"improve for train.patience = {self.config.train.patience} epochs); these are the weights of "
                    f"epoch {best}")
        return None

    def null_convention(self) -> str:
        """The series' null convention in words (:func:`stgraph.io.series.null_convention`)."""
        s = self.series
        return null_convention(s.zero_ratio, s.null_value, s.null_origin)

    def write_evaluation(self, result: dict, split: str) -> Path | None:
        """Write ``result`` (the evaluation of ``split``) into the run directory, atomically; in a read-only run
        directory the result is not recorded (a warning says so) and ``None`` is returned."""
        path = self._files().evaluation(split)
        try:
            return self._write(path, result)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            log.warning(f"{path} not written: the run directory is read-only ({e.strerror}); the evaluation is "
                        f"reported, not recorded")
            return None

    def write_bench_evaluation(self, result: dict, minutes: float | None = None) -> Path:
        """Write the bench's test figures at every horizon step into the run directory, atomically (with
        ``minutes``: those of the snapshot ``best@<minutes>m.pt``)."""
        files = self._files()
        return self._write(files.bench_evaluation if minutes is None else files.bench_evaluation_at(minutes), result)

    def _files(self) -> RunFiles:
        if self.files is None:
            raise RunDirError("this run was trained without a run directory (out=None); there is nowhere to write")
        return self.files

    @staticmethod
    def _write(path: Path, result: dict) -> Path:
        return atomic_write(path, json.dumps(result, indent=1))

    @classmethod
    def open(cls, run_dir: str | Path, *, data_path: str | None = None, checkpoint: str = BEST,
             device: str | None = None, model: str | None = None, amp: str | None = None) -> "Run":
        """Read a finished run back (data re-read from the config, weights from ``checkpoint``); builds no
        optimiser.

        With ``data_path`` the series comes from another file, which must fit the run (its interval, sensors
        and channels: :func:`stgraph.data.fit.check_fits`); the scaler stays the one fitted at training
        time. ``model`` is the
        import path of a user model (``pkg.mod:Class``): the run's own files never choose a module
        to import. ``amp`` (``'off'``, ``'bf16'``, ``'auto'``) replaces the run's ``train.amp`` for
        its predictions and evaluation. config.yaml must agree with the checkpoint, and the data (unless
        ``data_path``) and graph must have the fingerprints the run was trained on.

        Raises:
            RunDirError: not a run directory, a damaged or edited one, or changed data / graph files.
            SeriesError: ``data_path`` does not fit the run.
        """
        run_dir = Path(run_dir)
        files = RunFiles(run_dir)
        if not files.config.is_file():
            raise RunDirError(f"'{run_dir}' is not a run directory (no {files.config.name}); train a run into it "
                              f"first")
        check_no_links(run_dir)
        cfg = load_run_config(files.config)
        ckpt_path = files.checkpoint(checkpoint)
        if not ckpt_path.is_file():
            ckpt_path = files.last
        ckpt = load_checkpoint(ckpt_path)
        check_config_matches(cfg, ckpt, files.config, ckpt_path)
        _model_class_for(cfg, model, run_dir)
        if device:
            cfg = with_fields(cfg, {"train.device": device})
        if amp is not None:
            cfg = with_fields(cfg, {"train.amp": amp}).validate()
        trained = None if data_path is None else run_trained_on(run_dir, cfg)
        prep = prepare(cfg, data_path, ckpt.get("covariates"), fits=None if trained is None else
                       lambda series: check_fits(series, trained))
        _check_fingerprints(cfg, prep, ckpt.get("fingerprint") or {}, run_dir, data_path)
        if ckpt.get("scaler"):
            prep.data.set_scaler_state(ckpt["scaler"])
        net = make_model(cfg, prep.data)
        net.load_state_dict(ckpt["model"])
        last = files.last
        progress = (ckpt if ckpt_path == last or not last.is_file()
                    else load_checkpoint(last, map_location="cpu")).get("trainer") or {}
        forecaster = Forecaster(net, prep.data, prep.graph, cfg.train, cfg.model.distribution, cfg.data.nonnegative)
        configure_process(forecaster.device, cfg.train.threads)
        run = cls(cfg, prep, forecaster, files, progress)
        run.data_path, run._trained_on = data_path, trained
        return run


def load_run(run_dir: str | Path, **kwargs) -> Run:
    """:meth:`Run.open` (same arguments)."""
    return Run.open(run_dir, **kwargs)


def config_from_run(run_dir: str | Path) -> RunConfig:
    """The config of the run in ``run_dir`` (its ``config.yaml``, read strictly)."""
    return load_run_config(RunFiles(run_dir).config)


__all__ = ["Run", "Prepared", "prepare", "train", "load_run", "make_model", "model_sizes", "RunDirError",
           "config_from_dict", "config_from_run", "graph_fingerprint", "empty_graph", "load_series_and_graph",
           "target_positions", "choose_defaults"]
