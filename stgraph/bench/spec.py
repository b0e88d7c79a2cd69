"""What a bench compares: its :class:`BenchSpec`, the runs it plans (:class:`BenchJob`, :func:`plan`) and
the folder and config of each run (:func:`run_dir`, :func:`run_config`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import shipped_config
from ..errors import StgraphError

PUBLISHED = Path(__file__).resolve().parents[2] / "benchmarks" / "published.yaml"
DETERMINISTIC = ("last", "ha", "var")  # fitted in closed form: one seed says it all
METRICS = ("mae", "rmse", "mape")
HORIZONS = (3, 6, 12)
#: train.epochs of a budget run unless --epochs or --set say otherwise: the budget stops it first
BUDGET_EPOCHS = 10_000


class BenchError(StgraphError):
    """One or more runs of a bench failed."""


@dataclass
class BenchSpec:
    """What to compare and how.

    ``overrides`` are ``section.field=value`` strings applied to every run, or
    ``model:section.field=value`` applied to that model's runs only.
    """

    out: Path
    models: list[str]
    data: str | None = None
    graph: str | None = None
    dataset: str | None = None
    root: str | None = None
    epochs: int | None = None
    seeds: int = 3
    batch_size: int | None = None
    device: str | None = None
    overrides: list[str] = field(default_factory=list)
    use_paper_configs: bool = True
    compare_published: bool = False
    published_key: str | None = None
    published_file: Path = PUBLISHED
    progress: bool = False
    budgets: list[float] = field(default_factory=list)  #: CPU minutes per run (empty: epochs decide)
    jobs: int = 1                                       #: runs side by side, each in its own process
    steps: list[int] = field(default_factory=list)      #: horizon steps of the tables (empty: from the horizon)


def model_config(name: str) -> Path | None:
    """The shipped paper configuration of a model, if any."""
    return shipped_config(name)


def setup_of(entry: str) -> tuple[str, Path | None]:
    """A ``--models`` entry -> ``(model, config file)``: a registered model or an import path with its
    shipped paper configuration, or a shipped set-up that is not a model's name (``stgt-classic``,
    ``stgt-large``: its model and its file), so two set-ups of one model compare in one bench."""
    from ..models.registry import available_models

    if entry.lower() not in available_models() and ":" not in entry and "." not in entry:
        path = shipped_config(entry)
        if path is not None:
            from ..config import load_config
            return load_config(path).model.name, path
    return entry, model_config(entry)


def run_dir(spec: BenchSpec, model: str, seed: int, budget: float | None = None) -> Path:
    """The run folder of ``model`` at ``seed``: ``OUT/runs/<model>/seed<k>``, or for a run trained with a
    CPU budget of ``budget`` minutes ``OUT/runs/<model>/budget<m>m/seed<k>`` (the one place these are spelled)."""
    from ..training.layout import minutes_text

    folder = spec.out / "runs" / model.replace(":", ".").replace("/", ".")
    if budget is not None:
        folder = folder / f"budget{minutes_text(budget)}m"
    return folder / f"seed{seed}"


def run_config(spec: BenchSpec, model: str, seed: int, budget: float | None = None):
    """The config of the run of ``model`` at ``seed`` and the dotted keys the bench sets in it (what a
    resumed run checks): the model's paper configuration, the bench's data, epochs (learned models only),
    batch size, device and its overrides (``model:section.field=value`` ones for that model only), in the
    order ``stgraph train`` applies its options (:func:`stgraph.config.compose_config`). With ``budget``
    (CPU minutes, learned models) or any :attr:`BenchSpec.budgets`, the budget settings of the module
    docstring come before the overrides, so ``--set`` changes them."""
    from ..config import compose_config, given_keys

    name, config = setup_of(model)
    config = config if spec.use_paper_configs or name != model else None
    settings: dict = {}
    overrides = []
    if spec.dataset:
        settings["data.dataset"] = spec.dataset
        overrides += [f"data.root={spec.root}"] if spec.root else []
    else:
        settings["data.path"] = str(spec.data)
        if spec.graph:
            settings["data.graph"] = str(spec.graph)
    if spec.epochs is not None and model not in DETERMINISTIC:
        settings["train.epochs"] = spec.epochs
    if spec.budgets:
        settings["train.threads"] = 1  # one torch thread per run: CPU budgets compare like with like
    if budget is not None and model not in DETERMINISTIC:
        # budget_stop 'step': a budget binds even where one epoch costs more than it (GMAN, STAEformer)
        settings.update({"train.budget_minutes": float(budget), "train.patience": 0, "train.budget_stop": "step",
                         "train.epochs": spec.epochs if spec.epochs is not None else BUDGET_EPOCHS})
    if spec.batch_size is not None:
        settings["train.batch_size"] = spec.batch_size
    settings["train.seed"] = seed
    if spec.device:
        settings["train.device"] = spec.device
    if not spec.progress:
        settings["train.progress"] = False
    for item in spec.overrides:
        target, sep, rest = item.partition(":")
        if sep and "=" not in target:  # 'stgt:model.params.hidden=32' applies to stgt only
            if target.lower() == model.lower():
                overrides.append(rest)
        else:
            overrides.append(item)
    cfg = compose_config(name, config, settings, overrides)
    # model.probabilistic counts as set: the bench's runs are point forecasts unless an override says otherwise
    return cfg, given_keys(name, config, settings, overrides) | {"model.probabilistic"}


@dataclass(frozen=True)
class BenchJob:
    """One run of a bench: ``model`` at ``seed``, trained with ``budget`` CPU minutes (``None``: its epochs
    decide, or a closed-form model), and the budgets it ``serves``: its own from ``best.pt``, each smaller
    one from its snapshot ``best@<m>m.pt``; a closed-form model serves every budget with its one fit."""

    model: str
    seed: int
    budget: float | None = None
    serves: tuple = ()

    @property
    def marks(self) -> list[float]:
        """The smaller budgets this run keeps snapshots for."""
        return [b for b in self.serves if self.budget is not None and b < self.budget]

    def __str__(self) -> str:
        text = f"{self.model} seed {self.seed}"
        if self.budget is not None:
            text += f" budget {self.budget:g} min"
            if self.marks:
                text += f" (and {', '.join(f'{m:g}' for m in self.marks)} min from its snapshots)"
        return text


def plan(spec: BenchSpec) -> list[BenchJob]:
    """The runs of the bench: every (model, seed), one seed of a closed-form model; with budgets, one run
    per budget of a model whose schedule follows the budget, one run with the largest budget serving all
    of them otherwise (:func:`stgraph.training.schedule.snapshots_stand_for_budgets`)."""
    from ..training.schedule import snapshots_stand_for_budgets

    if not spec.budgets:
        return [BenchJob(m, s) for m in spec.models for s in range(1 if m in DETERMINISTIC else spec.seeds)]
    budgets = tuple(sorted(set(float(b) for b in spec.budgets)))
    jobs = []
    for m in spec.models:
        if m in DETERMINISTIC:
            jobs.append(BenchJob(m, 0, None, budgets))
            continue
        shared = snapshots_stand_for_budgets(run_config(spec, m, 0, budgets[-1])[0].train)
        for s in range(spec.seeds):
            jobs += [BenchJob(m, s, budgets[-1], budgets)] if shared else [BenchJob(m, s, b, (b,)) for b in budgets]
    return jobs
