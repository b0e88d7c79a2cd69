"""Benchmark stand-in for ``torch_sparse`` (see ../README.md): importable, never used.

The benchmark gives the peers ``edge_index`` tensors, never ``SparseTensor``s, so the
``isinstance(x, SparseTensor)`` checks are all false and nothing here runs."""
__version__ = "0.0+stgraph-benchmark-shim"


def _absent(*args, **kwargs):
    raise NotImplementedError("torch_sparse is a benchmark stand-in here: SparseTensor paths are not available")


class SparseTensor:
    """Never instantiated in the benchmark; constructing one is an error."""

    def __init__(self, *args, **kwargs):
        _absent()


class SparseStorage(SparseTensor):
    pass


matmul = cat = set_diag = remove_diag = fill_diag = _absent
