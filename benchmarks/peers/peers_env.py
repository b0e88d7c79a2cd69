"""Import the peer packages with the benchmark's stand-ins for torch_sparse / torch_scatter.

``torch_geometric`` is imported first, while ``shims/`` is not on ``sys.path``, so PyG
records both packages as absent and keeps to its own code; then ``shims/`` goes on the path
and tsl / torch_geometric_temporal can import. See ``shims/README.md``.
"""
import os
import sys
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "shims"


def activate() -> None:
    """Call before importing ``tsl`` or ``torch_geometric_temporal``."""
    os.environ.setdefault("PYTORCH_JIT", "0")
    import torch_geometric.typing as pyg_typing
    assert not pyg_typing.WITH_TORCH_SCATTER and not pyg_typing.WITH_TORCH_SPARSE, \
        "PyG saw torch_scatter/torch_sparse: the shims must not be importable before torch_geometric"
    if str(SHIMS) not in sys.path:
        sys.path.insert(0, str(SHIMS))
