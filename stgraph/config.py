"""Typed run configuration: dataclasses, loadable from YAML, overridable from the CLI.

A run is described by :class:`RunConfig`, a tree of three sections::

    data:  where the series and graph are and how windows are cut
    model: which model (registry name) and its keyword arguments
    train: optimiser, schedule, epochs, seed, device, checkpointing

Every field can be set in a YAML file and overridden on the command line with
``--set section.field=value`` (the value is parsed as YAML, so ``0.001``,
``true``, ``[0.7, 0.1, 0.2]`` work). Unknown keys are an error that suggests
the nearest valid key; wrong types and impossible values are errors naming the
field, the value found and what is expected; every count has a sane upper bound too
(:data:`stgraph.limits.COUNT_LIMITS`: threads and workers by this machine's CPUs).

The dataclasses are frozen: a config is never changed after it is made. A changed
copy comes from :func:`with_fields` (``with_fields(cfg, {"train.lr": 0.01})``),
:func:`apply_override` or :func:`config_from_dict` (``base`` is left as it was).
The list and dict fields (``data.split``, ``model.params``, ...) are plain lists and
dicts, so YAML writes them as it reads them: treat them as read-only too and pass
a new list or dict to :func:`with_fields`.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from .errors import ConfigError, where
from .limits import check_config_counts
from .typecheck import check_value
from .yamlfile import load_yaml

#: when a training budget (train.budget_minutes) ends a run: after the epoch that crosses it, or at the step
BUDGET_STOPS = ("epoch", "step")

#: largest accepted train.seed: every generator seed derived from it (seed * 1_000_003 + epoch) fits in 63 bits
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class DataConfig:
    """Where the data are and how forecasting windows are cut."""

    path: Optional[str] = None          #: series file (HDF5, npz, CSV)
    graph: Optional[str] = None         #: graph file (adj pickle, distance CSV, JSON, GraphML)
    dataset: Optional[str] = None       #: a named dataset instead of path/graph
    root: Optional[str] = None          #: cache folder for named datasets
    input_len: int = 12                 #: steps in (12 = 60 min at 5 min)
    horizon: int = 12                   #: steps out
    stride: int = 1                     #: steps between window starts
    split: list = field(default_factory=lambda: [0.7, 0.1, 0.2])  #: train/val/test ratios of windows
    target: Union[int, str] = 0         #: target channel (name or index)
    null_value: Optional[float] = None  #: missing-value marker: nan, 0 or a number; None = the file format's own
    start: Optional[str] = None         #: first timestamp, for files without timestamps (npz)
    freq: Optional[str] = None          #: interval, for files without timestamps, e.g. '5min'
    lazy: bool = False                  #: leave an HDF5 series in its file, read windows in chunks (larger than memory)
    cache_mb: int = 256                 #: with lazy: MiB of row chunks kept in memory (per process)
    covariates: list = field(default_factory=list)  #: covariate files / graph:ATTR (stgraph.data.covariates)
    covariate_tolerance: Optional[str] = None  #: how old a covariate reading may be, e.g. '10min' (None: its interval)
    time_zone: Optional[str] = None     #: the series' clock (UTC, +01:00, IANA): covariate files with UTC offsets go to it
    report_hops: int = 2                #: text reports reach the sensors upstream within this many hops (stgraph.data.reports)
    report_hours: float = 3.0           #: how long a report without an end (given or in its words) reaches the series
    report_after_hours: float = 0.5     #: how long a report whose words state an end still reaches the series after it
    report_radius_km: float = 1.0       #: a report placed by lat/lon reaches the sensors within this distance
    locations: Optional[str] = None     #: sensor locations CSV, for reports placed by lat/lon (else the graph's node lat/lon)
    text_encoder: Optional[str] = None  #: a sentence-transformers folder on disk for report texts (None: hashed n-grams)
    skip_bad_rows: bool = False         #: bad rows of a reports file are skipped and counted instead of refused
    nonnegative: bool = False           #: the target cannot be below 0 (counts): point forecasts and quantiles clipped at 0
    graph_weight_column: Optional[str] = None  #: edge-table graph: the weight's column, what the weights mean and
    graph_weights: Optional[str] = None  #: how repeated pairs combine (stgraph.graph.edges.read_edge_table)
    graph_aggregate: Optional[str] = None
    split_gap: int = 0                  #: steps dropped between splits (0: none, the published protocol)

    def validate(self) -> None:
        check_config_counts(self, "data")  # input_len, horizon, stride, cache_mb: stgraph/limits.py
        if not isinstance(self.lazy, bool):
            raise ConfigError(f"data.lazy = {self.lazy!r}: expected true or false")
        if not isinstance(self.nonnegative, bool):
            raise ConfigError(f"data.nonnegative = {self.nonnegative!r}: expected true or false")
        if not isinstance(self.covariates, list) or not all(isinstance(c, str) and c for c in self.covariates):
            raise ConfigError(f"data.covariates = {self.covariates!r}: expected a list of covariate files "
                              f"(or graph:ATTR[,ATTR...]), e.g. [rain.csv, incidents.csv]")
        ok = isinstance(self.split, (list, tuple)) and len(self.split) == 3 and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r > 0 for r in self.split)
        if not ok or abs(sum(map(float, self.split)) - 1) > 1e-6:
            raise ConfigError(f"data.split = {self.split}: expected three positive ratios that sum to 1, e.g. [0.7, 0.1, 0.2]")


@dataclass(frozen=True)
class ModelConfig:
    """Which model and its keyword arguments (checked against its constructor)."""

    name: str = "stgt"
    probabilistic: bool = False
    distribution: str = "normal"        #: of the probabilistic head: 'normal', 'lognormal' (counts, >= 0), 'mixture'
    #: ('mixture': K Normals, K = model.params.components, default 2; stgt's head), 'lognormal-mixture' (K censored
    #: log-normals: two-regime counts)
    params: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("model.name is empty; expected a registry name such as 'stgt'")
        from .distributions import check_name
        check_name(self.distribution)
        if self.distribution != "normal" and not self.probabilistic:
            raise ConfigError(f"model.distribution = {self.distribution!r} applies to the probabilistic head, but "
                              f"model.probabilistic is false; add --probabilistic (or --distribution alone)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"           #: 'cosine', 'multistep' or 'none'
    milestones: list = field(default_factory=lambda: [20, 30, 40])
    gamma: float = 0.1
    warmup_epochs: int = 0
    clip_grad: float = 5.0              #: max gradient norm (0 = off)
    patience: int = 10                  #: early stopping on validation MAE (0 = off)
    seed: int = 0
    device: str = "auto"                #: 'auto', 'cpu', 'cuda', 'cuda:1'
    amp: str = "auto"                   #: 'auto' (bf16 on CUDA), 'bf16', 'off'
    compile: bool = False               #: torch.compile the model
    threads: int = 0                    #: CPU threads for torch (0 = leave as is)
    max_batches: int = 0                #: cap batches per epoch (0 = all), for quick runs
    checkpoint_every: int = 0           #: also checkpoint every k batches inside an epoch (0 = epoch end only)
    skip_nonfinite: bool = False        #: skip a batch with a non-finite loss instead of stopping
    max_skips: int = 10                 #: with skip_nonfinite: stop after this many skipped batches
    progress: bool = True               #: tqdm progress bar
    memory_check: bool = True           #: stop before training when the estimated peak memory does not fit
    workers: int = 0                    #: worker processes gathering batches ahead (0 = in the training process)
    budget_minutes: float = 0.0         #: training compute budget in CPU minutes of the process (0 = off)
    budget_stop: str = "epoch"          #: with a budget: 'epoch' (finish the epoch that crosses it) or 'step'

    def validate(self) -> None:
        check_config_counts(self, "train")  # every count, bounded: stgraph/limits.py
        for name in ("lr",):
            v = float(getattr(self, name))
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"train.{name} = {getattr(self, name)}: expected a positive finite number, e.g. 0.001")
        for name in ("weight_decay", "clip_grad", "gamma"):
            v = float(getattr(self, name))
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"train.{name} = {getattr(self, name)}: expected a finite number >= 0")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"train.seed = {self.seed!r}: expected an integer from 0 to {MAX_SEED} (2**32 - 1)")
        ms = self.milestones
        if not isinstance(ms, (list, tuple)) or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1
                                                        for m in ms) or list(ms) != sorted(set(ms)):
            raise ConfigError(f"train.milestones = {ms!r}: expected increasing positive integers (epochs at "
                              f"which the multistep schedule multiplies the rate by gamma), e.g. [20, 30, 40]")
        check_choice(self, "scheduler", ("cosine", "multistep", "none"), "train")
        b = self.budget_minutes
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not (math.isfinite(b) and b >= 0):
            raise ConfigError(f"train.budget_minutes = {b!r}: expected a finite number of CPU minutes >= 0 "
                              f"(0 = no budget), e.g. 10 or 1.5")
        check_choice(self, "budget_stop", BUDGET_STOPS, "train")
        from .runtime import AMP_CHOICES, check_device_name
        check_choice(self, "amp", AMP_CHOICES, "train")
        check_device_name(self.device, "train.device")


@dataclass(frozen=True)
class RunConfig:
    """The whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "RunConfig":
        self.data.validate()
        self.model.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from .files import atomic_write
            atomic_write(path, text)
        return text


