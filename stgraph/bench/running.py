"""Running a bench: each job trains (or resumes, or reuses) its run in a child process and evaluates it;
:func:`run_bench` runs them all, ``spec.jobs`` at a time, and logs a line per run.

A run already in the bench folder is reused (or resumed) only when it was made with the full resolved config
the bench asks for now (:func:`stgraph.training.resume.settings_diff`: epochs, null value, every ``--set``,
the seed ...) on the same data and graph (``bench.json``'s fingerprints); otherwise it is trained again from
the start, with a log line naming the settings that differ, so a bench never reports, nor mixes across
seeds, runs made with other settings."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..errors import ConfigError, StgraphError
from ..files import atomic_write, file_fingerprint, read_json
from .spec import BenchJob, BenchSpec, BenchError, plan, run_config, run_dir, setup_of

log = logging.getLogger(__name__)


def _evaluate(run, minutes: float | None = None) -> dict:
    """Test metrics at every horizon step of a finished :class:`~stgraph.training.run.Run` (written to its
    directory, :meth:`~stgraph.training.run.Run.write_bench_evaluation`); with ``minutes``, of the weights
    of its snapshot ``best@<minutes>m.pt``."""
    if minutes is not None:
        from ..training.checkpoint import load_checkpoint
        state = load_checkpoint(run.files.snapshot(minutes), map_location=run.forecaster.device)
        run.model.load_state_dict(state["model"])
    res = run.evaluate("test", horizons=tuple(range(1, run.data.horizon + 1)))
    res["step_minutes"] = run.data.interval_minutes
    transition = transition_mae(run)
    if transition is not None:
        res["transition_mae"] = transition
    run.write_bench_evaluation(res, minutes)
    return res


def transition_mae(run) -> float | None:
    """The test MAE of a run over the readings of the transition regime (:mod:`stgraph.regimes`: the truth
    crosses the congestion threshold within the window), pooled over every horizon step, in data units;
    ``None`` where regimes do not apply (counts and other non-speed targets, :func:`~stgraph.regimes.is_speed_target`)
    or the test split holds no transition reading."""
    from ..regimes import evaluate_groups, is_speed_target

    if not is_speed_target(run.data):
        return None
    groups = evaluate_groups(run.predictions("test"), run.data, "regime", [run.data.horizon])["groups"]
    return groups["transition"]["average"]["mae"] if "transition" in groups else None


def _train_and_evaluate(spec: BenchSpec, job: BenchJob, run_dir: Path, resume: bool) -> dict:
    """What the child process of one run does: train (or resume) the run into ``run_dir``, read it back and
    evaluate it (and its snapshots). Returns ``{"result": metrics, "snapshots": {minutes: metrics}}`` or
    ``{"error": one line}``; prints nothing (the progress bar and warnings go to stderr with
    ``spec.progress`` only)."""
    import contextlib
    import io
    import os
    import warnings

    from ..errors import one_line
    from ..models.registry import available_models
    from ..runtime import tune_malloc
    from ..training.run import Run, train

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
            from ..errors import MissingFileError
            raise MissingFileError(f"{key}='{p}' not found; expected a file")
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
                              f"another out folder, or delete '{spec.out}' to start over")
        return
    if (spec.out / "runs").is_dir() and any((spec.out / "runs").iterdir()):
        raise ConfigError(f"bench folder '{spec.out}' holds runs but no record of their inputs (bench.json); "
                          f"they cannot be checked against data= / graph=. Choose another out folder or delete it")
    atomic_write(record, json.dumps({"inputs": now}, indent=1))


def run_job(spec: BenchSpec, job: BenchJob) -> list[dict]:
    """Train (or resume, or reuse) one run and evaluate it, in a child process; returns its result rows:
    one, or with budgets one per budget it serves (``budget``, ``cpu_seconds``, ``epochs`` and
    ``best_epoch`` of that budget; ``closed_form`` for a fitted model)."""
    from ..training.layout import RunFiles

    files = RunFiles(run_dir(spec, job.model, job.seed, job.budget))
    differs = _settings_differ(spec, job, files)
    evaluations = [files.bench_evaluation] + [files.bench_evaluation_at(m) for m in job.marks]
    if not differs and all(p.is_file() for p in evaluations) and files.summary.is_file():
        res = read_json(files.bench_evaluation, "bench file")
        snaps = {m: read_json(files.bench_evaluation_at(m), "bench file") for m in job.marks}
    else:
        resume = not differs and files.last.is_file() and files.config.is_file()
        got = _in_child(spec, job, files.root, resume)
        if "error" in got:
            raise BenchError(f"{job}: training failed ({got['error']}); its run directory is "
                             f"{files.root}; rerun the bench with progress=True to see its output")
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


def _settings_differ(spec: BenchSpec, job: BenchJob, files) -> bool:
    """Whether the run in ``files.root`` was made with other settings than ``job`` asks for now (logged,
    naming them); ``False`` where there is no run yet."""
    from ..training.resume import settings_diff

    if not files.config.is_file():
        return False
    diff = settings_diff(files.root, run_config(spec, job.model, job.seed, job.budget)[0])
    if diff:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff[:4]) + ("; ..." if len(diff) > 4 else "")
        log.info(f"{job}: the run in '{files.root}' was made with other settings ({what}); training it again")
    return bool(diff)


def run_one(spec: BenchSpec, model: str, seed: int) -> dict:
    """:func:`run_job` of ``model`` at ``seed`` without a budget: its one result row."""
    return run_job(spec, BenchJob(model, seed))[0]


def run_bench(spec: BenchSpec) -> list[dict]:
    """Run every job of :func:`plan` (``spec.jobs`` at a time, each in its own process); returns the result
    rows (failed runs carry an ``error``). Progress lines go to this module's logger at INFO."""
    if not spec.models:
        raise ConfigError("models is empty; expected e.g. ['last', 'var', 'stgt']")
    if not spec.dataset and not spec.data:
        raise ConfigError("a bench needs data= (a file, with graph= a file) or dataset= (a name)")
    if spec.jobs < 1:
        raise ConfigError(f"jobs={spec.jobs}: expected at least 1")
    from ..models.registry import get_model_class
    for m in spec.models:
        get_model_class(setup_of(m)[0])  # unknown names fail before any training
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_bench_inputs(spec)
    jobs = plan(spec)
    if spec.budgets:
        log.info(f"budgets {', '.join(f'{b:g}' for b in sorted(spec.budgets))} min of CPU time per run (training steps "
            f"and validation passes), one torch thread per run (train.threads=1 unless an override sets it), best-validation "
            f"checkpoint evaluated; {spec.jobs} run(s) at a time")

    def one(i: int, job: BenchJob) -> list[dict]:
        t0 = time.perf_counter()
        log.info(f"[{i}/{len(jobs)}] {job} ...")
        try:
            rows = run_job(spec, job)
        except (StgraphError, OSError, ValueError, RuntimeError) as e:
            log.warning(f"[{i}/{len(jobs)}] {job} FAILED: {e}")
            return [{"model": job.model, "seed": job.seed, "error": str(e), **({"budget": b} if job.serves else {})}
                    for b in (job.serves or (None,))]
        for row in rows:
            h = row["result"]["horizons"]
            last = str(max(int(k) for k in h))
            cpu = row.get("cpu_seconds") or 0.0
            at = ("" if "budget" not in row else f" at {row['budget']:g} min (fitted in {cpu:.1f} CPU s)"
                  if row["closed_form"] else f" at {row['budget']:g} min ({cpu:.1f} CPU s, {row['epochs']} epochs)")
            log.info(f"[{i}/{len(jobs)}] {job.model} seed {job.seed}{at}: test MAE@{last} {h[last]['mae']:.3f}, "
                f"average {row['result']['average']['mae']:.3f} ({time.perf_counter() - t0:.0f} s)")
        return rows

    if spec.jobs == 1:
        done = [one(i, job) for i, job in enumerate(jobs, 1)]
    else:
        from concurrent.futures import ThreadPoolExecutor  # each thread waits on its run's own process
        with ThreadPoolExecutor(max_workers=spec.jobs) as pool:
            done = list(pool.map(one, range(1, len(jobs) + 1), jobs))
    return [row for rows in done for row in rows]
