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


def model_config(name: str) -> Path | None:
    """The shipped paper configuration of a model, if any."""
    return shipped_config(name)


def run_config(spec: BenchSpec, model: str, seed: int):
    """The config of the run of ``model`` at ``seed`` and the dotted keys the bench sets in it (what a
    resumed run checks): the model's paper configuration, the bench's data, epochs (learned models only),
    batch size, device and its overrides (``model:section.field=value`` ones for that model only), in the
    order ``stgraph train`` applies its options (:func:`stgraph.config.compose_config`)."""
    from .config import compose_config, given_keys

    config = model_config(model) if spec.use_paper_configs else None
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
    cfg = compose_config(model, config, settings, overrides)
    # model.probabilistic counts as set: the bench's runs are point forecasts unless an override says otherwise
    return cfg, given_keys(model, config, settings, overrides) | {"model.probabilistic"}


def _evaluate(run) -> dict:
    """Test metrics at every horizon step of a finished :class:`~stgraph.training.run.Run` (written to its
    directory, :meth:`~stgraph.training.run.Run.write_bench_evaluation`)."""
    res = run.evaluate("test", horizons=tuple(range(1, run.data.horizon + 1)))
    res["step_minutes"] = run.data.interval_minutes
    run.write_bench_evaluation(res)
    return res


def _train_and_evaluate(spec: BenchSpec, model: str, seed: int, run_dir: Path, resume: bool) -> dict:
    """What the child process of one (model, seed) does: train (or resume) the run into ``run_dir``, read it
    back and evaluate it. Returns ``{"result": metrics}`` or ``{"error": one line}``; prints nothing (the
    progress bar and warnings go to stderr with ``spec.progress`` only)."""
    import contextlib
    import io
    import os
    import warnings

    from .cli.main import one_line
    from .models.registry import available_models
    from .runtime import tune_malloc
    from .training.run import Run, train

    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    tune_malloc()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            (contextlib.nullcontext() if spec.progress else contextlib.redirect_stderr(io.StringIO())):
        try:
            cfg, given = run_config(spec, model, seed)
            train(cfg, run_dir, resume=resume, overwrite=not resume, given=given if resume else None)
            # a user model's import path comes from the bench's --models, never from the run's files
            run = Run.open(run_dir, model=None if model.lower() in available_models() else model)
            return {"result": _evaluate(run)}
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line, like a failed command
            return {"error": one_line(e)}


