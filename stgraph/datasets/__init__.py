"""Named traffic datasets: METR-LA, PEMS-BAY, PEMS03/04/07/08, PeMSD7(M), LargeST.

Each dataset is described by a YAML manifest (see :mod:`.manifest`, its schema
:mod:`.schema` and ``datasets/README.md``). Modules: :mod:`.specs` (what a manifest
says), :mod:`.validation` (checking one), :mod:`.manifest` (finding them),
:mod:`.fetching` (cache folder, checksums, downloads through :mod:`.download`),
:mod:`.loading` (series and graph).

:func:`fetch` makes sure a dataset's files are in the cache
folder -- using copies already there (checked against ``sha256`` when the
manifest knows it), else downloading them from the published URLs in order --
and returns their paths. :func:`load` also reads the series (through
:func:`stgraph.io.read_series`) and builds the road graph (through
:mod:`stgraph.graph`)::

    from stgraph.datasets import load
    ds = load("metr-la")               # Dataset(series, graph, manifest, paths)
    series, graph = load("pems08")     # a Dataset also unpacks as a pair

The cache root is ``root=``, else ``$STGRAPH_DATA``, else ``~/.cache/stgraph``;
a dataset's files live in ``ROOT/<name>/`` (LargeST's four subsets share
``ROOT/largest/``). When a file can neither be found nor downloaded,
:class:`~stgraph.errors.MissingFileError` says which file to put at which path
and where to get it.
"""
from .archives import extract
from .download import download as download_file
from .fetching import dataset_dir, default_root, fetch
from .loading import Dataset, load, needed_files
from .manifest import get_manifest, list_datasets, manifest_dirs
from .specs import FileSpec, GraphSpec, Manifest, MemberSpec, SubsetSpec, canonical_name
from .validation import load_manifest

__all__ = [
    "Dataset",
    "Manifest",
    "FileSpec",
    "MemberSpec",
    "GraphSpec",
    "SubsetSpec",
    "list_datasets",
    "get_manifest",
    "load_manifest",
    "manifest_dirs",
    "canonical_name",
    "default_root",
    "dataset_dir",
    "fetch",
    "needed_files",
    "load",
    "download_file",
    "extract",
]