# ---------------------------------------------------------------------------------------- helpers
def check_positive_int(obj, name: str, section: str) -> None:
    """The field ``name`` of the config dataclass ``obj`` must be an integer >= 1 (``section.name`` in the error)."""
    v = getattr(obj, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{section}.{name} = {v!r}: expected a positive integer")


def check_choice(obj, name: str, choices, section: str) -> None:
    """The field ``name`` of the config dataclass ``obj`` must be one of ``choices`` (the error suggests the
    nearest)."""
    v = getattr(obj, name)
    if v not in choices:
        raise ConfigError(f"{section}.{name} = {v!r}{_suggest(str(v), choices)}: expected one of {list(choices)}")


def _suggest(key: str, valid) -> str:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (:func:`stgraph.typecheck.check_value`); convert int ->
    float where harmless. ``data.null_value`` takes every spelling of a null value."""
    if where == "data.null_value":  # one spelling everywhere: nan, none, 0, <number>, auto
        from .io.series import parse_null_value
        return parse_null_value(value, where)
    return check_value(value, tp, where)


def apply_fields(obj, mapping: dict, where: str):
    """A copy of the dataclass ``obj`` with the fields of ``mapping`` set (``dataclasses.replace``; ``obj``
    is left as it was). Nested sections recurse; ``params`` adds to the ones there."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(mapping).__name__}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    changes = {}
    for key, value in mapping.items():
        if key not in names:
            if not where:
                raise ConfigError(f"unknown section '{key}'{_suggest(str(key), names)}; valid sections: {names} "
                                  f"(each holds fields, e.g. train: {{lr: 0.001}})")
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(str(key), names)}; valid keys: {names}")
        current = changes.get(key, getattr(obj, key))
        if dataclasses.is_dataclass(current):
            changes[key] = apply_fields(current, value or {}, f"{where}.{key}" if where else key)
        elif key == "params" and isinstance(current, dict) and isinstance(value, dict):
            changes[key] = {**current, **value}  # a later file adds to the model's defaults
        else:
            changes[key] = _coerce(value, hints[key], f"{where}.{key}" if where else key)
    return dataclasses.replace(obj, **changes)


