"""Atomic checkpoint files.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(..., weights_only=True)``: a checkpoint file cannot
run code. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the old one, so a crash while writing leaves the
previous checkpoint intact; the next successful save removes the temporary
file a killed writer left behind.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import DataFormatError, MissingFileError, UnsafePickleError
from .. import files


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`stgraph.files.atomic_path`: temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
    _remove_stale_temps(path)
    return path


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy the checkpoint file ``src`` to ``dst`` atomically (its bytes as they are; same folder rules as
    :func:`save_checkpoint`)."""
    import shutil

    dst = Path(dst)
    with files.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    _remove_stale_temps(dst)
    return dst


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.NAME.*.tmp`` files a killed writer left beside ``path`` (one run writes
    a run directory at a time, so any other such file is a leftover, often hundreds of MB)."""
    for stale in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        try:
            stale.unlink()
        except OSError:  # pragma: no cover - raced with another cleanup, or read-only
            pass


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint '{path}' not found; train a run into '{path.parent.parent}' first")
    if path.stat().st_size == 0:
        raise DataFormatError(f"checkpoint '{path}' is empty (0 bytes); it was not written completely. "
                              f"Use the other checkpoint in {path.parent} or train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError on damage
        raise _load_error(path, e) from None
    if not isinstance(state, dict) or "model" not in state:
        raise DataFormatError(f"checkpoint '{path}' holds no 'model' weights; not an stgraph checkpoint")
    _check_progress(state.get("trainer"), path)
    return state


#: the trainer's progress counters a checkpoint stores: name -> (type, smallest value)
_PROGRESS = {"epoch": (int, 0), "batch": (int, 0), "best_epoch": (int, -1), "bad_epochs": (int, 0),
             "skipped": (int, 0), "running_count": (int, 0), "best_val": (float, None),
             "running_loss": (float, None), "finished": (bool, None), "early_stopped": (bool, None),
             "cpu_seconds": (float, None), "steps": (int, 0), "budget_stopped": (bool, None)}


def _check_progress(progress, path: Path) -> None:
    """The ``trainer`` entry must hold the counters stgraph writes, with their types."""
    if progress is None:
        return
    if not isinstance(progress, dict):
        raise DataFormatError(f"checkpoint '{path}': 'trainer' is a {type(progress).__name__}; expected the "
                              f"training progress (epoch, batch, ...); the checkpoint is damaged or not stgraph's")
    for key, (tp, lo) in _PROGRESS.items():
        if key not in progress:
            continue
        v = progress[key]
        if tp is bool:
            ok = isinstance(v, bool)
        elif tp is int:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok:
            want = {bool: "true or false", int: f"an integer >= {lo}", float: "a number"}[tp]
            raise DataFormatError(f"checkpoint '{path}': trainer.{key} = {v!r}; expected {want}. The checkpoint "
                                  f"is damaged or was edited: use the other checkpoint in {path.parent} or train "
                                  f"again")


def _load_error(path: Path, exc: Exception) -> Exception:
    """A one-line, specific error for a checkpoint ``torch.load(weights_only=True)`` refused."""
    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: ([\w.]+)", text)
    if m:
        return UnsafePickleError(
            f"checkpoint '{path}' refused: it asks to call '{m.group(1)}', which a checkpoint of weights "
            f"never needs; nothing from the file was run (loaded with weights_only=True). It is not an "
            f"stgraph checkpoint or it was tampered with; do not load it with weights_only=False unless "
            f"you trust where it came from")
    if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
        return DataFormatError(
            f"checkpoint '{path}' is truncated or damaged (not a complete torch archive); use the other "
            f"checkpoint in {path.parent} or train again")
    detail = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip() and "error" not in ln.lower()
                   and "documentation" not in ln), "") if "Weights only load failed" in text else \
        " ".join(text.split())[:200]
    return DataFormatError(
        f"checkpoint '{path}' cannot be loaded ({type(exc).__name__}: {detail or 'unreadable'}); it is "
        f"damaged or not an stgraph checkpoint")
