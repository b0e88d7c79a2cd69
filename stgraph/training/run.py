"""Train a run into its directory, and :class:`Run`, the handle of a run that ``evaluate``,
``predict``, ``plot`` and ``bench`` take.

The file names in a run directory come from :class:`~stgraph.training.layout.RunFiles` alone (see
:mod:`stgraph.training.layout` for the layout); what a run is built from (series, graph, windowed
data, model) from :mod:`stgraph.training.prepare`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ..config import RunConfig, config_from_dict, load_run_config, with_fields
from ..errors import ConfigError, RunDirError
from ..files import atomic_write, check_no_links, run_lock, wrap_os_error
from ..io.series import null_convention
from ..models.registry import count_parameters, get_model_class
from ..runtime import resolve_device
from . import distributed
from .checkpoint import load_checkpoint
from .layout import BEST, RunFiles
from .memory import check_training_memory
from .prepare import (Prepared, closed_form_data, empty_graph, graph_fingerprint, load_series_and_graph, make_model, model_sizes,
                      prepare, target_positions)
from .trainer import Trainer, seed_everything


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, old value, new value)`` of every field that differs."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b and not (a != a and b != b):  # NaN (data.null_value) equals NaN here
            out.append((f"{prefix}{k}", a, b))
    return out


#: settings a resumed run may change: they decide when it stops, not what it computes
MAY_CHANGE_ON_RESUME = ("train.epochs", "train.patience", "train.budget_minutes", "train.budget_stop")
#: how to run, not what: a resumed run takes these from the command line without a word
RUNTIME_SETTINGS = ("train.progress", "train.device", "train.threads", "train.workers", "data.lazy", "data.cache_mb")
#: file locations: a resumed run accepts a new location when the content is the same (fingerprints)
PATH_SETTINGS = ("data.path", "data.graph", "data.root")


def _absolute(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its file locations as absolute paths, so the run works from any working directory."""
    fields = {f"data.{name}": os.path.abspath(os.path.expanduser(str(getattr(cfg.data, name))))
              for name in ("path", "graph", "root") if getattr(cfg.data, name)}
    fields["data.covariates"] = [c if c.startswith("graph:") else os.path.abspath(os.path.expanduser(c))
                                 for c in cfg.data.covariates]
    return with_fields(cfg, fields)


#: model.params the data chose when the run started (:func:`choose_defaults`), if the user gave none
CHOSEN_PARAMS = ("residual",)


def _with_chosen(saved: dict, new: dict) -> dict:
    """``new`` with the run's data-chosen model.params where ``new`` leaves them unset."""
    params = dict(new["model"]["params"])
    for k in CHOSEN_PARAMS:
        if k in saved["model"]["params"] and k not in params:
            params[k] = saved["model"]["params"][k]
    return {**new, "model": {**new["model"], "params": params}}


def _check_run_dir(out: Path, cfg: RunConfig, overwrite: bool) -> None:
    saved = RunFiles(out).config
    if saved.exists() and not overwrite:
        try:
            old = load_run_config(saved).to_dict()
        except RunDirError:
            old = None
        if old is None:
            what = "a damaged run (its config.yaml cannot be read)"
        else:
            diff = _config_diff(old, _with_chosen(old, _absolute(config_from_dict(cfg.to_dict())).to_dict()))
            what = ("a run with the same config" if not diff else
                    "a different run (" + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in diff[:3])
                    + ("; ..." if len(diff) > 3 else "") + ")")
        raise RunDirError(f"run directory '{out}' already holds {what}; pass --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out")


def _given(diff_key: str, given) -> bool:
    return given is None or any(diff_key == g or diff_key.startswith(g + ".") or g.startswith(diff_key + ".")
                                for g in given)


