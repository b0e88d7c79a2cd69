"""Atomic checkpoint files.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(..., weights_only=True)``: a checkpoint file cannot
run code. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the old one, so a crash while writing leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..errors import DataFormatError, MissingFileError


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint '{path}' not found; train first (stgraph train ... --out {path.parent.parent})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError on damage
        raise DataFormatError(f"checkpoint '{path}' cannot be loaded ({type(e).__name__}: {str(e)[:200]}); "
                              f"it is damaged or not an stgraph checkpoint") from None
    if not isinstance(state, dict) or "model" not in state:
        raise DataFormatError(f"checkpoint '{path}' holds no 'model' weights; not an stgraph checkpoint")
    return state
