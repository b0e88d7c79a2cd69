"""The one table of the file names in a run directory.

Layout of ``RUN_DIR`` (every name below comes from :class:`RunFiles`; nothing else spells them)::

    config.yaml               the resolved RunConfig
    run.json                  sensor ids, sizes, model name, parameter count, fingerprint
    metrics.csv               one row per epoch
    checkpoints/last.pt       latest state (resume from here)
    checkpoints/best.pt       best validation MAE
    checkpoints/best@{m}m.pt  best.pt as it was when the run's CPU time crossed m minutes (snapshot marks)
    train_summary.json        epochs, best epoch, seconds, peak memory (written when training ends)
    evaluation_{split}.json   written by ``stgraph evaluate --split {split}``
    bench_eval.json           test metrics at every horizon step, written by ``stgraph bench``
    bench_eval@{m}m.json      the same of ``best@{m}m.pt`` (``stgraph bench --budget``)
    gates.json                covariate fusion gates per source and horizon step (runs with --covariates)
    update.json               what ``stgraph update`` continued from and on (runs made by an update)
    drift/                    ``stgraph drift``'s default output folder (table, per-period errors, plot)
"""
from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
INFO = "run.json"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
SUMMARY = "train_summary.json"
EVALUATION = "evaluation_{split}.json"
BENCH_EVALUATION = "bench_eval.json"
GATES = "gates.json"
UPDATE = "update.json"
DRIFT = "drift"
SNAPSHOT = "best@{minutes}m.pt"
BENCH_EVALUATION_AT = "bench_eval@{minutes}m.json"


def minutes_text(minutes: float) -> str:
    """A number of minutes as file and folder names spell it: ``1``, ``0.5``, ``0.02``, ``90``."""
    return f"{float(minutes):g}"


class RunFiles:
    """The paths of the files of the run directory ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def info(self) -> Path:
        return self.root / INFO

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def bench_evaluation(self) -> Path:
        return self.root / BENCH_EVALUATION

    @property
    def gates(self) -> Path:
        return self.root / GATES

    @property
    def update(self) -> Path:
        return self.root / UPDATE

    @property
    def drift(self) -> Path:
        """Folder of ``stgraph drift``'s report (not removed by ``--overwrite``: it is an output, not a run file)."""
        return self.root / DRIFT

    def checkpoint(self, name: str = LAST) -> Path:
        """``checkpoints/<name>`` (``last.pt`` or ``best.pt``)."""
        return self.root / CHECKPOINTS / name

    def snapshot(self, minutes: float) -> Path:
        """``checkpoints/best@<minutes>m.pt``: the best checkpoint when the CPU time crossed ``minutes``."""
        return self.checkpoint(SNAPSHOT.format(minutes=minutes_text(minutes)))

    def bench_evaluation_at(self, minutes: float) -> Path:
        """``bench_eval@<minutes>m.json``: the bench's test figures of :meth:`snapshot` ``(minutes)``."""
        return self.root / BENCH_EVALUATION_AT.format(minutes=minutes_text(minutes))

    @property
    def last(self) -> Path:
        return self.checkpoint(LAST)

    @property
    def best(self) -> Path:
        return self.checkpoint(BEST)

    def evaluation(self, split: str) -> Path:
        """``evaluation_<split>.json``, what ``stgraph evaluate --split <split>`` writes."""
        return self.root / EVALUATION.format(split=split)

    def written(self) -> list[Path]:
        """Every file a run writes that exists now (what a new run in this folder must not inherit)."""
        from ..data.split import SPLIT_NAMES

        paths = [self.config, self.info, self.metrics, self.last, self.best, self.summary, self.bench_evaluation,
                 self.gates, self.update]
        paths += [self.evaluation(s) for s in SPLIT_NAMES]
        paths += sorted(self.root.glob(BENCH_EVALUATION_AT.format(minutes="*")))
        paths += sorted((self.root / CHECKPOINTS).glob(SNAPSHOT.format(minutes="*")))
        return [p for p in paths if p.is_file() or p.is_symlink()]


__all__ = ["RunFiles", "CONFIG", "INFO", "METRICS", "CHECKPOINTS", "LAST", "BEST", "SUMMARY", "EVALUATION",
           "BENCH_EVALUATION", "GATES", "UPDATE", "DRIFT", "SNAPSHOT", "BENCH_EVALUATION_AT", "minutes_text"]
