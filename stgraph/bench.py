"""``stgraph bench``: train and evaluate many models under one protocol, side by side.

Every model sees the same series, graph, windows, split, scaler and masked
metrics; each (model, seed) pair trains in its own process, started with
``multiprocessing``'s 'spawn' and calling the library (its peak memory is its own, and a crash loses
only that run) into ``OUT/runs/<model>/seed<k>``,
from the model's paper configuration in ``stgraph/configs/<model>.yaml`` when
there is one. A bench that stops part-way picks up where it stopped when run
again with the same ``--out``: finished runs are reused, interrupted ones resume.

Outputs in ``OUT``:

* ``results.csv``: one row per model, mean and standard deviation over seeds of
  MAE / RMSE / MAPE at horizons 3, 6, 12 and averaged, parameters, training
  seconds and peak memory;
* ``results.md``: the same as a Markdown table (``mean ± std``), with the
  published figures beside them under ``--compare-published``;
* ``per_step.csv``: every run's metrics at every horizon step;
* ``horizon_mae.png``: test MAE against horizon for all models.

With budgets (``--budget 1m,3m,10m``, :attr:`BenchSpec.budgets`) every learned model is trained for the
same *compute* instead of the same epochs: each run gets ``train.budget_minutes`` of CPU time
(:mod:`stgraph.training.trainer`), ``train.epochs`` :data:`BUDGET_EPOCHS` (unless ``--epochs`` / ``--set``
say otherwise), ``train.patience`` 0 unless set (the budget is the stopping rule), ``train.budget_stop``
'step' (the run stops at the first step past its budget, after validating what it has: a budget binds
even where one epoch costs more than it) and one torch thread (``train.threads=1`` unless set), and its
best-validation checkpoint is evaluated. A model whose schedule
does not follow the budget (``multistep`` / ``none``) trains once, with the
largest budget, and serves the smaller ones through its snapshots ``best@<m>m.pt``; a ``cosine`` model
trains once per budget. Closed-form models (last, ha, var) are fitted once and stand in every budget's
rows at their fitting time. Run folders: :func:`run_dir`. Outputs in ``OUT``: ``budget.csv``,
``budget.md`` (a table per budget, then the best model per budget and horizon) and ``budget_mae.png``
(test MAE at the longest horizon and averaged against the budget).
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, StgraphError
from .files import atomic_open, atomic_path, atomic_write, file_fingerprint, read_json

from .config import shipped_config
from .io.series import duration_unit, horizon_text
PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "published.yaml"
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


def model_config(name: str) -> Path | None:
    """The shipped paper configuration of a model, if any."""
    return shipped_config(name)


def setup_of(entry: str) -> tuple[str, Path | None]:
    """A ``--models`` entry -> ``(model, config file)``: a registered model or an import path with its
    shipped paper configuration, or a shipped set-up that is not a model's name (``stgt-classic``,
    ``stgt-large``: its model and its file), so two set-ups of one model compare in one bench."""
    from .models.registry import available_models

    if entry.lower() not in available_models() and ":" not in entry and "." not in entry:
        path = shipped_config(entry)
        if path is not None:
            from .config import load_config
            return load_config(path).model.name, path
    return entry, model_config(entry)


def run_dir(spec: BenchSpec, model: str, seed: int, budget: float | None = None) -> Path:
    """The run folder of ``model`` at ``seed``: ``OUT/runs/<model>/seed<k>``, or for a run trained with a
    CPU budget of ``budget`` minutes ``OUT/runs/<model>/budget<m>m/seed<k>`` (the one place these are spelled)."""
    from .training.layout import minutes_text

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
    from .config import compose_config, given_keys

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
    of them otherwise (:func:`stgraph.training.trainer.snapshots_stand_for_budgets`)."""
    from .training.trainer import snapshots_stand_for_budgets

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


