"""Data sources: anything that yields row blocks of a fixed feature count.

A source knows ``n_features``, ``dtype`` and, where known, ``n_samples``, and yields blocks
(dense C-ordered ndarrays or ``scipy.sparse.csr_matrix``) with ``blocks(start)``, beginning at
sample ``start`` so that a resumed fit continues where it stopped. The stage loop consumes
blocks and never holds more than one or two of them.
"""

import numpy as np
import scipy.sparse as sp

__all__ = ["Source", "ArraySource", "IterableSource", "as_source", "check_block"]

#: float dtypes the kernels are compiled for; other inputs are converted to float64
FLOAT_DTYPES = (np.float64, np.float32)

#: target bytes of one dense block: tall enough for BLAS, small enough to stay in cache-ish memory
_BLOCK_BYTES = 1 << 24


def default_block_rows(n_features, itemsize=8):
    """Rows per block so that a dense block holds about 16 MiB."""
    return int(max(64, _BLOCK_BYTES // max(1, n_features * itemsize)))


class Source:
    """Protocol of a row-block source.

    Attributes
    ----------
    n_features : int
    n_samples : int or None
        None for an unbounded or unknown-length stream.
    dtype : numpy dtype
    """

    n_features = None
    n_samples = None
    dtype = np.dtype(np.float64)

    def blocks(self, start=0):
        """Yield row blocks from sample ``start`` to the end of one pass."""
        raise NotImplementedError


class ArraySource(Source):
    """An in-memory dense array or CSR matrix, served in row blocks (views, no copies).

    Parameters
    ----------
    X : {ndarray, csr_matrix} of shape (n_samples, n_features)
        Already validated: float32/float64, finite, C-ordered if dense.
    block_rows : int, optional
        Rows per block; default about 16 MiB of dense rows.
    """

    def __init__(self, X, block_rows=None):
        self.X = X
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        self.block_rows = block_rows or default_block_rows(self.n_features, X.dtype.itemsize)

    def blocks(self, start=0):
        for s in range(start, self.n_samples, self.block_rows):
            yield self.X[s : s + self.block_rows]


class IterableSource(Source):
    """A stream of row blocks from any iterable (a generator, a list of chunks, ...).

    Each block is checked: 2-D, the same width as the first block, a float dtype, finite.
    A generator can be consumed once; a re-iterable (list) supports several passes.

    Parameters
    ----------
    iterable : iterable of {ndarray, sparse matrix} of shape (n_rows, n_features)
    n_features : int, optional
        Known width; otherwise taken from the first block.
    """

    def __init__(self, iterable, n_features=None):
        self.iterable = iterable
        self.n_features = n_features
        self.dtype = None
        self.n_samples = None

    def blocks(self, start=0):
        skip = start
        for index, block in enumerate(self.iterable):
            block = check_block(block, self.n_features, self.dtype, where=f"block {index}")
            if self.n_features is None:
                self.n_features = block.shape[1]
            if self.dtype is None:
                self.dtype = block.dtype
            if skip:
                if block.shape[0] <= skip:
                    skip -= block.shape[0]
                    continue
                block, skip = block[skip:], 0
            yield block


def check_block(block, n_features=None, dtype=None, where="block"):
    """Validate one row block and return it as float C-ordered ndarray or canonical CSR.

    Parameters
    ----------
    block : array-like or sparse matrix of shape (n_rows, n_features)
    n_features : int, optional
        Expected width (the first block's, or the fitted model's).
    dtype : dtype, optional
        Expected dtype (the first block's); a change of dtype mid-stream is an error because it
        would silently change the precision of the fit.
    where : str
        Named in error messages.
    """
    if sp.issparse(block):
        if block.ndim != 2:
            raise ValueError(f"{where}: expected a 2-D sparse matrix, got ndim={block.ndim}.")
        block = sp.csr_matrix(block)
        if not block.has_canonical_format:
            block = block.copy()
            block.sum_duplicates()
        values = block.data
    else:
        block = np.asarray(block)
        if block.ndim != 2:
            raise ValueError(
                f"{where}: expected a 2-D array of shape (n_samples, n_features), got "
                f"shape {block.shape}. Reshape a single sample with x.reshape(1, -1)."
            )
        values = block
    if values.dtype not in FLOAT_DTYPES:
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise ValueError(
                f"{where}: expected numeric data, got dtype {values.dtype}. Convert it with "
                "X.astype(np.float64)."
            )
        if dtype is None:
            block = block.astype(np.float64)
    if dtype is not None and block.dtype != dtype:
        raise ValueError(
            f"{where}: expected dtype {np.dtype(dtype)} like the earlier blocks, got "
            f"{block.dtype}. Yield every block with the same dtype (e.g. .astype(np.{dtype}))."
        )
    if n_features is not None and block.shape[1] != n_features:
        raise ValueError(
            f"{where}: expected {n_features} features (columns) like the earlier data, got "
            f"{block.shape[1]}. Every block must have the same width."
        )
    values = block.data if sp.issparse(block) else block
    if not np.isfinite(values.sum()) and not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: the data contain NaN or infinity; remove or impute them first.")
    if not sp.issparse(block):
        block = np.ascontiguousarray(block)
    return block


def as_source(X, block_rows=None):
    """Wrap what a user passed to ``fit`` into a :class:`Source`.

    Parameters
    ----------
    X : Source, ndarray, sparse matrix, or iterable of row blocks

    Returns
    -------
    Source
    """
    if isinstance(X, Source):
        return X
    if sp.issparse(X) or isinstance(X, np.ndarray):
        return ArraySource(check_block(X, where="X"), block_rows)
    if hasattr(X, "__iter__") and not isinstance(X, (str, bytes)):
        return IterableSource(X)
    raise TypeError(
        f"Expected an array, a sparse matrix, an iterable of row blocks or a Source, got "
        f"{type(X).__name__}."
    )