def config_from_dict(mapping: dict | None, base: RunConfig | None = None) -> RunConfig:
    """A :class:`RunConfig` from nested mappings (unknown keys are errors), on top of ``base`` (the
    defaults when ``None``); ``base`` itself is not changed."""
    return apply_fields(base if base is not None else RunConfig(), mapping or {}, "")


def with_fields(cfg: RunConfig, values: dict) -> RunConfig:
    """A copy of ``cfg`` with dotted fields set as given (``{"train.device": "cpu"}``), through
    ``dataclasses.replace``; ``cfg`` is not changed and the values are taken as they are (typed already).

    Raises:
        ConfigError: a key that is not ``section.field`` of a :class:`RunConfig`.
    """
    sections: dict[str, dict] = {}
    for key, value in values.items():
        sec, _, name = str(key).partition(".")
        fields = [f.name for f in dataclasses.fields(RunConfig)]
        if sec not in fields or name not in [f.name for f in dataclasses.fields(getattr(cfg, sec))]:
            raise ConfigError(f"'{key}' is not a config field; expected section.field with section one of {fields}")
        sections.setdefault(sec, {})[name] = value
    return dataclasses.replace(cfg, **{sec: dataclasses.replace(getattr(cfg, sec), **kw)
                                       for sec, kw in sections.items()})


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def shipped_config(name: str) -> Path | None:
    """The shipped configuration ``stgraph/configs/<name>.yaml`` (a model's defaults, or a named
    set-up such as ``stgt-large``), if there is one."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        return None
    p = CONFIG_DIR / f"{name.lower()}.yaml"
    return p if p.is_file() else None


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a YAML config file into a :class:`RunConfig` (not yet validated)."""
    p = Path(path)
    if not p.is_file():
        from .errors import MissingFileError
        raise MissingFileError(f"config file '{p}' not found")
    mapping = load_yaml(p, what="config file") or {}
    try:
        return config_from_dict(mapping, base)
    except ConfigError as e:
        raise ConfigError(f"config file '{p}': {e}") from None


