"""Data sources: anything that yields row blocks of a fixed feature count.

The protocol (:class:`Source`) is small:

* ``n_features`` (int), ``n_samples`` (int, or None for an unbounded or unknown-length stream),
  ``dtype`` (float32 or float64) and, where blocks have a fixed height, ``block_rows``;
* ``blocks(start=0, epoch=0)`` yields the row blocks of one pass over the data, beginning at
  sample ``start`` of that pass so that a resumed fit continues where it stopped. Sources that
  shuffle draw the block order of pass ``epoch`` from ``np.random.default_rng([seed, epoch])``,
  so the order of any pass can be reproduced; ``start`` counts samples in that pass's order
  and the first block yielded may be the tail of a block.

A block is a C-contiguous float32/float64 ``ndarray`` or a ``scipy.sparse.csr_matrix`` with
int32 or int64 indices, of shape (n_rows, n_features). Sources that read files reuse a small
ring of buffers: **a yielded block stays valid until two more blocks have been taken from the
same iterator** (block ``k`` keeps its values while blocks ``k + 1`` and ``k + 2`` are taken;
asking for block ``k + 3`` may overwrite it); copy it to keep it longer. The stage loop
processes a block fully before it asks for the next one, so it never needs a copy.

Sources here: :class:`ArraySource` (in-memory dense or CSR), :class:`IterableSource` (any
iterable of blocks, e.g. a generator: an unbounded stream), :class:`Prefetch` (reads the next
blocks of another source in a background thread) and :class:`~streamnmf.io.HDF5Source`
(a dense dataset or a CSR group of an HDF5 file, read block by block). :func:`~streamnmf.io.as_source` turns
what a user passes to ``fit`` into one of them.
"""

import numbers
import queue
import threading

import numpy as np
import scipy.sparse as sp

__all__ = [
    "Source", "ArraySource", "IterableSource", "Prefetch", "check_block", "block_order",
    "pass_ranges", "prefetch_blocks",
]

#: float dtypes the kernels are compiled for; other inputs are converted to float64
FLOAT_DTYPES = (np.float64, np.float32)

#: target bytes of one dense block: tall enough for BLAS, small enough to stay in cache-ish memory
_BLOCK_BYTES = 1 << 24

#: ring size of sources that reuse buffers: a block stays valid while two more are taken
RING_BUFFERS = 3

#: seconds a closed prefetching iterator waits for its reader thread; a reader stuck in a slow
#: ``next()`` (e.g. a network stream) is a daemon thread and exits after that call returns
_PREFETCH_JOIN_SECONDS = 5.0


#: most rows of a CSR block: the decoder's dense codes (rows x n_components) stay small
MAX_CSR_BLOCK_ROWS = 16384

#: a data-driven start (SPA, random) looks at the leading rows of the first pass: about this
#: many bytes of dense rows, at least one block. SPA finds purer samples among more of them:
#: on DIR (n = 100, N = 5000) all 5000 samples instead of the first block's 2097 brought the
#: start's ln error from 2.1 to 1.8, and the geometric schedule recovered 3 seeds of 3 from
#: it instead of 2
INIT_BYTES = 1 << 26


