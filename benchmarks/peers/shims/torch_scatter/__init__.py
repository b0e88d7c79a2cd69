"""Benchmark stand-in for ``torch_scatter`` (see ../README.md): routes to torch_geometric and torch."""
import torch
from torch_geometric.utils import scatter as _pyg_scatter

from . import utils  # noqa: F401

__version__ = "0.0+stgraph-benchmark-shim"


def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
    """``torch_scatter.scatter``: ``index`` broadcast to ``src`` (as torch_scatter allows) then PyG's scatter."""
    if out is not None:
        raise NotImplementedError("torch_scatter shim: out= is not supported")
    dim = dim % src.dim()
    if index.dim() != 1:  # torch_scatter takes an index broadcast along ``dim``; PyG wants it 1-D
        index = _flat_index(index, src, dim)
    return _pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)


def _flat_index(index, src, dim):
    idx = utils.broadcast(index, src, dim)
    # all positions along the other dims carry the same index: take one line of it
    sl = [0] * idx.dim()
    sl[dim] = slice(None)
    return idx[tuple(sl)]


def segment_csr(src, indptr, out=None, reduce="sum"):
    """Reduce ``src`` along its first dim over the segments of ``indptr`` (1-D)."""
    if out is not None or indptr.dim() != 1:
        raise NotImplementedError("torch_scatter shim: segment_csr with out= or a batched indptr")
    lengths = indptr[1:] - indptr[:-1]
    return torch.segment_reduce(src, reduce, lengths=lengths, axis=0, unsafe=True,
                                initial=0.0 if reduce in ("sum", "mean") else None)


def gather_csr(src, indptr, out=None):
    """Repeat row ``i`` of ``src`` as often as segment ``i`` is long."""
    if out is not None or indptr.dim() != 1:
        raise NotImplementedError("torch_scatter shim: gather_csr with out= or a batched indptr")
    return src.repeat_interleave(indptr[1:] - indptr[:-1], dim=0)