#: fields added after runs were first written: a run's config.yaml from before them may lack them
#: (their defaults then hold)
ADDED_FIELDS = ("data.covariates", "data.covariate_tolerance", "model.distribution", "train.budget_minutes",
                "train.budget_stop", "data.nonnegative", "data.time_zone", "data.split_gap", "data.graph_weights",
                "data.graph_weight_column", "data.graph_aggregate", "data.report_hops", "data.report_hours",
                "data.report_radius_km", "data.locations", "data.text_encoder", "data.skip_bad_rows",
                "data.report_after_hours")


def load_run_config(path: str | Path) -> RunConfig:
    """Read a run's own ``config.yaml`` strictly: stgraph wrote every field, so a missing section or
    field means the file was cut short (a full disk) or edited; that is an error naming the file."""
    from .errors import RunDirError

    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"run file '{p}' not found")
    try:
        mapping = load_yaml(p, what="run file", error=RunDirError)
    except RunDirError as e:
        raise RunDirError(f"{e}; the run directory is damaged: train again (--overwrite)") from None
    full = RunConfig().to_dict()
    if not isinstance(mapping, dict):
        raise RunDirError(f"run file '{p}' holds {type(mapping).__name__}, not the run's settings; it is truncated "
                          f"or damaged: train again (--overwrite)")
    missing = [f"{sec}.{k}" for sec, fields in full.items() for k in fields
               if (not isinstance(mapping.get(sec), dict) or k not in mapping[sec]) and f"{sec}.{k}" not in ADDED_FIELDS]
    if missing:
        raise RunDirError(f"run file '{p}' is truncated or damaged: {len(missing)} field(s) missing "
                          f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); stgraph writes all of "
                          f"them. Train again (--overwrite)")
    try:
        return config_from_dict(mapping)
    except ConfigError as e:
        raise RunDirError(f"run file '{p}': {e}") from None