def _evaluate(run, minutes: float | None = None) -> dict:
    """Test metrics at every horizon step of a finished :class:`~stgraph.training.run.Run` (written to its
    directory, :meth:`~stgraph.training.run.Run.write_bench_evaluation`); with ``minutes``, of the weights
    of its snapshot ``best@<minutes>m.pt``."""
    if minutes is not None:
        from .training.checkpoint import load_checkpoint
        run.model.load_state_dict(load_checkpoint(run.files.snapshot(minutes), map_location=run.device)["model"])
    res = run.evaluate("test", horizons=tuple(range(1, run.data.horizon + 1)))
    res["step_minutes"] = run.data.interval_minutes
    run.write_bench_evaluation(res, minutes)
    return res


def _train_and_evaluate(spec: BenchSpec, job: BenchJob, run_dir: Path, resume: bool) -> dict:
    """What the child process of one run does: train (or resume) the run into ``run_dir``, read it back and
    evaluate it (and its snapshots). Returns ``{"result": metrics, "snapshots": {minutes: metrics}}`` or
    ``{"error": one line}``; prints nothing (the progress bar and warnings go to stderr with
    ``spec.progress`` only)."""
    import contextlib
    import io
    import os
    import warnings

    from .errors import one_line
    from .models.registry import available_models
    from .runtime import tune_malloc
    from .training.run import Run, train

    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    tune_malloc()
    model = job.model
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            (contextlib.nullcontext() if spec.progress else contextlib.redirect_stderr(io.StringIO())):
        try:
            cfg, given = run_config(spec, model, job.seed, job.budget)
            train(cfg, run_dir, resume=resume, overwrite=not resume, given=given if resume else None,
                  snapshot_marks=job.marks or None)
            # a user model's import path comes from the bench's --models, never from the run's files
            name = setup_of(model)[0]
            run = Run.open(run_dir, model=None if name.lower() in available_models() else name)
            result = _evaluate(run)
            return {"result": result, "snapshots": {m: _evaluate(run, m) for m in job.marks}}
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line, like a failed command
            return {"error": one_line(e)}


