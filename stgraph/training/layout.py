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
    .stgraph-files.json       the manifest (:data:`stgraph.files.MANIFEST`): the run writer records run.json there,
                              which shows stgraph made this run (:meth:`RunFiles.made_by_stgraph`)

A new run over an old one (``overwrite=True``) replaces only what stgraph can show it wrote: the files above in a
folder it made a run of (:meth:`RunFiles.foreign` lists anything else, which needs ``force=True``).
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from ..files import MANIFEST, manifest_names

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


#: the files a run writes at its top level, in ``checkpoints/`` and in ``drift/`` (``fnmatch`` patterns)
RUN_PATTERNS = (CONFIG, INFO, METRICS, SUMMARY, BENCH_EVALUATION, GATES, UPDATE, EVALUATION.format(split="*"),
                BENCH_EVALUATION_AT.format(minutes="*"), MANIFEST)
CHECKPOINT_PATTERNS = (LAST, BEST, SNAPSHOT.format(minutes="*"), MANIFEST)
DRIFT_PATTERNS = ("drift.csv", "errors.csv", "drift.png", "drift.json", MANIFEST)


def _is_run_file(p: Path, patterns) -> bool:
    """``p`` is a plain file named as a run names its files (or a temporary file of one, left by a killed write)."""
    name = p.name
    if name.startswith(".") and name.endswith(".tmp"):  # atomic_path's ".<name>.<random>.tmp"
        name = name[1:-4].rsplit(".", 1)[0]
    return p.is_file() and not p.is_symlink() and any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


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

    def made_by_stgraph(self) -> bool:
        """Whether stgraph can show it made a run here: the manifest records the run.json the run writer wrote,
        or (a run from before manifests) the folder holds config.yaml, a checkpoint and a run.json naming the
        run's fingerprint."""
        if INFO in manifest_names(self.root):
            return True
        if not (self.config.is_file() and self.info.is_file() and (self.last.is_file() or self.best.is_file())):
            return False
        try:
            doc = json.loads(self.info.read_bytes().decode("utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and isinstance(doc.get("fingerprint"), dict)

    def foreign(self) -> list[Path]:
        """What in the run directory stgraph cannot show it wrote: everything in a folder it did not make a run
        of; in one it did, everything but the run's files (see the module docstring)."""
        if not self.root.is_dir():
            return []
        entries = sorted(self.root.iterdir())
        if not self.made_by_stgraph():
            return [p for p in entries if p.name != MANIFEST]
        out = []
        for p in entries:
            inner = {CHECKPOINTS: CHECKPOINT_PATTERNS, DRIFT: DRIFT_PATTERNS}.get(p.name)
            if inner is not None and p.is_dir() and not p.is_symlink():
                out += [q for q in sorted(p.iterdir()) if not _is_run_file(q, inner)]
            elif not _is_run_file(p, RUN_PATTERNS):
                out.append(p)
        return out


__all__ = ["RunFiles", "CONFIG", "INFO", "METRICS", "CHECKPOINTS", "LAST", "BEST", "SUMMARY", "EVALUATION",
           "BENCH_EVALUATION", "GATES", "UPDATE", "DRIFT", "SNAPSHOT", "BENCH_EVALUATION_AT", "minutes_text"]
