"""Text reports beside the series: does stgt forecast incidents and events better when it reads the reports?

The synthetic network with incidents and text reports (``stgraph data synth --incidents --reports``:
:func:`stgraph.synth.events.write_events` with ``reports=True``; ``--incident-rate`` incidents per sensor per
day, so the test split holds enough of them) is trained with stgt (width 16, one encoder and one decoder
block) for a fixed number of epochs, the same seed, once per variant:

* ``none``: no covariate file;
* ``flags``: ``incidents.csv`` (0/1 per sensor, observed: held at the last input step);
* ``flags + text``: ``incidents.csv`` and ``reports.csv`` (hashed n-gram encoder, its own gate);
* ``text``: ``reports.csv`` alone;
* ``flags + shuffled text``: ``incidents.csv`` and the reports with their texts shuffled among the rows
  (same times and places, words of another report): the control that words, not timing, carry the gain.

and two ceilings, run only when named in ``--variants`` (:mod:`benchmarks.cross_modal_oracles`):

* ``flags + text + parsed``: also what the words of each incident report say, read perfectly, as numbers (the
  middle of its grade's severity band per hop, the minutes left until its stated end), placed as the reports are:
  how much of what the words carry the encoder reads;
* ``flags + text + truth``: also the share of the speed the incidents started by each step will take 15, 30 and
  60 minutes later, at every sensor (the simulation's own queues): the most any input observed by the forecast
  origin could tell, whatever its words.

Each is scored with the weights of its best validation epoch (what ``train`` returns; before 82d4e86 the last
epoch's) on the test split (MAE at horizons 3 / 6 / 12 = 15 / 30 / 60 min) on all forecast steps, on the
affected steps (:func:`stgraph.synth.reports.affected_mask`: an incident's sensor and the sensors upstream
within 2 hops from its start to 30 minutes after its end, and an event's crowds), split into foreseeable (the
incident started, or the event's notice published, by the forecast origin) and unforeseeable ones, and on the
other steps.
Each variant trains in its own fresh process (``--jobs`` of them at once), which reports its training time and peak
resident memory.

Usage (one command; about 10 minutes a seed on one core; pool tables of other seeds with ``pool_cross_modal.py``):
``python benchmarks/bench_cross_modal.py [--sensors 16 --days 20 --epochs 10 --seeds 1,2,3 --incident-rate 1.5
--jobs 2] [--out benchmarks/results/cross_modal.md]`` (about 15 minutes with two free cores)
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = (3, 6, 12)
#: the forecast steps scored: all; affected by an incident or event; of those, the foreseeable ones (the
#: disruption started or announced by the forecast origin: what flags or words could tell) and the unforeseeable
#: ones (an incident that starts after the origin: no input can know it); not affected
GROUPS = ("all", "affected", "foreseeable", "unforeseeable", "unaffected")
PARAMS = dict(hidden=16, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0, residual="last")


def make_data(work: Path, sensors: int, days: int, seed: int, rate: float, oracles: bool = False) -> dict:
    """Write the data and the shuffled-reports control (and with ``oracles`` the ceilings' files, paths
    ``'parsed'`` and ``'truth'``); ``{'paths', 'affected' [T, N] bool}``."""
    from stgraph.io.csv import read_rows
    from stgraph.synth import make_road_network, simulate_speeds
    from stgraph.synth.events import write_events
    from stgraph.synth.reports import affected_mask, planned_events

    paths = write_events(work / "data", num_sensors=sensors, days=days, seed=seed, rain=False, incidents=True,
                         reports=True, incident_rate=rate, force=True)
    graph = make_road_network(sensors, seed)
    series, log = simulate_speeds(graph, start="2012-03-01", days=days, seed=seed, incident_rate=rate,
                                  return_log=True)
    _, _, events = planned_events(series, graph, seed)
    affected = affected_mask(log.incidents, events, graph, series.num_steps, 5.0, reported=True)
    rows, _ = read_rows(paths["reports"])
    texts = [r[5] for r in rows[1:]]
    perm = np.random.default_rng([seed, 99]).permutation(len(texts))
    shuffled = work / "data" / "reports_shuffled.csv"
    shuffled.write_text("timestamp,sensor,lat,lon,end,text\n" + "".join(
        f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},\"{texts[j]}\"\n" for r, j in zip(rows[1:], perm)))
    ceilings = {}
    if oracles:
        from benchmarks.cross_modal_oracles import parsed_files, truth_files
        ceilings = {"parsed": parsed_files(work / "data", series, graph, log, seed),
                    "truth": truth_files(work / "data", series, graph, log)}
    return {"paths": {k: str(v) for k, v in paths.items()} | {"shuffled": str(shuffled)} | ceilings,
            "affected": affected}


def scores(trainer, affected: np.ndarray) -> dict:
    """MAE per horizon step in STEPS on each of GROUPS' forecast steps of the test split."""
    from benchmarks.masked_steps import masked_step_mae

    def masks(valid, rows, starts):
        since = affected[rows]                                           # [B, T_out, N]
        hit = since < np.iinfo(np.int64).max // 2
        known = since <= (starts + trainer.data.input_len - 1)[:, None, None]  # by the origin
        return {"all": valid, "affected": valid & hit, "foreseeable": valid & hit & known,
                "unforeseeable": valid & hit & ~known, "unaffected": valid & ~hit}
    return masked_step_mae(trainer, masks, STEPS)