def _in_child(spec: BenchSpec, job: BenchJob, run_dir: Path, resume: bool) -> dict:
    """:func:`_train_and_evaluate` in a fresh process (``multiprocessing`` 'spawn'): its peak memory (and
    CPU time) is its own, and a crash loses only this run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_train_and_evaluate, spec, job, run_dir, resume).result()
        except BrokenProcessPool:
            return {"error": "the process training it died (killed, or out of memory)"}


def _inputs_fingerprint(spec: BenchSpec) -> dict:
    """What the bench's results belong to: the data and graph files' fingerprints (or the dataset)."""
    if spec.dataset:
        return {"dataset": spec.dataset, "root": str(Path(spec.root).resolve()) if spec.root else None}
    out = {}
    for key in ("data", "graph"):
        p = getattr(spec, key)
        if p is None:
            out[key] = None
            continue
        if not Path(p).is_file():
            from .errors import MissingFileError
            raise MissingFileError(f"--{key} '{p}' not found; expected a file")
        out[key] = file_fingerprint(p)
    return out


def _check_bench_inputs(spec: BenchSpec) -> None:
    """A bench folder holds the results of one data set and graph: a rerun with others is refused."""
    record = spec.out / "bench.json"
    now = _inputs_fingerprint(spec)
    if record.is_file():
        before = read_json(record, "bench file")
        before = before.get("inputs") if isinstance(before, dict) else None
        if before != now:
            what = "; ".join(f"{k}: {(before or {}).get(k)!r} there, {now.get(k)!r} now"
                             for k in sorted(set(before or {}) | set(now)) if (before or {}).get(k) != now.get(k))
            raise ConfigError(f"bench folder '{spec.out}' holds results for other inputs ({what}; fingerprints of "
                              f"the files' bytes); its runs would be reused as if they belonged to these. Choose "
                              f"another --out, or delete '{spec.out}' to start over")
        return
    if (spec.out / "runs").is_dir() and any((spec.out / "runs").iterdir()):
        raise ConfigError(f"bench folder '{spec.out}' holds runs but no record of their inputs (bench.json); "
                          f"they cannot be checked against --data/--graph. Choose another --out or delete it")
    atomic_write(record, json.dumps({"inputs": now}, indent=1))


def run_job(spec: BenchSpec, job: BenchJob) -> list[dict]:
    """Train (or resume, or reuse) one run and evaluate it, in a child process; returns its result rows:
    one, or with budgets one per budget it serves (``budget``, ``cpu_seconds``, ``epochs`` and
    ``best_epoch`` of that budget; ``closed_form`` for a fitted model)."""
    from .training.layout import RunFiles

    files = RunFiles(run_dir(spec, job.model, job.seed, job.budget))
    evaluations = [files.bench_evaluation] + [files.bench_evaluation_at(m) for m in job.marks]
    if all(p.is_file() for p in evaluations) and files.summary.is_file():
        res = read_json(files.bench_evaluation, "bench file")
        snaps = {m: read_json(files.bench_evaluation_at(m), "bench file") for m in job.marks}
    else:
        resume = files.last.is_file() and files.config.is_file()
        got = _in_child(spec, job, files.root, resume)
        if "error" in got:
            raise BenchError(f"{job}: training failed ({got['error']}); its run directory is "
                             f"{files.root}; rerun the bench with --progress to see its output")
        res, snaps = got["result"], got["snapshots"]
    summary = read_json(files.summary, "run file")
    row = {"model": job.model, "seed": job.seed, "result": res, "step_minutes": res.get("step_minutes"),
           **{k: summary.get(k) for k in ("parameters", "epochs", "best_epoch", "train_seconds", "cpu_seconds",
                                          "peak_rss_mb", "peak_cuda_mb")}}
    if not job.serves:
        return [row]
    marks = {float(s["minutes"]): s for s in summary.get("snapshots") or []}
    rows = []
    for b in job.serves:
        at = {"budget": b, "closed_form": job.budget is None, "run_budget": job.budget}
        if b in snaps:  # a smaller budget, from the snapshot the run kept when its CPU time crossed b
            snap = marks.get(b) or {}
            at.update(result=snaps[b], cpu_seconds=snap.get("cpu_seconds"), epochs=snap.get("epoch"),
                      best_epoch=snap.get("best_epoch"))
        rows.append({**row, **at})
    return rows


def run_one(spec: BenchSpec, model: str, seed: int) -> dict:
    """:func:`run_job` of ``model`` at ``seed`` without a budget: its one result row."""
    return run_job(spec, BenchJob(model, seed))[0]


def run_bench(spec: BenchSpec, log=print) -> list[dict]:
    """Run every job of :func:`plan` (``spec.jobs`` at a time, each in its own process); returns the result
    rows (failed runs carry an ``error``)."""
    if not spec.models:
        raise ConfigError("--models is empty; expected e.g. last,var,stgt")
    if not spec.dataset and not spec.data:
        raise ConfigError("bench needs --data FILE (with --graph FILE) or --dataset NAME")
    if spec.jobs < 1:
        raise ConfigError(f"--jobs {spec.jobs}: expected at least 1")
    from .models.registry import get_model_class
    for m in spec.models:
        get_model_class(setup_of(m)[0])  # unknown names fail before any training
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_bench_inputs(spec)
    jobs = plan(spec)
    if spec.budgets:
        log(f"budgets {', '.join(f'{b:g}' for b in sorted(spec.budgets))} min of CPU time per run (training steps "
            f"and validation passes), one torch thread per run (train.threads=1 unless --set), best-validation "
            f"checkpoint evaluated; {spec.jobs} run(s) at a time")

    def one(i: int, job: BenchJob) -> list[dict]:
        t0 = time.perf_counter()
        log(f"[{i}/{len(jobs)}] {job} ...")
        try:
            rows = run_job(spec, job)
        except (StgraphError, OSError, ValueError, RuntimeError) as e:
            log(f"[{i}/{len(jobs)}] {job} FAILED: {e}")
            return [{"model": job.model, "seed": job.seed, "error": str(e), **({"budget": b} if job.serves else {})}
                    for b in (job.serves or (None,))]
        for row in rows:
            h = row["result"]["horizons"]
            last = str(max(int(k) for k in h))
            cpu = row.get("cpu_seconds") or 0.0
            at = ("" if "budget" not in row else f" at {row['budget']:g} min (fitted in {cpu:.1f} CPU s)"
                  if row["closed_form"] else f" at {row['budget']:g} min ({cpu:.1f} CPU s, {row['epochs']} epochs)")
            log(f"[{i}/{len(jobs)}] {job.model} seed {job.seed}{at}: test MAE@{last} {h[last]['mae']:.3f}, "
                f"average {row['result']['average']['mae']:.3f} ({time.perf_counter() - t0:.0f} s)")
        return rows

    if spec.jobs == 1:
        done = [one(i, job) for i, job in enumerate(jobs, 1)]
    else:
        from concurrent.futures import ThreadPoolExecutor  # each thread waits on its run's own process
        with ThreadPoolExecutor(max_workers=spec.jobs) as pool:
            done = list(pool.map(one, range(1, len(jobs) + 1), jobs))
    return [row for rows in done for row in rows]


# ----------------------------------------------------------------------------------- tables
def _mean_std(vals: list[float]) -> tuple[float, float]:
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds per model, in the order the models were given."""
    out = []
    for m in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == m and "error" not in r]
        failed = [r for r in rows if r["model"] == m and "error" in r]
        agg: dict = {"model": m, "seeds": len(ok), "failed": len(failed)}
        if not ok:
            agg["error"] = failed[0]["error"]
            out.append(agg)
            continue
        agg["parameters"] = ok[0]["parameters"]
        notes = [r["result"]["mape_note"] for r in ok if r["result"].get("mape_note")]
        if notes:  # MAPE means nothing on these true values (zeros, negatives): say so, do not print it
            agg["mape_note"] = notes[0]
        for key in [str(h) for h in HORIZONS] + ["average"]:
            for met in METRICS:
                vals = [(r["result"]["average"] if key == "average" else r["result"]["horizons"].get(key, {})).get(met)
                        for r in ok]
                if any(v is None for v in vals):
                    continue
                agg[f"{'avg' if key == 'average' else 'h' + key}_{met}"], \
                    agg[f"{'avg' if key == 'average' else 'h' + key}_{met}_std"] = _mean_std(vals)
        for k in ("epochs", "train_seconds", "cpu_seconds", "peak_rss_mb", "peak_cuda_mb"):
            vals = [r[k] for r in ok if r.get(k) is not None]
            if vals:
                agg[k] = _mean_std(vals)[0]
        for k in ("budget", "closed_form"):  # the same in every row of a budget's model
            if k in ok[0]:
                agg[k] = ok[0][k]
        out.append(agg)
    return out