def apply_override(cfg: RunConfig, assignment: str) -> RunConfig:
    """``cfg`` with one ``section.field=value`` override applied (value parsed as YAML); a new config,
    ``cfg`` is not changed."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}': expected section.field=value, e.g. train.lr=0.001")
    key, text = assignment.split("=", 1)
    try:
        value = load_yaml(text, what=f"override '{assignment}'")
    except ConfigError as e:
        if "alias" in str(e) or "twice" in str(e):
            raise
        value = text
    parts = key.strip().split(".")
    sections = [f.name for f in dataclasses.fields(RunConfig)]
    if len(parts) < 2 or parts[0] not in sections:
        every = [f"{sec}.{f.name}" for sec in sections for f in dataclasses.fields(getattr(cfg, sec))]
        near = difflib.get_close_matches(key.strip(), every, n=1, cutoff=0.5) or \
            [k for k in every if k.split(".", 1)[1] == parts[-1]][:1]
        hint = f" (did you mean '{near[0]}'?)" if near else \
            (f" (a model argument? write model.params.{parts[0]}=...)" if len(parts) == 1 else "")
        raise ConfigError(f"override '{assignment}': unknown key '{key.strip()}'{hint}; expected "
                          f"section.field=value with section one of {sections}, e.g. train.lr=0.001")
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    if len(parts) >= 3 and parts[0] == "model" and parts[1] == "params":
        return with_fields(cfg, {"model.params": {**cfg.model.params, **nested["model"]["params"]}})
    try:
        return config_from_dict(nested, cfg)
    except ConfigError as e:
        raise ConfigError(f"override '{assignment}': {e}") from None


def config_file(spec: str | Path) -> Path:
    """A ``--config`` value -> its file: a path, or the name of a shipped set-up (``stgt``, ``stgt-large``,
    ``dcrnn``, ...: ``stgraph/configs/<name>.yaml``).

    Raises:
        MissingFileError: neither a file nor a shipped set-up (listing the shipped ones).
    """
    spec = str(spec)
    p = Path(spec)
    if p.is_file():
        return p
    shipped = shipped_config(spec)
    if shipped is not None and "/" not in spec and not spec.endswith((".yaml", ".yml")):
        return shipped
    if "/" in spec or "\\" in spec or spec.endswith((".yaml", ".yml")):
        return p  # a path: load_config names the missing file
    from .errors import MissingFileError
    names = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
    raise MissingFileError(f"--config '{spec}': no such file, and not a shipped set-up; pass a YAML file or one "
                           f"of {names}")


def compose_config(model: str | None = None, config: str | Path | None = None, settings: dict | None = None,
                   overrides=()) -> RunConfig:
    """The config of a run, from layers: the model's shipped defaults (``stgraph/configs/<model>.yaml``)
    <- the ``config`` file (a path or a shipped set-up, :func:`config_file`) <- ``settings`` (dotted
    fields with typed values, e.g. from command-line flags) <- ``overrides`` (``section.field=value``
    text, :func:`apply_override`). ``model`` defaults to the config file's, else ``stgt``. Validated.

    One source of defaults for ``stgraph train`` and ``stgraph bench``."""
    user = load_config(config_file(config)) if config else None
    name = model or (user.model.name if user is not None else RunConfig().model.name)
    shipped = shipped_config(name)
    cfg = load_config(shipped) if shipped is not None else RunConfig()
    if user is not None:
        cfg = load_config(config_file(config), cfg)
    cfg = with_fields(cfg, {**({"model.name": model} if model else {}), **(settings or {})})
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg.validate()


def _dotted(mapping, prefix: str = "") -> set[str]:
    out = set()
    for k, v in (mapping or {}).items() if isinstance(mapping, dict) else ():
        key = f"{prefix}{k}"
        out.add(key)
        if isinstance(v, dict) and key != "model.params":
            out |= _dotted(v, key + ".")
        elif isinstance(v, dict):
            out |= {f"{key}.{p}" for p in v}
    return out


def given_keys(model: str | None = None, config: str | Path | None = None, settings: dict | None = None,
               overrides=()) -> set[str]:
    """The dotted config keys a caller of :func:`compose_config` set itself (the ``config`` file's,
    ``model.name`` when ``model``, ``settings`` and ``overrides``): what a resumed run checks."""
    given = _dotted(load_yaml(config_file(config), what="config file")) if config else set()
    given |= ({"model.name"} if model else set()) | set(settings or {})
    return given | {item.split("=", 1)[0].strip() for item in overrides}
