"""Load pickles that may only rebuild numpy arrays and builtin containers.

DCRNN ships its road graphs as pickles (``adj_mx.pkl``). A plain
``pickle.load`` runs whatever callable the file names, so a tampered file
could run ``os.system``. :func:`safe_load_pickle` uses an unpickler whose
``find_class`` admits only the globals needed to rebuild numpy arrays, numpy
scalars and builtin containers/scalars; any other global raises
:class:`~stgraph.errors.UnsafePickleError` *before* it is called, so nothing
from the file runs.

DCRNN's PEMS-BAY pickle was written by Python 2; its byte strings decode
only as ``latin1``, so loading falls back to ``encoding='latin1'`` on
``UnicodeDecodeError``.
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DataFormatError, MissingFileError, StgraphError, UnsafePickleError, where

__all__ = ["SafeUnpickler", "safe_load_pickle", "safe_loads", "ALLOWED_GLOBALS"]

#: ``(module, name)`` pairs the unpickler will resolve. ``numpy.core`` names are
#: resolved through ``numpy._core`` on numpy 2 (and the reverse on numpy 1).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # protocol-2 bytes: _codecs.encode(text, 'latin1')
    ]
    + [
        ("builtins", name)
        for name in (
            "list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes",
            "str", "int", "float", "complex", "bool",
        )
    ]
)

# Python 2 module names that ``fix_imports`` would translate; our find_class
# sees the raw name, so translate them here.
_PY2_MODULES = {"__builtin__": "builtins"}

_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` that only turns text into latin1 bytes.

    Pickle protocol 2 stores ``bytes`` as ``_codecs.encode(text, 'latin1')``;
    no other use of ``_codecs.encode`` is needed, so no other is allowed.
    """
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1:
        raise UnsafePickleError(
            f"pickle called _codecs.encode({type(obj).__name__}, {encoding!r}); only "
            "_codecs.encode(str, 'latin1') (how protocol 2 stores bytes) is allowed"
        )
    return obj.encode("latin1", errors)


def _resolve_numpy(module: str) -> Any:
    """Import a numpy module, mapping ``numpy.core`` <-> ``numpy._core``."""
    candidates = [module]
    if module.startswith("numpy.core"):
        candidates.insert(0, "numpy._core" + module[len("numpy.core"):])
    elif module.startswith("numpy._core"):
        candidates.append("numpy.core" + module[len("numpy._core"):])
    err: Exception | None = None
    for cand in candidates:
        try:
            return importlib.import_module(cand)
        except ImportError as exc:  # pragma: no cover - depends on numpy version
            err = exc
    raise err  # type: ignore[misc]


class SafeUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that refuses every global not in :data:`ALLOWED_GLOBALS`.

    Args:
        file: binary file object to read from.
        source: the file's path, named in error messages.
        **kwargs: passed to :class:`pickle.Unpickler` (e.g. ``encoding``).
    """

    def __init__(self, file: BinaryIO, *, source: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - see class docstring
        module = _PY2_MODULES.get(module, module)
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{where(self.source)}: refused to load global '{module}.{name}'; this "
                "unpickler only rebuilds numpy arrays and builtin containers/scalars "
                "(a graph pickle needs nothing else). If you trust and need this file, "
                "convert it to a numpy .npy/.npz or a plain CSV/JSON graph instead"
            )
        if module == "_codecs":
            return _latin1_encode
        if module == "builtins":
            import builtins

            if name in ("bytes", "bytearray"):
                return _sized(getattr(builtins, name), self.source)
            return getattr(builtins, name)
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype(self.source)
        return getattr(_resolve_numpy(module), name)


def _sized(factory, source):
    """``bytes``/``bytearray`` that refuse a length argument: ``bytearray(14_400_000_000)`` in a
    200-byte pickle would allocate gigabytes; a pickle only ever builds them from its own bytes."""
    def build(*args):
        if args and isinstance(args[0], int):
            raise DataFormatError(
                f"{where(source)}: the pickle asks for {factory.__name__}({args[0]}), a buffer of {args[0]} "
                "bytes the file does not hold; refusing it (a graph pickle stores its bytes, never a size)")
        return factory(*args)
    return build


def _plain_dtype(source):
    """``numpy.dtype`` limited to plain numbers and text: an object dtype would let a tiny pickle
    ask numpy to allocate a huge array of references before any content is checked."""
    import numpy as np

    def build(*args):
        dt = np.dtype(*args)
        if dt.hasobject or dt.itemsize > 1 << 16:
            raise DataFormatError(
                f"{where(source)}: the pickle asks for numpy dtype {str(dt)[:40]}; expected numbers or text "
                "(a graph pickle holds float/int arrays; object arrays are refused)")
        return dt
    return build


def safe_loads(data: bytes, *, source: str | Path | None = None) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`.

    Tries the default (ASCII) decoding of Python 2 strings first and falls back
    to ``encoding='latin1'`` on :class:`UnicodeDecodeError`.

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list.
        DataFormatError: the bytes are not a readable pickle.
    """
    try:
        try:
            return SafeUnpickler(io.BytesIO(data), source=source).load()
        except UnicodeDecodeError:
            return SafeUnpickler(io.BytesIO(data), source=source, encoding="latin1").load()
    except StgraphError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{where(source)}: not a readable pickle ({type(exc).__name__}: {exc}); "
            "expected a pickle of numpy arrays/builtin containers such as DCRNN's "
            "adj_mx.pkl. Check the file is complete and not another format"
        ) from exc
    except (MemoryError, OverflowError) as exc:
        # a corrupted length field: the pickle declares an object far larger than the file
        raise DataFormatError(
            f"{where(source)}: not a readable pickle: it declares an object larger than the whole "
            f"file ({len(data)} bytes; {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}), "
            "so it is corrupted or not a pickle. Fetch the file again"
        ) from exc


def safe_load_pickle(path: str | Path) -> Any:
    """Read the pickle at ``path`` with :class:`SafeUnpickler`.

    Args:
        path: the pickle file.

    Returns:
        The unpickled object (builtin containers/scalars and numpy arrays only).

    Raises:
        MissingFileError: ``path`` does not exist.
        UnsafePickleError: the pickle names a global outside the allow-list
            (e.g. ``'os.system'``); nothing from the file is called.
        DataFormatError: the file is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"{where(path)}: pickle file not found; expected a file here (e.g. DCRNN's "
            "adj_mx.pkl). Put the file at this path or pass the right one"
        )
    return safe_loads(path.read_bytes(), source=path)