def load_published(path: Path = PUBLISHED) -> dict:
    from .config import load_yaml

    if not Path(path).is_file():
        raise ConfigError(f"published results file '{path}' not found; it ships in the repository's benchmarks/")
    data = load_yaml(Path(path), what="published results file") or {}
    if not isinstance(data.get("models"), dict):
        raise ConfigError(f"'{path}': expected a top-level 'models:' mapping of model name -> dataset -> metrics")
    return data["models"]


RESULTS_COLUMNS = (("model", "seeds", "failed", "parameters", "epochs"),
                   ("train_seconds", "peak_rss_mb", "peak_cuda_mb", "error"))
BUDGET_COLUMNS = (("model", "budget_minutes", "seeds", "failed", "cpu_seconds", "epochs"),
                  ("closed_form", "parameters", "error"))


def write_csv(agg: list[dict], path: Path, columns=RESULTS_COLUMNS) -> None:
    """The aggregated rows as CSV: ``columns`` = (the columns before the metrics, those after them)."""
    first, after = columns
    cols = list(first)
    for key in [f"h{h}" for h in HORIZONS] + ["avg"]:
        for met in METRICS:
            cols += [f"{key}_{met}", f"{key}_{met}_std"]
    cols += list(after)
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for a in agg:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in a.items()})