def _in_child(spec: BenchSpec, model: str, seed: int, run_dir: Path, resume: bool) -> dict:
    """:func:`_train_and_evaluate` in a fresh process (``multiprocessing`` 'spawn'): its peak memory is its
    own, and a crash loses only this run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_train_and_evaluate, spec, model, seed, run_dir, resume).result()
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


def run_one(spec: BenchSpec, model: str, seed: int) -> dict:
    """Train (or resume, or reuse) one run and evaluate it, in a child process; returns a result row."""
    from .training.layout import RunFiles

    files = RunFiles(spec.out / "runs" / model.replace(":", ".").replace("/", ".") / f"seed{seed}")
    if files.bench_evaluation.is_file() and files.summary.is_file():
        res = read_json(files.bench_evaluation, "bench file")
    else:
        resume = files.last.is_file() and files.config.is_file()
        got = _in_child(spec, model, seed, files.root, resume)
        if "error" in got:
            raise BenchError(f"{model} seed {seed}: training failed ({got['error']}); its run directory is "
                             f"{files.root}; rerun the bench with --progress to see its output")
        res = got["result"]
    summary = read_json(files.summary, "run file")
    return {"model": model, "seed": seed, "result": res, "step_minutes": res.get("step_minutes"), **{k: summary.get(k) for k in
            ("parameters", "epochs", "train_seconds", "peak_rss_mb", "peak_cuda_mb")}}


def run_bench(spec: BenchSpec, log=print) -> list[dict]:
    """Run every (model, seed); returns the per-run rows (failed runs carry an ``error``)."""
    if not spec.models:
        raise ConfigError("--models is empty; expected e.g. last,var,stgt")
    if not spec.dataset and not spec.data:
        raise ConfigError("bench needs --data FILE (with --graph FILE) or --dataset NAME")
    from .models.registry import get_model_class
    for m in spec.models:
        get_model_class(m)  # unknown names fail before any training
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_bench_inputs(spec)
    jobs = [(m, s) for m in spec.models for s in (range(1) if m in DETERMINISTIC else range(spec.seeds))]
    rows = []
    for i, (m, s) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        log(f"[{i}/{len(jobs)}] {m} seed {s} ...")
        try:
            row = run_one(spec, m, s)
        except (StgraphError, OSError, ValueError, RuntimeError) as e:
            log(f"[{i}/{len(jobs)}] {m} seed {s} FAILED: {e}")
            rows.append({"model": m, "seed": s, "error": str(e)})
            continue
        h = row["result"]["horizons"]
        last = str(max(int(k) for k in h))
        log(f"[{i}/{len(jobs)}] {m} seed {s}: test MAE@{last} {h[last]['mae']:.3f}, "
            f"average {row['result']['average']['mae']:.3f} ({time.perf_counter() - t0:.0f} s)")
        rows.append(row)
    return rows


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
        for k in ("epochs", "train_seconds", "peak_rss_mb", "peak_cuda_mb"):
            vals = [r[k] for r in ok if r.get(k) is not None]
            if vals:
                agg[k] = _mean_std(vals)[0]
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


def write_csv(agg: list[dict], path: Path) -> None:
    cols = ["model", "seeds", "failed", "parameters", "epochs"]
    for key in [f"h{h}" for h in HORIZONS] + ["avg"]:
        for met in METRICS:
            cols += [f"{key}_{met}", f"{key}_{met}_std"]
    cols += ["train_seconds", "peak_rss_mb", "peak_cuda_mb", "error"]
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


def markdown(agg: list[dict], published: dict | None = None, published_key: str | None = None,
             step_minutes: float | None = None) -> str:
    """The results table in Markdown; published rows in italics under each model when given.

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
    head += [f"{names[m]} avg" for m in metrics] + ["seeds", "train s", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in agg:
        if "error" in a:
            lines.append(f"| {a['model']} | failed: {a['error'][:80]} |" + " |" * (len(head) - 2))
            continue
        cells = [a["model"], f"{a['parameters']:,}"]
        for key in [f"h{h}" for h in HORIZONS] + ["avg"]:
            cells += [_cell(a, f"{key}_{met}") for met in metrics]
        mem = a.get("peak_cuda_mb") or a.get("peak_rss_mb")
        cells += [str(a["seeds"]), f"{a.get('train_seconds', 0):.0f}", f"{mem:.0f}" if mem else "-"]
        lines.append("| " + " | ".join(cells) + " |")
        pub = (published or {}).get(a["model"], {}).get(published_key or "", None)
        if pub:
            pc = [f"*{a['model']} published*", f"*{(published[a['model']].get('params') or {}).get(published_key, '-')}*"]
            for h in HORIZONS:
                vals = (pub.get("horizons") or {}).get(h) or (pub.get("horizons") or {}).get(str(h)) or {}
                pc += [f"*{vals[m]:.2f}*" if m in vals else "-" for m in metrics]
            av = pub.get("average") or {}
            pc += [f"*{av[m]:.2f}*" if m in av else "-" for m in metrics]
            pc += ["", "", ""]
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_reports(spec: BenchSpec, rows: list[dict], command: str | None = None) -> dict[str, Path]:
    """Write results.csv, results.md, per_step.csv and horizon_mae.png; returns their paths."""
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
    text = [f"# stgraph bench: {spec.dataset or spec.data}", ""]
    if command:
        text += ["Command:", "", "```", command, "```", ""]
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
