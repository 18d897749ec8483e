"""What a user passes to ``fit``: turned into a source, and the files it reads."""

import os

import h5py
import numpy as np
import scipy.sparse as sp

from .hdf5 import HDF5Source, split_path_spec
from .sources import ArraySource, IterableSource, Source, check_block

__all__ = ["as_source", "input_files"]


def _is_path(X):
    return isinstance(X, (str, os.PathLike))


def as_source(X, block_rows=None):
    """Wrap what a user passed to ``fit`` into a :class:`Source`.

    Parameters
    ----------
    X : Source, ndarray, sparse matrix, HDF5 path or object, or iterable of row blocks
        An HDF5 file is given as a path (``"file.h5"`` reads the dataset or CSR group named
        ``"data"``), as ``"file.h5:/group/name"`` or a tuple ``(path, name)``, or as an open
        ``h5py.Dataset`` / ``h5py.Group`` / ``h5py.File`` (reopened read-only by path and name).
    block_rows : int, optional
        Rows per block for the sources built here (not for a Source passed in).

    Returns
    -------
    Source
    """
    if isinstance(X, Source):
        return X
    if sp.issparse(X) or isinstance(X, np.ndarray):
        return ArraySource(check_block(X, where="X"), block_rows)
    if _is_path(X):
        # a file is read ahead in a background thread while the kernels compute
        return HDF5Source(*split_path_spec(X), block_rows=block_rows, prefetch=True)
    if (isinstance(X, tuple) and len(X) == 2 and _is_path(X[0])
            and isinstance(X[1], str)):
        return HDF5Source(X[0], X[1], block_rows=block_rows, prefetch=True)
    if isinstance(X, (h5py.Dataset, h5py.Group)):
        return HDF5Source.from_h5py(X, block_rows=block_rows, prefetch=True)
    if hasattr(X, "__iter__") and not isinstance(X, bytes):
        return IterableSource(X)
    raise TypeError(
        f"Expected an array, a sparse matrix, an iterable of row blocks or a Source, or an HDF5 "
        f"file path ('file.h5', 'file.h5:/name') or h5py object, got {type(X).__name__}."
    )


def input_files(X, source=None):
    """The files a fit reads X from (HDF5 paths), absolute; empty for in-memory data."""
    files = []
    for obj in (X, source, getattr(source, "source", None)):
        if isinstance(obj, (str, os.PathLike)):
            files.append(os.fspath(obj).split(":", 1)[0] if not os.path.exists(obj)
                         else os.fspath(obj))
        elif isinstance(obj, tuple) and obj and isinstance(obj[0], (str, os.PathLike)):
            files.append(os.fspath(obj[0]))
        elif isinstance(obj, (h5py.Dataset, h5py.Group)):
            files.append(obj.file.filename)
        elif isinstance(getattr(obj, "path", None), str):
            files.append(obj.path)
    return [os.path.abspath(f) for f in files if os.path.exists(f)]