def _cell(a: dict, key: str) -> str:
    if key not in a:
        return "-"
    std = a.get(key + "_std", 0.0)
    return f"{a[key]:.2f} ± {std:.2f}" if a.get("seeds", 1) > 1 else f"{a[key]:.2f}"


def _peak_mb(a: dict) -> str:
    mem = a.get("peak_cuda_mb") or a.get("peak_rss_mb")
    return f"{mem:.0f}" if mem else "-"


def _number(key: str, digits: int = 0):
    return lambda a: "-" if a.get(key) is None else f"{a[key]:.{digits}f}"


#: the columns after the metrics: (header, cell of an aggregated row)
RESULTS_TAIL = (("seeds", _number("seeds")), ("train s", lambda a: f"{a.get('train_seconds', 0):.0f}"),
                ("peak MB", _peak_mb))
BUDGET_TAIL = (("seeds", _number("seeds")), ("CPU s", _number("cpu_seconds", 1)),
               ("epochs", lambda a: "-" if a.get("closed_form") or a.get("epochs") is None else f"{a['epochs']:.3g}"))


def markdown(agg: list[dict], published: dict | None = None, published_key: str | None = None,
             step_minutes: float | None = None, tail=RESULTS_TAIL) -> str:
    """The results table in Markdown; published rows in italics under each model when given. ``tail``: the
    columns after the metrics, ``(header, cell function of an aggregated row)`` each.

    When MAPE means nothing for the data (a row carries ``mape_note``: counts with zeros, centred
    series; :func:`stgraph.metrics.mape_note`) its columns are left out and the note follows the table."""
    def label(h):
        return horizon_text(h, step_minutes)
    note = next((a["mape_note"] for a in agg if a.get("mape_note")), None)
    metrics = tuple(m for m in METRICS if not (note and m == "mape"))
    names = {"mae": "MAE", "rmse": "RMSE", "mape": "MAPE %"}
    head = ["model", "params"]
    for h in HORIZONS:
        head += [f"{names[m]} {label(h)}" for m in metrics]
    head += [f"{names[m]} avg" for m in metrics] + [h for h, _ in tail]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in agg:
        if "error" in a:
            lines.append(f"| {a['model']} | failed: {a['error'][:80]} |" + " |" * (len(head) - 2))
            continue
        cells = [a["model"], f"{a['parameters']:,}"]
        for key in [f"h{h}" for h in HORIZONS] + ["avg"]:
            cells += [_cell(a, f"{key}_{met}") for met in metrics]
        cells += [cell(a) for _, cell in tail]
        lines.append("| " + " | ".join(cells) + " |")
        pub = (published or {}).get(a["model"], {}).get(published_key or "", None)
        if pub:
            pc = [f"*{a['model']} published*", f"*{(published[a['model']].get('params') or {}).get(published_key, '-')}*"]
            for h in HORIZONS:
                vals = (pub.get("horizons") or {}).get(h) or (pub.get("horizons") or {}).get(str(h)) or {}
                pc += [f"*{vals[m]:.2f}*" if m in vals else "-" for m in metrics]
            av = pub.get("average") or {}
            pc += [f"*{av[m]:.2f}*" if m in av else "-" for m in metrics]
            pc += [""] * len(tail)
            lines.append("| " + " | ".join(pc) + " |")
            if pub.get("source"):
                lines.append("| " + f"*source: {pub['source']}*" + " |" * (len(head) - 1))
    if note:
        lines += ["", f"{note}."]
    return "\n".join(lines)


def write_per_step(rows: list[dict], path: Path) -> None:
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "seed", "step", "mae", "rmse", "mape"])
        for r in rows:
            if "error" in r:
                continue
            for k, v in sorted(r["result"]["horizons"].items(), key=lambda kv: int(kv[0])):
                w.writerow([r["model"], r["seed"], int(k)] + [round(v[m], 5) for m in METRICS])