def _resume_config(out: Path, cfg: RunConfig, given, log) -> RunConfig:
    """The run's saved config, with the settings a resume may change taken from ``cfg``.

    ``given``: dotted keys the user set (``None``: every field of ``cfg`` counts). A given setting
    that differs from the run and may not change is an error listing each difference."""
    files = RunFiles(out)
    if not files.last.is_file():
        raise RunDirError(f"cannot resume: '{files.last}' does not exist; start without --resume")
    saved = load_run_config(files.config)
    new = _absolute(config_from_dict(cfg.to_dict()))
    diffs = [d for d in _config_diff(saved.to_dict(), _with_chosen(saved.to_dict(), new.to_dict()))
             if _given(d[0], given)]
    refused = [d for d in diffs if d[0] not in MAY_CHANGE_ON_RESUME + RUNTIME_SETTINGS + PATH_SETTINGS]
    if refused:
        what = "; ".join(f"{k}: {a!r} in the run, {b!r} given" for k, a, b in refused[:6])
        raise RunDirError(
            f"cannot resume '{out}' with other settings ({what}{'; ...' if len(refused) > 6 else ''}); only "
            f"{' and '.join(MAY_CHANGE_ON_RESUME)} may change on --resume. Drop those options to continue the run "
            f"as it was, or start a new run (another --out, or --overwrite)")
    saved = with_fields(saved, {key: value for key, _, value in diffs})
    for key, old, value in diffs:
        if key in MAY_CHANGE_ON_RESUME:
            log(f"resume: {key} = {value!r} (the run had {old!r})")
        elif key in PATH_SETTINGS:
            log(f"resume: {key} = '{value}' (the run had '{old}'); accepted only if its content is the same")
    return saved.validate()


def _fingerprint_diff(old: dict, new: dict, cfg: RunConfig) -> str:
    parts = []
    if old.get("data") != new.get("data"):
        parts.append(f"the data ({cfg.data.path or cfg.data.dataset}: fingerprint {new.get('data')}, the run's "
                     f"{old.get('data')})")
    if old.get("graph") != new.get("graph"):
        parts.append(f"the graph ({cfg.data.graph or cfg.data.dataset or 'none'}: fingerprint {new.get('graph')}, "
                     f"the run's {old.get('graph')})")
    return " and ".join(parts)


def _write_start(files: RunFiles, cfg: RunConfig, info: dict) -> None:
    cfg.to_yaml(files.config)
    atomic_write(files.info, json.dumps(info, indent=1))