def init_rows(n_features, itemsize, first_rows, n_samples=None):
    """Rows a data-driven start looks at: ``INIT_BYTES`` of dense rows, at least
    ``first_rows`` (the first block's), at most ``n_samples``."""
    rows = max(int(first_rows), INIT_BYTES // max(1, n_features * itemsize))
    return rows if n_samples is None else min(rows, int(n_samples))


def leading_rows(blocks, n_features, n_samples=None):
    """The leading rows of a pass, copied, for a data-driven start (see ``init_rows``).

    Parameters
    ----------
    blocks : iterator of {ndarray, csr_matrix}
        A pass's blocks; taken until enough rows (a reused buffer is copied at once).
    n_features : int or None
        None: the first block's width.
    n_samples : int or None

    Returns
    -------
    {ndarray, csr_matrix} of shape (rows, n_features)
    """
    first = next(iter(blocks))
    n_features = first.shape[1] if n_features is None else n_features
    want = init_rows(n_features, first.dtype.itemsize, first.shape[0], n_samples)
    if sp.issparse(first):
        taken, rows = [first.copy()], first.shape[0]
        for block in blocks:
            if rows >= want:
                break
            taken.append(block[: want - rows].copy())
            rows += taken[-1].shape[0]
        return sp.vstack(taken, format="csr") if len(taken) > 1 else taken[0]
    out = np.empty((want, n_features), dtype=first.dtype)
    rows = min(first.shape[0], want)
    out[:rows] = first[:rows]
    for block in blocks:
        if rows >= want:
            break
        take = min(block.shape[0], want - rows)
        out[rows:rows + take] = block[:take]
        rows += take
    return out[:rows]


def default_csr_block_rows(n_samples, nnz, itemsize=8, index_itemsize=4):
    """Rows per CSR block so that a block stores about 16 MiB of values and indices."""
    bytes_per_row = nnz / max(n_samples, 1) * (itemsize + index_itemsize) + index_itemsize
    return int(min(MAX_CSR_BLOCK_ROWS, max(64, _BLOCK_BYTES // max(bytes_per_row, 1))))


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
    block_rows : int or None
        Rows of a full block where blocks have a fixed height; None for streams.
    """

    n_features = None
    n_samples = None
    dtype = np.dtype(np.float64)
    block_rows = None

    def blocks(self, start=0, epoch=0):
        """Yield the row blocks of one pass, from sample ``start`` of that pass to its end.

        Parameters
        ----------
        start : int, default=0
            Samples of the pass to skip, counted in the pass's (possibly shuffled) order.
        epoch : int, default=0
            Index of the pass; selects the block order of shuffling sources.

        Yields
        ------
        block : {ndarray, csr_matrix} of shape (n_rows, n_features)
            Valid until two more blocks have been taken from the same iterator.
        """
        raise NotImplementedError

    def reserve_buffers(self, n_buffers):
        """Keep at least ``n_buffers`` blocks valid at once (the ring size of reused buffers).

        :class:`Prefetch` calls it because blocks read ahead are alive together; sources that
        do not reuse buffers ignore it.
        """


# -- block order and ranges (shared by the sources with a known length) ------------------------

def _check_seed(random_state):
    """An int seed from None (fresh entropy), an int >= 0 or a numpy Generator."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state >= 0:
            return int(random_state)
    raise ValueError(
        f"random_state must be None, an int >= 0 or a numpy Generator, got {random_state!r}."
    )


def _check_block_rows(block_rows):
    if block_rows is None:
        return None
    if isinstance(block_rows, bool) or not isinstance(block_rows, numbers.Integral) or (
        block_rows < 1
    ):
        raise ValueError(f"block_rows must be an int >= 1 or None, got {block_rows!r}.")
    return int(block_rows)


def _check_position(start, epoch):
    for name, value in (("start", start), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}.")
    return int(start), int(epoch)


def block_order(n_blocks, epoch=0, seed=None):
    """Order in which one pass visits the aligned blocks.

    Parameters
    ----------
    n_blocks : int
    epoch : int
        Index of the pass.
    seed : int or None
        None: natural order. An int: the permutation ``default_rng([seed, epoch])`` draws, so
        every pass has its own order and any pass's order can be reproduced later.

    Returns
    -------
    order : ndarray of shape (n_blocks,), int64
        Block indices in the order of the pass.
    """
    if seed is None:
        return np.arange(n_blocks, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n_blocks).astype(np.int64)


def pass_ranges(n_samples, block_rows, order=None, start=0):
    """Row ranges ``(row_start, row_stop)`` of one pass over aligned blocks.

    Block ``b`` covers rows ``[b * block_rows, min((b + 1) * block_rows, n_samples))``; the pass
    visits them in ``order`` and skips its first ``start`` samples, so the first range may be
    the tail of a block.

    Parameters
    ----------
    n_samples, block_rows : int
    order : ndarray of shape (n_blocks,) or None
        From :func:`block_order`; None is the natural order.
    start : int
        Samples of the pass to skip, counted in the pass's order.

    Yields
    ------
    (row_start, row_stop) : tuple of int
    """
    n_blocks = -(-n_samples // block_rows)
    if order is None:
        order = range(n_blocks)
    skip = start
    for b in order:
        row_start = int(b) * block_rows
        row_stop = min(row_start + block_rows, n_samples)
        if skip:
            if row_stop - row_start <= skip:
                skip -= row_stop - row_start
                continue
            row_start, skip = row_start + skip, 0
        yield row_start, row_stop


# -- in-memory data ------------------------------------------------------------------------------

class ArraySource(Source):
    """An in-memory dense array or CSR matrix, served in row blocks.

    Blocks are views (no copies): dense row slices, and CSR rows sharing the matrix's values
    and column indices (:func:`csr_rows`).

    Parameters
    ----------
    X : {ndarray, csr_matrix} of shape (n_samples, n_features)
        Already validated: float32/float64, finite, C-ordered if dense.
    block_rows : int, optional
        Rows per block; default about 16 MiB of dense rows.
    shuffle : bool, default=False
        Visit the blocks of every pass in a new seeded order (rows inside a block keep their
        order).
    random_state : int, numpy Generator or None
        Seed of the block orders (None: fresh entropy, drawn once).

    Attributes
    ----------
    seed : int or None
        The seed of the block orders (resolved from ``random_state``); None without shuffling.
        A checkpoint that records it can reproduce the order of any pass.
    """

    def __init__(self, X, block_rows=None, shuffle=False, random_state=None):
        self.X = X
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        if sp.issparse(X):  # sized by stored values, as HDF5Source does, not by width
            default = default_csr_block_rows(self.n_samples, X.nnz, X.dtype.itemsize,
                                             X.indices.dtype.itemsize)
        else:
            default = default_block_rows(self.n_features, X.dtype.itemsize)
        self.block_rows = _check_block_rows(block_rows) or default
        self.shuffle = bool(shuffle)
        self.random_state = random_state
        self.seed = _check_seed(random_state) if self.shuffle else None

    def blocks(self, start=0, epoch=0):
        start, epoch = _check_position(start, epoch)
        return self._blocks(start, epoch)

    def _blocks(self, start, epoch):
        n_blocks = -(-self.n_samples // self.block_rows)
        order = block_order(n_blocks, epoch, self.seed) if self.shuffle else None
        rows = csr_rows if sp.issparse(self.X) else (lambda X, lo, hi: X[lo:hi])
        for row_start, row_stop in pass_ranges(self.n_samples, self.block_rows, order, start):
            yield rows(self.X, row_start, row_stop)


def csr_rows(X, row_start, row_stop):
    """Rows ``[row_start, row_stop)`` of a CSR matrix, sharing its values and column indices.

    scipy's row slice copies both (a quarter of an "sgd" pass over in-memory CSR rows at 100
    features went into that copy); here only the block's row pointers are new.

    Parameters
    ----------
    X : csr_matrix of shape (n_samples, n_features)
    row_start, row_stop : int

    Returns
    -------
    csr_matrix of shape (row_stop - row_start, n_features)
        A view: never write into it.
    """
    lo, hi = X.indptr[row_start], X.indptr[row_stop]
    block = sp.csr_matrix((row_stop - row_start, X.shape[1]), dtype=X.dtype)
    # assigned, not passed to the constructor, which copies a view of less than half its base
    block.data = X.data[lo:hi]
    block.indices = X.indices[lo:hi]
    block.indptr = X.indptr[row_start:row_stop + 1] - lo
    return block


class IterableSource(Source):
    """A stream of row blocks from any iterable (a generator, a list of chunks, ...).

    Each block is checked: 2-D, the same width as the first block, a float dtype, finite
    (:func:`check_block`). A generator can be consumed once; a re-iterable (a list) or a function
    that returns a new iterable supports several passes.

    Parameters
    ----------
    iterable : iterable of {ndarray, sparse matrix} of shape (n_rows, n_features), or callable
        The blocks; a callable without arguments is called at the start of every pass and must
        return the pass's iterable.
    n_features : int, optional
        Known width; otherwise taken from the first block.
    n_samples : int, optional
        Rows of one pass when known (checked at the end of every full pass); lets ``fit`` make
        several passes over a re-iterable stream. None: unbounded or unknown.
    """

    def __init__(self, iterable, n_features=None, n_samples=None):
        self.iterable = iterable
        self.n_features = n_features
        self.dtype = None
        self.n_samples = n_samples
        self._consumed = False  # a one-shot iterator ran to its end

    def blocks(self, start=0, epoch=0):
        """Yield the stream's blocks from sample ``start`` (``epoch`` is ignored: no shuffling)."""
        start, _ = _check_position(start, epoch)
        iterable = self.iterable
        if callable(iterable) and not hasattr(iterable, "__iter__"):
            iterable = iterable()
        iterator = iter(iterable)
        one_shot = iterator is self.iterable  # a generator given directly, not made per pass
        if one_shot and self._consumed:
            raise ValueError(
                "IterableSource: the iterator was consumed by an earlier pass; a generator yields "
                "its blocks once. Pass a list of blocks or a function that returns a new "
                "generator (IterableSource(make_blocks)) to make several passes."
            )
        return self._blocks(iterator, one_shot, start)

    def _blocks(self, iterator, one_shot, start):
        skip = start
        n_rows = 0
        for index, block in enumerate(iterator):
            block = check_block(block, self.n_features, self.dtype, where=f"block {index}")
            if self.n_features is None:
                self.n_features = block.shape[1]
            if self.dtype is None:
                self.dtype = block.dtype
            n_rows += block.shape[0]
            if skip:
                if block.shape[0] <= skip:
                    skip -= block.shape[0]
                    continue
                block, skip = block[skip:], 0
            yield block
        self._consumed = one_shot
        if start == 0 and self.n_samples is not None and n_rows != self.n_samples:
            raise ValueError(
                f"IterableSource: expected n_samples={self.n_samples} rows in a pass, the "
                f"iterable yielded {n_rows}. Pass the right n_samples, or None if unknown."
            )


# -- reading ahead ------------------------------------------------------------------------------

_END = object()
_FAILED = object()


def prefetch_blocks(blocks, depth=2):
    """Iterate ``blocks`` in a background thread, at most ``depth`` blocks ahead.

    The reader thread takes the next blocks while the caller works on the current one; the
    overlap is real where the caller's work releases the GIL (Numba ``nogil`` kernels, BLAS).
    At most ``depth + 1`` blocks are in flight: the caller's and ``depth`` read ahead (a
    source with a ring of reused buffers needs ``depth`` more buffers, see :class:`Prefetch`).

    Parameters
    ----------
    blocks : iterable of blocks
        Iterated only in the reader thread (and closed there when the caller stops).
    depth : int, default=2

    Yields
    ------
    block
        The blocks of ``blocks`` in order. An exception raised by ``blocks`` is re-raised here
        with its type and message (the reader's traceback attached). Closing this generator
        early (a ``break``) stops the reader and waits up to a few seconds for it to finish
        the read in progress.
    """
    ready = queue.SimpleQueue()  # bounded by the slots, not by the queue
    # a slot per block in flight: the caller's current one and ``depth`` read ahead; the
    # caller frees its slot when it asks for the next block
    slots = threading.Semaphore(depth + 1)
    stop = threading.Event()

    def read():
        iterator = iter(blocks)
        try:
            while True:
                slots.acquire()
                if stop.is_set():
                    return
                try:
                    block = next(iterator)
                except StopIteration:
                    ready.put((_END, None))
                    return
                ready.put((block, None))
                del block  # only the queue and the caller hold blocks
        except BaseException as exc:  # noqa: BLE001 - handed over to the caller, not swallowed
            ready.put((_FAILED, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # run the source's cleanup in the thread that ran it
                except Exception:  # noqa: BLE001 - cleanup of an abandoned pass
                    pass

    reader = threading.Thread(target=read, name="streamnmf-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item, exc = ready.get()
            if item is _END:
                return
            if item is _FAILED:
                raise exc
            yield item
            del item
            slots.release()  # the caller asks for the next block: it is done with this one
    finally:
        stop.set()
        slots.release()  # wake a reader that waits for a free slot
        reader.join(_PREFETCH_JOIN_SECONDS)
        while True:  # drop blocks read ahead
            try:
                ready.get_nowait()
            except queue.Empty:
                break


class Prefetch(Source):
    """Read the blocks of another source in a background thread while the caller computes.

    Parameters
    ----------
    source : Source
        (:func:`~streamnmf.io.as_source` makes one of what ``fit`` accepts.)
    depth : int, default=2
        Blocks read ahead. At most ``depth + 1`` blocks are in flight (the caller's and
        ``depth`` read ahead). A source that reuses buffers is told to keep ``depth`` more of
        them (``3 + depth``) so that a block stays valid while two more are taken, as without
        prefetching.

    Notes
    -----
    Blocks cross threads, so a source whose blocks share memory must say so through
    :meth:`Source.reserve_buffers` (the built-in sources do); an iterable that refills one
    array in place cannot be prefetched. h5py holds the GIL during most of a read: the reads
    overlap with the nogil kernels and BLAS, not with Python code.
    """

    def __init__(self, source, depth=2):
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}.")
        if not isinstance(source, Source):
            raise TypeError(
                f"Prefetch reads ahead of a Source, got {type(source).__name__}; wrap it first "
                "with streamnmf.io.as_source.")
        self.source = source
        self.depth = int(depth)
        self.source.reserve_buffers(RING_BUFFERS + self.depth)

    # the wrapped source may learn its width and dtype from its first block (IterableSource)
    n_features = property(lambda self: self.source.n_features)
    n_samples = property(lambda self: self.source.n_samples)
    dtype = property(lambda self: self.source.dtype)
    block_rows = property(lambda self: getattr(self.source, "block_rows", None))

    def blocks(self, start=0, epoch=0):
        return prefetch_blocks(self.source.blocks(start=start, epoch=epoch), self.depth)

    def reserve_buffers(self, n_buffers):
        self.source.reserve_buffers(n_buffers + self.depth)

    def __repr__(self):
        return f"Prefetch({self.source!r}, depth={self.depth})"


# -- validation ----------------------------------------------------------------------------------

def _check_finite(block, where):
    """Raise, naming the first bad row, if a dense or CSR block holds NaN or infinity.

    The sum of finite data is finite (NaN and inf propagate), so one single-threaded reduction
    (numpy's SIMD sum, about 2x faster than ``np.isfinite(...).all()`` and free of the BLAS
    thread wake-ups that make ``np.dot`` slow on a busy machine) settles the common case; only
    when the sum is not finite (NaN, inf, or an overflow of huge values) the exact check runs.
    """
    sparse = sp.issparse(block)
    flat = (block.data if sparse else block).reshape(-1)
    if not flat.size:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        quick = np.add.reduce(flat)
    if np.isfinite(quick):
        return
    bad = ~np.isfinite(flat)
    if not bad.any():
        return
    if sparse:
        rows = np.unique(np.searchsorted(block.indptr, np.flatnonzero(bad), side="right") - 1)
    else:
        rows = np.flatnonzero(bad.reshape(block.shape).any(axis=1))
    raise ValueError(
        f"{where}: the data contain NaN or infinity in row {rows[0]} ({rows.size} row(s) in "
        "all); remove or impute those samples first."
    )


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

    Returns
    -------
    block : {ndarray, csr_matrix} of shape (n_rows, n_features)
        float32/float64; integer and boolean data become float64.
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
    if not sp.issparse(block):
        block = np.ascontiguousarray(block)
    _check_finite(block, where)
    return block