def plot_horizons(rows: list[dict], path: Path, step_minutes: float | None = None) -> None:
    """Test MAE against horizon, one line per model (mean over seeds, band = min..max)."""
    import numpy as np

    plt = _pyplot()
    unit, unit_seconds = duration_unit(step_minutes * 60) if step_minutes else ("steps", 1.0)
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == m and "error" not in r]
        if not ok:
            continue
        steps = sorted(int(k) for k in ok[0]["result"]["horizons"])
        mat = np.array([[r["result"]["horizons"][str(s)]["mae"] for s in steps] for r in ok])
        x = np.array(steps) * (step_minutes * 60 / unit_seconds if step_minutes else 1)
        ax.plot(x, mat.mean(0), marker="o", ms=3, label=m)
        if len(ok) > 1:
            ax.fill_between(x, mat.min(0), mat.max(0), alpha=0.15)
    ax.set_xlabel(f"horizon ({unit})")
    ax.set_ylabel("test MAE")
    ax.set_title("forecast error against horizon")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_png(fig, path)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save_png(fig, path: Path) -> None:
    """Lay ``fig`` out, write it to ``path`` as PNG (atomically) and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


def write_reports(spec: BenchSpec, rows: list[dict], command: str | None = None) -> dict[str, Path]:
    """Write results.csv, results.md, per_step.csv and horizon_mae.png (with budgets: budget.csv, budget.md
    and budget_mae.png, :func:`write_budget_reports`); returns their paths."""
    if spec.budgets:
        return write_budget_reports(spec, rows, command)
    agg = aggregate(rows)
    out = spec.out
    step = _step_minutes(rows)
    paths = {"csv": out / "results.csv", "md": out / "results.md", "per_step": out / "per_step.csv",
             "plot": out / "horizon_mae.png"}
    write_csv(agg, paths["csv"])
    write_per_step(rows, paths["per_step"])
    published = None
    key = spec.published_key or (spec.dataset.lower() if spec.dataset else "metr-la")
    if spec.compare_published:
        published = load_published(spec.published_file)
    text = _md_head(f"# stgraph bench: {spec.dataset or spec.data}", command)
    text += [markdown(agg, published, key, step), ""]
    if published is not None:
        text += [f"Rows in italics: published test results on **{key}** (full dataset, papers' training budgets) "
                 f"from `benchmarks/published.yaml`; measured rows use the data and epochs above. Their parameter "
                 f"counts come from the same file: where no paper states one it holds a count of the official "
                 f"code (marked `published: false` there).", ""]
    atomic_write(paths["md"], "\n".join(text))
    if any("error" not in r for r in rows):
        plot_horizons(rows, paths["plot"], step)
    return paths


def _step_minutes(rows: list[dict]) -> float | None:
    return next((r["step_minutes"] for r in rows if r.get("step_minutes")), None)


def _md_head(title: str, command: str | None) -> list[str]:
    text = [title, ""]
    if command:
        text += ["Command:", "", "```", command, "```", ""]
    return text


# ----------------------------------------------------------------------------------- budgets
BUDGET_NOTE = ("Budgets are CPU time (`time.process_time()` of each run's own process: its training steps and "
               "validation passes, not its setup or the test evaluation), one torch thread per run "
               "(`train.threads=1` unless set); each learned model is evaluated at its best-validation "
               "checkpoint. Closed-form models are fitted once and stand in every budget at their fitting time.")


def budget_aggregates(rows: list[dict]) -> list[tuple[float, list[dict]]]:
    """``(budget, aggregate(rows of that budget))`` per budget, ascending; each aggregated row carries
    ``budget_minutes``."""
    out = []
    for b in sorted({r["budget"] for r in rows if r.get("budget") is not None}):
        agg = aggregate([r for r in rows if r.get("budget") == b])
        out.append((b, [{**a, "budget_minutes": b} for a in agg]))
    return out


def best_per_budget(aggs: list[tuple[float, list[dict]]], step_minutes: float | None = None) -> str:
    """Markdown: per budget (rows) and horizon (columns), the model with the lowest mean test MAE."""
    keys = [f"h{h}" for h in HORIZONS] + ["avg"]
    head = ["budget"] + [horizon_text(h, step_minutes) for h in HORIZONS] + ["average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b, agg in aggs:
        cells = [f"{b:g} min"]
        for key in keys:
            have = [a for a in agg if f"{key}_mae" in a]
            best = min(have, key=lambda a: a[f"{key}_mae"]) if have else None
            cells.append(f"{best['model']} ({best[f'{key}_mae']:.2f})" if best else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mae(result: dict, key: str) -> float:
    return result["average"]["mae"] if key == "average" else result["horizons"][key]["mae"]


def plot_budgets(rows: list[dict], path: Path, step_minutes: float | None = None) -> None:
    """Two panels, test MAE at the longest horizon and averaged against the budget (CPU minutes): a line
    per learned model (mean over seeds), a dashed horizontal line per closed-form model."""
    plt = _pyplot()
    ok = [r for r in rows if "error" not in r and r.get("budget") is not None]
    last = str(max(int(k) for r in ok for k in r["result"]["horizons"]))
    budgets = sorted({r["budget"] for r in ok})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    color = plt.get_cmap("tab20")  # 20 distinct colours: the default cycle repeats after 10 models
    for ax, key, title in ((axes[0], last, f"test MAE at {horizon_text(int(last), step_minutes)}"),
                           (axes[1], "average", "test MAE averaged over the horizon")):
        for i, m in enumerate(dict.fromkeys(r["model"] for r in ok)):
            mine = [r for r in ok if r["model"] == m]
            if mine[0].get("closed_form"):
                fit = mine[0].get("cpu_seconds")
                ax.axhline(_mae(mine[0]["result"], key), ls="--", lw=1.2, color=color(i % 20),
                           label=f"{m} (closed form" + (f", fitted in {fit:.1f} CPU s)" if fit is not None else ")"))
                continue
            xs = [b for b in budgets if any(r["budget"] == b for r in mine)]
            ys = [sum(_mae(r["result"], key) for r in mine if r["budget"] == b) /
                  sum(1 for r in mine if r["budget"] == b) for b in xs]
            ax.plot(xs, ys, marker="o", ms=4, color=color(i % 20), label=m)
        if len(budgets) > 1 and budgets[-1] >= 10 * budgets[0]:
            ax.set_xscale("log")
        ax.set_xlabel("training budget (CPU minutes)")
        ax.set_ylabel("test MAE")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save_png(fig, path)


def write_budget_reports(spec: BenchSpec, rows: list[dict], command: str | None = None) -> dict[str, Path]:
    """Write budget.csv (a row per budget and model, mean over seeds), budget.md (a table per budget, then
    the best model per budget and horizon) and budget_mae.png; returns their paths."""
    out = spec.out
    step = _step_minutes(rows)
    paths = {"csv": out / "budget.csv", "md": out / "budget.md", "plot": out / "budget_mae.png"}
    aggs = budget_aggregates(rows)
    write_csv([a for _, agg in aggs for a in agg], paths["csv"], BUDGET_COLUMNS)
    text = _md_head(f"# stgraph bench at equal training budgets: {spec.dataset or spec.data}", command)
    text += [BUDGET_NOTE]
    shared = sorted({(r["model"], r["run_budget"]) for r in rows
                     if "error" not in r and r.get("run_budget") is not None and r["run_budget"] != r["budget"]})
    if shared:
        text += ["", "Runs that served several budgets (their schedule does not follow the budget): "
                 + "; ".join(f"{m}, one run of {b:g} min, the smaller budgets from its snapshots of the best "
                             f"checkpoint when its CPU time crossed them" for m, b in shared) + "."]
    text += [""]
    for b, agg in aggs:
        text += [f"## budget {b:g} CPU min", "", markdown(agg, step_minutes=step, tail=BUDGET_TAIL), ""]
    text += ["## best model per budget and horizon (test MAE)", "", best_per_budget(aggs, step), ""]
    atomic_write(paths["md"], "\n".join(text))
    if any("error" not in r for r in rows):
        plot_budgets(rows, paths["plot"], step)
    return paths
