"""Locate the real traffic files that live beside the project in ``../shared/data``.

Tests and benchmarks read real data only through :func:`shared_data_dir`; the
files are never copied into the project. Set ``STGRAPH_SHARED_DATA`` to point
elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path | None:
    """The ``shared/data`` folder, or ``None`` when it cannot be found.

    Looks at ``$STGRAPH_SHARED_DATA``, then for ``../shared/data`` beside the
    current directory and beside the package's checkout, walking upwards.
    """
    env = os.environ.get("STGRAPH_SHARED_DATA")
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for d in [start, *start.parents]:
            cand = d.parent / "shared" / "data"
            if (cand / "metr-la-week").is_dir():
                return cand
    return None


def shared_file(*parts: str) -> Path | None:
    """A file under :func:`shared_data_dir`, or ``None`` if it is absent."""
    root = shared_data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None
