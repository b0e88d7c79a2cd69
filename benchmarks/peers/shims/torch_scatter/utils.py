"""Benchmark stand-in for ``torch_scatter.utils``."""


def broadcast(src, other, dim):
    """``src`` (1-D along ``dim``, or already shaped) expanded to the shape of ``other``."""
    if dim < 0:
        dim = other.dim() + dim
    if src.dim() == 1:
        for _ in range(0, dim):
            src = src.unsqueeze(0)
    for _ in range(src.dim(), other.dim()):
        src = src.unsqueeze(-1)
    return src.expand(other.size())