def train_variant(paths: dict, covariates: list, epochs: int, seed: int, report_hours: float = 3.0,
                  after_hours: float = 0.5):
    """Train stgt (``PARAMS``) on ``paths['data']`` with ``covariates`` for ``epochs``: the trainer.
    ``report_hours`` / ``after_hours``: ``data.report_hours`` / ``data.report_after_hours`` (how long a report
    without an end, given or stated, reaches the series; how long one whose words state an end reaches past it)."""
    import torch
    torch.set_num_threads(1)
    from stgraph.config import RunConfig, with_fields
    from stgraph.training.run import train

    cfg = with_fields(RunConfig(), {
        "data.path": paths["data"], "data.graph": paths["adj"], "data.covariates": covariates,
        "data.locations": paths["locations"], "model.params": dict(PARAMS), "train.epochs": epochs,
        "train.batch_size": 32, "train.lr": 3e-3, "train.progress": False, "train.threads": 1,
        "train.seed": seed, "train.patience": 0, "train.device": "cpu", "data.report_hours": report_hours,
        "data.report_after_hours": after_hours})
    return train(cfg, None)


def run_variant(paths: dict, covariates: list, affected: np.ndarray, epochs: int, seed: int,
                report_hours: float = 3.0, after_hours: float = 0.5) -> dict:
    """Train one variant (:func:`train_variant`, in its own process) and score it; with its training time and
    peak RSS."""
    t0 = time.perf_counter()
    tr = train_variant(paths, covariates, epochs, seed, report_hours, after_hours)
    seconds = time.perf_counter() - t0
    return scores(tr, affected) | {"seconds": seconds, "gates": tr.model.gates() or {},
                                   "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def table(rows: dict, base: str = "flags") -> list[str]:
    head = ["| covariates | " + " | ".join(f"{k} {m}" for k in GROUPS for m in ("15m", "30m", "60m"))
            + " | train s | peak MB |", "|---|" + "---|" * (3 * len(GROUPS) + 2)]
    for name, r in rows.items():
        cells = [f"{v:.3f}" for k in GROUPS for v in r[k]]
        head.append(f"| {name} | " + " | ".join(cells) + f" | {r['seconds']:.0f} | {r['peak_mb']:.0f} |")
    b = rows[base]
    head += ["", f"Change against `{base}` (negative: lower error):", "",
             "| covariates | " + " | ".join(f"{k} {m}" for k in GROUPS[1:] for m in ("15m", "30m", "60m")) + " |",
             "|---|" + "---|" * (3 * len(GROUPS) - 3)]
    for name, r in rows.items():
        if name != base:
            head.append(f"| {name} | " + " | ".join(f"{100 * (r[k][j] / b[k][j] - 1):+.1f} %" for k in
                                                   GROUPS[1:] for j in range(3)) + " |")
    return head


VARIANTS = {"none": (), "flags": ("incidents",), "flags + text": ("incidents", "reports"), "text": ("reports",),
            "flags + shuffled text": ("incidents", "shuffled"),
            "flags + text + parsed": ("incidents", "reports", "parsed"),
            "flags + text + truth": ("incidents", "reports", "truth")}
#: ceilings (:mod:`benchmarks.cross_modal_oracles`), run only when named in ``--variants``
ORACLES = ("flags + text + parsed", "flags + text + truth")


def covariate_paths(paths: dict, keys) -> list:
    """The files of ``keys`` (a key may hold several)."""
    return [f for k in keys for f in ([paths[k]] if isinstance(paths[k], str) else paths[k])]


def run_all(args, seeds: list) -> dict:
    """Every variant on the data of each seed (also the training seed), ``args.jobs`` training processes at
    once (one torch thread each, a fresh process per run): ``{seed: {variant: scores}}``."""
    data = {s: make_data(Path(args.work) / f"seed{s}", args.sensors, args.days, s, args.incident_rate,
                         oracles=any(v in ORACLES for v in args.variants))
            for s in seeds}
    with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as ex:
        futs = {(s, name): ex.submit(run_variant, data[s]["paths"], covariate_paths(data[s]["paths"], cov),
                                     data[s]["affected"], args.epochs, s, args.report_hours, args.after_hours)
                for s in seeds for name, cov in VARIANTS.items() if name in args.variants}
        by_seed = {s: {} for s in seeds}
        for (s, name), f in futs.items():
            by_seed[s][name] = f.result()
            print(f"seed {s}", name, {k: np.round(v, 3).tolist() for k, v in by_seed[s][name].items()
                                      if k in GROUPS + ("seconds", "peak_mb")}, flush=True)
    return by_seed


def mean_rows(by_seed: dict) -> dict:
    """The variants' scores averaged over the seeds (gates: the first seed's)."""
    first = next(iter(by_seed.values()))
    return {name: {k: (np.mean([by_seed[s][name][k] for s in by_seed], axis=0).tolist() if k != "gates"
                       else first[name][k]) for k in first[name]} for name in first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=16)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (data and training), averaged")
    ap.add_argument("--incident-rate", type=float, default=1.5)
    ap.add_argument("--jobs", type=int, default=2, help="training processes at once (one torch thread each)")
    ap.add_argument("--report-hours", type=float, default=3.0,
                    help="data.report_hours: how long a report without an end reaches the series (default 3)")
    ap.add_argument("--after-hours", type=float, default=0.5,
                    help="data.report_after_hours: how long a report whose words state an end reaches past it")
    ap.add_argument("--variants", default=",".join(v for v in VARIANTS if v not in ORACLES),
                    help=f"comma-separated variants to run (default all but the ceilings: {', '.join(VARIANTS)}); "
                         f"'flags' is the base")
    ap.add_argument("--work", default="/tmp/stgraph-bench-cross-modal")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cross_modal.md"))
    args = ap.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or "flags" not in args.variants:
        ap.error(f"--variants {','.join(args.variants)}: unknown {unknown}, or no 'flags' (the base); "
                 f"expected some of {', '.join(VARIANTS)}")
    from stgraph.files import atomic_write

    seeds = [int(x) for x in args.seeds.split(",")]
    by_seed = run_all(args, seeds)
    rows = mean_rows(by_seed)
    load = os.getloadavg()
    r0 = rows["flags"]
    lines = ["# Text reports beside the series: MAE with and without them (synthetic network)", "",
             f"Command: `python benchmarks/bench_cross_modal.py --sensors {args.sensors} --days {args.days} --epochs "
             f"{args.epochs} --seeds {args.seeds} --incident-rate {args.incident_rate} --jobs {args.jobs} "
             f"--report-hours {args.report_hours:g} --after-hours {args.after_hours:g}"
             + (f" --variants '{','.join(args.variants)}'" if args.variants != [v for v in VARIANTS if v not in ORACLES]
                else "")
             + "` (stgt width "
             f"16, one encoder and one decoder block, batch 32, lr 3e-3, {args.epochs} epochs; seeds {args.seeds}, each "
             f"for its data and its training, figures the mean over them; {args.jobs} runs at once, one CPU thread each; "
             f"{platform.processor() or platform.machine()}).", "",
             f"Data: `stgraph data synth --sensors {args.sensors} --days {args.days} --incidents --reports --seed S` with "
             f"{args.incident_rate} incidents per sensor per day (5-minute speeds in mph, split 0.7 / 0.1 / 0.2). Test "
             f"split (mean over the seeds): {int(r0['count_all'][0])} valid forecast entries per step; affected by an "
             f"incident or an event (its sensor and 2 hops upstream, from its start to 30 min after its end; an event's "
             f"crowds): {int(r0['count_affected'][0])} / {int(r0['count_affected'][1])} / {int(r0['count_affected'][2])} "
             f"at 15 / 30 / 60 min ahead, of which foreseeable (the incident started, or the event announced, by the "
             f"forecast origin): {int(r0['count_foreseeable'][0])} / {int(r0['count_foreseeable'][1])} / "
             f"{int(r0['count_foreseeable'][2])}; the others are unforeseeable (an incident that starts after the "
             f"origin).", ""] + table(rows)
    for seed, r in by_seed.items():
        lines += ["", f"Seed {seed} alone:", ""] + table(r)
    lines += ["", f"Fusion gates after training, seed {seeds[0]} (sigmoid, start 0.12; input window / horizon steps):",
              "", "| run | source | input | h3 | h6 | h12 |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        for src, v in r["gates"].items():
            lines.append(f"| {name} | {src} | {v['input']:.3f} | "
                         + " | ".join(f"{v['horizon'][h - 1]:.3f}" for h in STEPS) + " |")
    lines += ["", f"Training time and peak memory (resident set of the variant's process) measured under CPU "
              f"contention (a shared 2-core machine, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} when "
              f"the table was written): compare them only with each other; rerun the command alone for clean ones."]
    atomic_write(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