def _start_run_dir(out: Path, cfg: RunConfig, info: dict) -> None:
    """Write config.yaml and run.json into a new folder beside ``out`` and rename it into place;
    an old run there is swapped out and deleted only then (never through a link). In a folder that
    holds no run (no config.yaml) the files a run writes that are there already are removed first
    (a start killed early, or results of a run whose config was deleted): a new run inherits none."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out '{out}' is a file; expected a run directory")
    files = RunFiles(out)
    if out.is_dir() and any(out.iterdir()) and not files.config.exists():
        # a folder stgraph did not make a run of (or a start that was killed early): use it as it is
        try:
            for p in files.written():
                p.unlink()
        except OSError as e:
            raise wrap_os_error(e, out, "clear the run directory") from None
        _write_start(files, cfg, info)
        return
    tag = f"{os.getpid()}-{int(time.time() * 1000)}"
    stage = out.parent / f".{out.name}.new-{tag}"
    stage.mkdir()
    try:
        _write_start(RunFiles(stage), cfg, info)
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


def train(cfg: RunConfig, out: str | Path | None, *, resume: bool = False, overwrite: bool = False,
          given=None, log=print, snapshot_marks=None) -> "Run":
    """Train ``cfg`` into run directory ``out`` (``None``: keep nothing on disk); returns the finished :class:`Run`.

    Everything is checked (config, files, model) before the run directory changes: a failed start
    leaves it as it was. ``overwrite`` replaces an old run by renaming a new folder into place.
    ``resume`` continues the run in ``out``; ``given`` names the settings the caller set (``None``:
    all of ``cfg``): those that differ from the run must be ones a resume may change
    (:data:`MAY_CHANGE_ON_RESUME`), and the data and graph must have the run's fingerprints.
    The run directory is locked (:func:`stgraph.files.run_lock`) while this runs. ``snapshot_marks``
    (CPU minutes) keep copies of ``best.pt`` as it was at each (:class:`~stgraph.training.trainer.Trainer`).

    Under ``torchrun`` every process calls this; they join the process group
    (:func:`stgraph.training.distributed.session`) and train data parallel. Rank 0 alone checks,
    locks and writes the run directory and prints; the others only read it (``resume``).
    """
    cfg.validate()
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    with distributed.session(cfg.train.device) as dist:
        if not dist.is_main:  # rank 0 speaks for all: the others print no log and no warning
            log = _quiet
            import warnings
            warnings.simplefilter("ignore")
        if out is None:
            return _train(cfg, None, resume=False, fresh=False, log=log, snapshot_marks=snapshot_marks)
        out = Path(out)
        with run_lock(out) if dist.is_main else nullcontext():
            if dist.is_main:
                check_no_links(out)
            if resume:
                cfg = _resume_config(out, cfg, given, log)
            elif dist.is_main:
                _check_run_dir(out, cfg, overwrite)
            return _train(_absolute(cfg), out, resume=resume, fresh=not resume, log=log,
                          snapshot_marks=snapshot_marks)


def _quiet(*args, **kwargs) -> None:
    """The ``log`` of a process other than rank 0: it prints nothing."""


def _train(cfg: RunConfig, out: Path | None, *, resume: bool, fresh: bool, log, snapshot_marks=None) -> "Run":
    get_model_class(cfg.model.name)  # an unknown model fails before any file is read
    seed_everything(cfg.train.seed)
    prep = prepare(cfg)
    s = prep.series
    log(f"{s.source}: {null_convention(s.zero_ratio, s.null_value, s.null_origin)}")
    windows = count_windows(prep.data, log)
    if fresh or out is None:
        cfg = choose_defaults(cfg, prep.data, log)
    seed_everything(cfg.train.seed)
    model = make_model(cfg, prep.data)
    if any(p.requires_grad for p in model.parameters()):  # closed-form models neither batch nor stop early
        check_windows(cfg, windows, log)
    dist = distributed.current()
    check_training_memory(model, batch_size=dist.per_rank_batch(cfg.train.batch_size),
                          num_edges=int(prep.graph.edge_index.size(1)),
                          device=resolve_device(distributed.device_for(cfg.train.device)), log=log,
                          enabled=cfg.train.memory_check)
    fingerprint = {"data": prep.data.fingerprint(), "graph": graph_fingerprint(prep.graph)}
    writes = out is not None and dist.is_main
    if out is not None:
        if resume:
            ck = load_checkpoint(RunFiles(out).last)
            if ck.get("fingerprint") and ck["fingerprint"] != fingerprint:
                raise RunDirError(f"cannot resume '{out}': {_fingerprint_diff(ck['fingerprint'], fingerprint, cfg)} "
                                  f"differ from what the run started with; pass the original files, or start a new "
                                  f"run (another --out, or --overwrite)")
        info = {"model": cfg.model.name, "parameters": count_parameters(model),
                "sensor_ids": list(prep.series.sensor_ids), "channels": list(prep.series.channels),
                "target_channels": list(prep.data.target_channels), "fingerprint": fingerprint,
                "source": os.path.abspath(str(prep.series.source))}
        if fresh and writes:
            _start_run_dir(out, cfg, info)
        elif writes:
            _write_start(RunFiles(out), cfg, info)
    extra = {"config": cfg.to_dict(), "fingerprint": fingerprint}
    if prep.data.exogenous is not None:
        extra["covariates"] = prep.data.exogenous.state_dict()
    trainer = Trainer(model, prep.data, prep.graph, cfg.train, out, extra_state=extra,
                      distribution=cfg.model.distribution, snapshot_marks=snapshot_marks)
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if prep.data.exogenous is not None:
        report_gates(trainer, out if writes else None, log)
    if writes:
        summary = {"model": cfg.model.name, "parameters": count_parameters(model),
                   "epochs": trainer.state["epoch"], "best_epoch": trainer.state["best_epoch"],
                   "best_val_mae": trainer.state["best_val"] if math.isfinite(trainer.state["best_val"]) else None,
                   "train_windows": int(prep.data.split_starts("train").numel()),
                   "train_seconds": round(time.perf_counter() - t0, 3), "resumed": bool(resume),
                   # CPU time of the training steps and validation passes, all sessions of the run together
                   "cpu_seconds": round(trainer.state["cpu_seconds"], 3), "steps": trainer.state["steps"],
                   "budget_minutes": cfg.train.budget_minutes, "budget_stopped": trainer.state["budget_stopped"],
                   **({"snapshots": trainer.state["snapshots"]} if trainer.state["snapshots"] else {}),
                   "device": str(trainer.device), "processes": dist.world, **peak_memory(trainer.device)}
        atomic_write(RunFiles(out).summary, json.dumps(summary, indent=1))
    return Run(cfg, prep, trainer, None if out is None else RunFiles(out))


def report_gates(trainer: Trainer, out: Path | None, log=print) -> dict | None:
    """The fusion gates of the best weights (which covariate source mattered, per horizon step), printed and
    written to ``out/gates.json``; ``None`` for a model without gates."""
    model = trainer.model
    best = None if out is None else RunFiles(out).best
    if best is not None and best.is_file() and hasattr(model, "gates"):
        import copy
        model = copy.deepcopy(model)
        model.load_state_dict(load_checkpoint(best, map_location=trainer.device)["model"])
    gates = model.gates() if hasattr(model, "gates") else None
    if not gates:
        return None
    from ..metrics import default_steps
    from ..nn.fusion import gate_table

    steps = [h for h in default_steps(trainer.data.horizon, trainer.data.interval_minutes) if h <= trainer.data.horizon]
    log("covariate gates (0 = source switched off, 1 = fully on), input window and horizon steps:\n"
        + gate_table(gates, steps))
    if out is not None:
        atomic_write(RunFiles(out).gates, json.dumps(gates, indent=1))
    return gates


#: how to get more windows, for the messages about too few
MORE_WINDOWS = "a longer series, other data.split ratios or a shorter data.input_len / data.horizon"


def count_windows(data, log=print) -> dict[str, int]:
    """``{'train': n, 'val': n, 'test': n}``, the windows of each split, logged once."""
    n = {k: int(data.split_starts(k).numel()) for k in ("train", "val", "test")}
    log(f"windows: {n['train']} train, {n['val']} validation, {n['test']} test "
        f"(input {data.input_len} + horizon {data.horizon} steps each)")
    return n


def check_windows(cfg: RunConfig, windows: dict[str, int], log=print) -> None:
    """For a model that trains: refuse a training split smaller than one batch before anything is written,
    and warn when the validation split has fewer than :data:`~stgraph.models.seasonal.MIN_VALIDATION_WINDOWS`
    windows (the best checkpoint, early stopping and stgt's residual choice rest on them); say when a CPU
    budget may end the run before its epochs."""
    from ..models.seasonal import MIN_VALIDATION_WINDOWS

    if windows["train"] < cfg.train.batch_size:
        raise ConfigError(f"the training split has {windows['train']} windows, fewer than one batch "
                          f"(train.batch_size = {cfg.train.batch_size}); use --batch-size {max(1, windows['train'])} "
                          f"or less, or more windows: {MORE_WINDOWS}")
    if windows["val"] < MIN_VALIDATION_WINDOWS:
        what = ["the best checkpoint"] + (["early stopping"] if cfg.train.patience else []) + \
            (["stgt's residual"] if cfg.model.name == "stgt" else [])
        log(f"warning: model selection ({', '.join(what)}) rests on only {windows['val']} validation windows (fewer "
            f"than {MIN_VALIDATION_WINDOWS}); for more: {MORE_WINDOWS}")
    if cfg.train.budget_minutes:
        log(f"training: up to {cfg.train.epochs} epochs or {cfg.train.budget_minutes:g} CPU minutes, whichever comes "
            f"first (train.budget_minutes; --budget 0 trains for the epochs alone)")


def choose_defaults(cfg: RunConfig, data, log=print) -> RunConfig:
    """``cfg`` with the settings the data decide (so ``config.yaml`` records them): stgt's
    ``model.params.residual`` when not given is ``'blend'`` (last value and seasonal average, learned)
    where the seasonal average beats last value on enough validation windows by a margin they support,
    else ``'last'`` (:func:`stgraph.models.seasonal.choose_residual`)."""
    if cfg.model.name != "stgt" or "residual" in cfg.model.params or target_positions(data) is None:
        return cfg
    from ..models.seasonal import choose_residual

    r = choose_residual(closed_form_data(data))
    cfg = with_fields(cfg, {"model.params": {**cfg.model.params, "residual": r.choice}})
    where = {"val": "validation", "train": "training"}[r.split]
    log(f"stgt residual: {r.choice} ({where} MAE over all steps, {r.windows} windows: last value {r.last_mae:.4g}, "
        f"seasonal average {r.ha_mae:.4g}; {r.reason}; --set model.params.residual=last|blend chooses)")
    return cfg


def peak_memory(device) -> dict:
    """Peak resident memory of this process (MiB) and, on CUDA, peak allocated device memory (MiB)."""
    import resource
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.device(device).type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


#: config fields a checkpoint may hold a different value of than config.yaml (a resume changed them,
#: or they only say how to run)
_MAY_DIFFER = MAY_CHANGE_ON_RESUME + RUNTIME_SETTINGS


def _check_config_matches(cfg: RunConfig, ckpt: dict, cfg_path: Path, ckpt_path: Path) -> None:
    """config.yaml must agree with the config the checkpoint was trained with."""
    stored = ckpt.get("config")
    if not isinstance(stored, dict):
        return
    try:
        stored_cfg = config_from_dict(stored).to_dict()
    except ConfigError as e:
        raise RunDirError(f"checkpoint '{ckpt_path}' holds an unreadable config ({e}); it is damaged") from None
    diff = [d for d in _config_diff(stored_cfg, cfg.to_dict()) if d[0] not in _MAY_DIFFER]
    if diff:
        what = "; ".join(f"{k}: {b!r} in config.yaml, {a!r} in the checkpoint" for k, a, b in diff[:4])
        raise RunDirError(f"run file '{cfg_path}' disagrees with the checkpoint '{ckpt_path}' ({what}"
                          f"{'; ...' if len(diff) > 4 else ''}); the run directory was edited or mixed up. "
                          f"Restore config.yaml or train again")


def _model_class_for(cfg: RunConfig, model: str | None, run_dir: Path):
    """The model class of a run: a registry name from the run, or an import path from the caller only."""
    from ..models.registry import available_models

    name = cfg.model.name
    if name.lower() in available_models():
        if model is not None and model.lower() != name.lower():
            raise ConfigError(f"--model {model}: the run in '{run_dir}' was trained with model '{name}'")
        return get_model_class(name)
    if model is None:
        raise RunDirError(f"the run in '{run_dir}' uses the user model '{name}', which is imported by path; stgraph "
                          f"never imports a module named in a run file. Pass --model {name} to import it")
    if model != name:
        raise ConfigError(f"--model {model}: the run in '{run_dir}' was trained with model '{name}'; pass that")
    return get_model_class(model)


class Run:
    """A run: its config, prepared data and graph (:class:`~stgraph.training.prepare.Prepared`), its
    model inside the one :class:`~stgraph.training.trainer.Trainer`, and its files (``None`` for a run
    kept off disk).

    :func:`train` returns the run it trained; :meth:`open` reads a finished one back from its
    directory. ``stgraph evaluate``, ``predict``, ``plot`` and ``bench`` take a ``Run``.

    Attributes:
        config: the :class:`~stgraph.config.RunConfig`.
        prepared: series, nx graph, PyG graph and :class:`~stgraph.data.ForecastData`.
        trainer: evaluates and predicts (and trained, for a run from :func:`train`).
        files: :class:`~stgraph.training.layout.RunFiles` of the run directory, or ``None``.
        progress: the training state of the run (epoch, best epoch, finished, early stopped): of the
            run's ``last.pt`` for an opened run, the trainer's own for a run just trained.
    """

    def __init__(self, config: RunConfig, prepared: Prepared, trainer: Trainer, files: RunFiles | None = None,
                 progress: dict | None = None) -> None:
        self.config = config
        self.prepared = prepared
        self.trainer = trainer
        self.files = files
        self.progress = trainer.state if progress is None else dict(progress)

    # what a caller reads of the run
    @property
    def model(self) -> torch.nn.Module:
        return self.trainer.model

    @property
    def data(self):
        """The :class:`~stgraph.data.ForecastData` (scaler from the checkpoint for an opened run)."""
        return self.prepared.data

    @property
    def series(self):
        return self.prepared.series

    @property
    def graph(self):
        """The PyG graph on :attr:`device` (``edge_index [2, E]``, ``edge_weight [E]``)."""
        return self.trainer.graph

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    @property
    def state(self) -> dict:
        """The trainer's state (epoch, best epoch, best validation MAE, ...)."""
        return self.trainer.state

    @property
    def trainable(self) -> bool:
        return self.trainer.trainable

    @property
    def null_value(self) -> float:
        return self.trainer.null_value

    @property
    def dist(self):
        return self.trainer.dist

    def evaluate(self, split: str = "test", horizons=None) -> dict:
        """Masked metrics of the split (see :meth:`stgraph.training.trainer.Trainer.evaluate`)."""
        return self.trainer.evaluate(split, horizons=horizons)

    def predictions(self, split: str = "test", batch_size: int | None = None):
        """``(forecast, y, starts)`` per batch in data units (see :meth:`~stgraph.training.trainer.Trainer.predictions`)."""
        return self.trainer.predictions(split, batch_size)

    def to_units(self, out):
        """Model output (z-scored) -> data units; a ``Normal`` stays a ``Normal``."""
        return self.trainer.to_units(out)

    def notice(self) -> str | None:
        """A run that did not finish (interrupted, or still training) or that early stopping ended, in words."""
        p = self.progress or {}
        if not p or not self.trainable or self.files is None:
            return None
        epochs, run_dir = self.config.train.epochs, self.files.root
        best = p.get("best_epoch")
        if not p.get("finished"):
            return (f"the run in '{run_dir}' did not finish: {p.get('epoch', 0)} of {epochs} epoch(s) done (it was "
                    f"interrupted or is still training); these are the weights of epoch {best}, the best so far. "
                    f"Continue it with stgraph train --out {run_dir} --resume")
        if p.get("early_stopped"):
            return (f"early stopping ended the run at epoch {p.get('epoch')} of {epochs} (validation MAE did not "
                    f"improve for train.patience = {self.config.train.patience} epochs); these are the weights of "
                    f"epoch {best}")
        return None

    def null_convention(self) -> str:
        """The series' null convention in words (:func:`stgraph.io.series.null_convention`)."""
        s = self.series
        return null_convention(s.zero_ratio, s.null_value, s.null_origin)

    def write_evaluation(self, result: dict, split: str) -> Path:
        """Write ``result`` (what ``stgraph evaluate --split <split>`` computed) into the run directory, atomically."""
        return self._write(self._files().evaluation(split), result)

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
        """Read a finished run back (data re-read from the config, weights from ``checkpoint``).

        With ``data_path`` the series comes from another file with the same sensors
        (for ``predict``); the scaler stays the one fitted at training time. ``model`` is the
        import path of a user model (``pkg.mod:Class``): the run's own files never choose a module
        to import. ``amp`` (``'off'``, ``'bf16'``, ``'auto'``) replaces the run's ``train.amp`` for
        its predictions and evaluation. config.yaml must agree with the checkpoint, and the data (unless ``data_path``)
        and graph must have the fingerprints the run was trained on.

        Raises:
            RunDirError: not a run directory, a damaged or edited one, or changed data / graph files.
        """
        run_dir = Path(run_dir)
        files = RunFiles(run_dir)
        if not files.config.is_file():
            raise RunDirError(f"'{run_dir}' is not a run directory (no {files.config.name}); train first with "
                              f"stgraph train ... --out {run_dir}")
        check_no_links(run_dir)
        cfg = load_run_config(files.config)
        ckpt_path = files.checkpoint(checkpoint)
        if not ckpt_path.is_file():
            ckpt_path = files.last
        ckpt = load_checkpoint(ckpt_path)
        _check_config_matches(cfg, ckpt, files.config, ckpt_path)
        _model_class_for(cfg, model, run_dir)
        if device:
            cfg = with_fields(cfg, {"train.device": device})
        if amp is not None:
            cfg = with_fields(cfg, {"train.amp": amp}).validate()
        prep = prepare(cfg, data_path, ckpt.get("covariates"))
        stored = ckpt.get("fingerprint") or {}
        if data_path is None and stored.get("data") not in (None, prep.data.fingerprint()):
            raise RunDirError(f"the data file {cfg.data.path or cfg.data.dataset} changed since '{run_dir}' was "
                              f"trained (fingerprint {prep.data.fingerprint()}, the run's {stored.get('data')}); "
                              f"retrain, or pass the original file")
        if stored.get("graph") not in (None, graph_fingerprint(prep.graph)):
            raise RunDirError(f"the graph {cfg.data.graph or cfg.data.dataset or '(none)'} changed since '{run_dir}' "
                              f"was trained (fingerprint {graph_fingerprint(prep.graph)}, the run's "
                              f"{stored.get('graph')}); its metrics would not belong to the run. Restore the original "
                              f"graph file, or retrain")
        if ckpt.get("scaler"):
            prep.data.set_scaler_state(ckpt["scaler"])
        net = make_model(cfg, prep.data)
        net.load_state_dict(ckpt["model"])
        last = files.last
        progress = (ckpt if ckpt_path == last or not last.is_file()
                    else load_checkpoint(last, map_location="cpu")).get("trainer") or {}
        return cls(cfg, prep, Trainer(net, prep.data, prep.graph, cfg.train, None,
                                              distribution=cfg.model.distribution), files, progress)


def load_run(run_dir: str | Path, **kwargs) -> Run:
    """:meth:`Run.open` (same arguments)."""
    return Run.open(run_dir, **kwargs)


def config_from_run(run_dir: str | Path) -> RunConfig:
    """The config of the run in ``run_dir`` (its ``config.yaml``, read strictly)."""
    return load_run_config(RunFiles(run_dir).config)


__all__ = ["Run", "Prepared", "prepare", "train", "load_run", "make_model", "model_sizes", "RunDirError",
           "config_from_dict", "config_from_run", "graph_fingerprint", "empty_graph", "load_series_and_graph",
           "target_positions"]
