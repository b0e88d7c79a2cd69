"""``metrics.csv``: one row per epoch of a run, rewritten atomically (never half a line)."""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import RunDirError
from ..files import atomic_open

METRIC_FIELDS = ["epoch", "train_loss", "val_mae", "val_rmse", "val_mape", "lr", "epoch_seconds",
                 "windows_per_s", "skipped_batches"]


class EpochTable:
    """The epoch rows of ``path`` (a run's ``metrics.csv``; ``None``: a run kept off disk, nothing is written)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def rows(self) -> list[dict]:
        """The rows written so far (``[]`` without a file); a damaged file is a :class:`RunDirError`."""
        path = self.path
        if path is None or not path.exists():
            return []
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            for r in rows:
                int(r["epoch"])
        except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
            raise RunDirError(f"run file '{path}' is truncated or damaged (not the metrics table stgraph writes); "
                              f"delete it or train again (overwrite=True)") from None
        return rows

    def _write(self, rows: list[dict]) -> None:
        with atomic_open(self.path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        """Add one epoch's row; the whole table is rewritten atomically."""
        if self.path is not None:
            self._write(self.rows() + [row])

    def trim(self, epochs_done: int) -> None:
        """Drop rows of epochs that a resumed run will redo."""
        if self.path is not None and self.path.exists():
            self._write([r for r in self.rows() if int(r["epoch"]) <= epochs_done])


__all__ = ["EpochTable", "METRIC_FIELDS"]
