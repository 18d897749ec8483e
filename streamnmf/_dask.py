"""The Dask backend: every stage of a full-batch update is one map-reduce over row blocks.

The estimator's ``fit`` runs its stages with the executor of :func:`make_executor` when it has
a ``client`` or ``X`` is a dask array. A stage of ``update="stagewise"`` or ``"gd"`` (a rule with ``per_sample=False``)
fixes the decoding matrix ``D`` and the threshold ``alpha``; the blocks are independent given
those two, so a stage is

* **broadcast** ``D`` (n_features x n_components) once: one key of the stage's graph, sent to
  the first worker that needs it and copied worker to worker from there (``alpha`` is a float
  in the tasks);
* **map** the row blocks to their :class:`~streamnmf._engine.StageStats` (decode, then
  ``S_zy = Z^T Y``, ``S_zz = Z^T Z`` and a few vectors; ``_engine.block_stats`` for one block)
  on the workers, with single-threaded BLAS (the parallelism is Dask's); consecutive blocks
  are grouped into tasks of about 64 MiB (``_groups``: fewer tasks, less scheduling);
* **reduce** the statistics in a tree that sums ``MERGE_FAN_IN`` consecutive parts per task
  (``ceil(log_8(tasks))`` levels), in the fixed order of the blocks, so the sum does not depend
  on which worker ran what: a fit gives the same components, bit for bit, on any number of
  workers;
* bring the one reduced ``StageStats`` to the client, where the stage loop solves for the next
  components and the next ``D`` (``O(n_components^2 n_features)``) and runs the listeners
  (early stop, callback, checkpoint) exactly as in the single-process fit.

Exactness: the statistics are the same sums as in the single-process fit, grouped differently,
so the components agree to round-off (about 1e-14 relative after a few stages on float64
data; the tests require 1e-10), not bit for bit.

Fault tolerance: a map task is a pure function of (block, ``D``, ``alpha``) and a merge task a
pure function of its inputs (it copies, never mutates), so a worker lost mid-stage only makes
Dask recompute the lost tasks (``D`` too: it is a graph key, not scattered data); the reduction
only ever sees the statistics of complete blocks. Tasks are submitted with ``retries``; if
scattered in-memory blocks are lost with their worker, the client scatters them again and
reruns the stage (``STAGE_ATTEMPTS``).

Inputs: an HDF5 file (a path, ``(path, name)``, an h5py object or an
:class:`~streamnmf.io.HDF5Source`): the workers open the file themselves, by path, and read
their rows; an in-memory array or sparse matrix: scattered to the workers once, in row blocks;
a dask array: its row chunks (columns rechunked to one chunk), computed in every stage.
"""

import contextlib
import math
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict

import numpy as np

from . import _engine
from .io import input_files
from ._config import get_config
from ._driver import InProcess
from ._engine import single_threaded_blas
from .io.sources import (
    ArraySource, Prefetch, Source, block_order, check_block, default_block_rows, init_rows,
    leading_rows, pass_ranges,
)

__all__ = ["make_executor", "DaskStages", "local_cluster"]

INSTALL_HINT = "pip install 'streamnmf[dask]'"

#: retries of a failed task (an exception raised in it, e.g. a transient read error)
RETRIES = 2

#: attempts of a stage whose scattered blocks were lost with their worker (or whose tasks
#: killed too many workers, ``KilledWorker``)
STAGE_ATTEMPTS = 3

#: grouping of consecutive blocks into map tasks (see ``_groups``): about
#: ``get_config()["dask_task_bytes"]`` (64 MiB) a task, at least ``MIN_MAP_TASKS`` and at most
#: ``MAX_MAP_TASKS`` tasks a stage (16 MiB blocks: a 1.6 GB pass is 32 tasks of 3 blocks, a
#: 1-TB pass 60k blocks in 7.6k tasks of 8)
MIN_MAP_TASKS = 32
MAX_MAP_TASKS = 8192

#: statistics summed by one merge task: 8 cuts the merges of a 32-task stage from 31 to 5
#: (each task costs the scheduler a few ms; a merge of 8 x 0.9 MB takes ~3 ms of adds)
MERGE_FAN_IN = 8

#: sources opened on a worker, by fit token; the oldest is closed beyond this many
_SOURCE_CACHE_SIZE = 4


#: dask settings of the clusters streamnmf starts (``local_cluster``, ``streamnmf fit
#: --workers``). On one machine the scheduler and the nannies run in the client's process and,
#: with the workers, share the cores the tasks need; dask's default housekeeping there (every
#: nanny and worker polls its memory 10 times a second, every server ticks its event loop every
#: 20 ms and reads system counters twice a second) kept the client process at 0.33-0.38 CPU-s
#: a pass of ~3 s with two workers on two cores, 0.19-0.23 with these settings (bench/
#: dask_scaling.py --n-samples 600000). Memory is still checked every second: a stage holds a
#: few blocks.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.tick.interval": "200ms",
}


def local_cluster(n_workers=None, **kwargs):
    """A ``LocalCluster`` set up for fitting on this machine.

    One single-threaded worker process per core by default (the tasks are BLAS-bound and hold
    the GIL in places: processes, not threads) and quieter housekeeping
    (``LOCAL_CLUSTER_CONFIG``: on a machine the workers share with the scheduler, dask's
    default monitors took 0.15 CPU-s more a pass of ~3 s). ``streamnmf fit --workers N`` starts
    this cluster.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; dask's default (one per core) when None.
    **kwargs
        Passed on to ``distributed.LocalCluster`` (they override ``threads_per_worker=1``,
        ``processes=True`` and ``dashboard_address=":0"``, a free port for the dashboard).

    Returns
    -------
    distributed.LocalCluster
        Connect with ``Client(cluster)``; close both when done.
    """
    dask = _import_dask()
    from distributed import LocalCluster

    kwargs = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0", **kwargs}
    # read when the servers start; the nannies keep a copy for the workers they (re)start
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return LocalCluster(n_workers=n_workers, **kwargs)


def _import_dask():
    try:
        import dask
    except ImportError as exc:  # dask is an optional extra
        raise ImportError(
            "Fitting with a Dask client or on a dask array needs dask and distributed: "
            f"{INSTALL_HINT}"
        ) from exc
    return dask


# -- worker side ---------------------------------------------------------------------------------

_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 64 << 20
_malloc_tuned = []


def _tune_malloc(enabled):
    """Once per process: let glibc keep freed buffers of up to 32 MiB instead of unmapping them.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to return memory to the
    OS early), which also pins the mmap threshold at 128 KiB: every larger allocation is a
    fresh mmap, faulted page by page. HDF5 allocates a chunk-sized temporary per chunk it reads,
    so a 16 MiB block read cost ~4000 page faults and took 4-5x longer than in a plain process
    (measured: 0.08-0.11 s vs 0.012-0.02 s per 64 MB; decoding the block adds more). With the
    thresholds at 32 / 64 MiB the buffers are reused; a worker may keep up to 64 MiB of freed
    memory per malloc arena (reported by Dask as unmanaged memory). Only in processes whose
    environment has ``MALLOC_TRIM_THRESHOLD_`` (the nanny's workers), only with glibc, and
    only when ``enabled`` (the client's ``get_config()["dask_malloc_tuning"]``).
    """
    if _malloc_tuned or not enabled:
        return
    _malloc_tuned.append(True)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, _TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_SOURCES = OrderedDict()
_SOURCES_LOCK = threading.Lock()


def _worker_source(token, source):
    """The copy of ``source`` this process keeps open for the fit ``token``.

    Every task unpickles its own copy of the (small) source; keeping the first one per process
    means a worker opens the file (and, for CSR, reads ``indptr``) once per fit, not per block.
    """
    with _SOURCES_LOCK:
        kept = _SOURCES.get(token)
        if kept is not None:
            _SOURCES.move_to_end(token)
            return kept
        _SOURCES[token] = source
        while len(_SOURCES) > _SOURCE_CACHE_SIZE:
            _, old = _SOURCES.popitem(last=False)
            close = getattr(old, "close", None)
            if close is not None:
                close()
        return source


def _accumulate(blocks, D, alpha, kind, with_sum_y):
    """Statistics of a task's blocks, decoded with ``D`` and ``alpha`` and summed in order.

    One block gives exactly ``_engine.block_stats``; several are accumulated into one
    :class:`StageStats` as the single-process loop does (no temporary per block).
    """
    stats = _engine.StageStats(D.shape[1], D.shape[0], with_sum_y)
    # Workers started by a Dask nanny already have OPENBLAS_NUM_THREADS=1 (and the OMP/MKL
    # twins: ``distributed.nanny.pre-spawn-environ``); this covers threads of the client
    # process (LocalCluster(processes=False), the threaded scheduler) and nanny-less workers.
    with single_threaded_blas():
        for Y in blocks:
            Y = _engine.in_arithmetic(Y, D)
            stats.add(Y, *_engine.decode(Y, D, alpha, kind), with_products=True)
    return stats


def _forget_source(token):
    """Close and drop this process's copy of a fit's source (run on every worker at the end)."""
    with _SOURCES_LOCK:
        source = _SOURCES.pop(token, None)
    close = getattr(source, "close", None)
    if close is not None:
        close()


async def _forget_source_async(token):
    """``_forget_source`` as a coroutine: ``client.run(..., wait=False)`` needs one."""
    _forget_source(token)


def _read_stats(source, token, ranges, D, alpha, kind, with_sum_y, tune_malloc):
    """Map task of a random-access source: read the row ranges ``[(start, stop), ...]``."""
    _tune_malloc(tune_malloc)
    source = _worker_source(token, source)
    blocks = (source.read(row_start, row_stop) for row_start, row_stop in ranges)
    return _accumulate(blocks, D, alpha, kind, with_sum_y)


def _slice_stats(blocks, slices, n_features, dtype, D, alpha, kind, with_sum_y, check,
                 tune_malloc):
    """Map task of in-memory blocks or dask chunks: rows ``[lo, hi)`` of each."""
    _tune_malloc(tune_malloc)
    def rows():
        for block, (lo, hi) in zip(blocks, slices):
            if check:  # a dask chunk: any array-like; validated like every block of a stream
                block = check_block(block, n_features, None, where="dask chunk")
                if block.dtype != dtype:
                    block = block.astype(dtype)
            yield block if (lo == 0 and hi == block.shape[0]) else block[lo:hi]

    return _accumulate(rows(), D, alpha, kind, with_sum_y)


def _merge(*parts):
    """Sum of statistics; a new object (inputs are never modified, so a retry is safe)."""
    first = parts[0]
    total = _engine.StageStats(first.S_zz.shape[0], first.S_zy.shape[1],
                               first.sum_y is not None)
    for part in parts:
        total.merge(part)
    return total


# -- client side: the inputs ---------------------------------------------------------------------

class _AlignedBlocks:
    """Inputs read in the source's aligned blocks, in its (possibly shuffled) block order."""

    def pass_ranges(self, epoch, start):
        n_blocks = -(-self.n_samples // self.block_rows)
        order = block_order(n_blocks, epoch, self.seed) if self.seed is not None else None
        return pass_ranges(self.n_samples, self.block_rows, order, start)


def _chunk_leaf(runner, inp, chunks, bounds, ranges, D_ref, alpha, kind, with_sum_y, check,
                key):
    """One map task over the row ranges ``[(start, stop), ...]`` of ``chunks`` (futures or
    delayed blocks) whose rows start at ``bounds``."""
    blocks, slices = [], []
    for row_start, row_stop in ranges:
        c = int(np.searchsorted(bounds, row_start, side="right")) - 1
        blocks.append(chunks[c])
        slices.append((row_start - int(bounds[c]), row_stop - int(bounds[c])))
    return runner.delayed(_slice_stats)(
        blocks, slices, inp.n_features, inp.dtype, D_ref, alpha, kind, with_sum_y, check,
        runner.tune_malloc, dask_key_name=key,
    )


class _RandomAccess(_AlignedBlocks):
    """A source that reads any row range where it runs (HDF5Source: ``read(start, stop)``)."""

    def __init__(self, source):
        self.source = source
        self.n_samples, self.n_features = source.n_samples, source.n_features
        self.dtype = np.dtype(source.dtype)
        self.block_rows = int(source.block_rows)
        self.seed = getattr(source, "seed", None) if getattr(source, "shuffle", False) else None
        self.row_bytes = self.n_features * self.dtype.itemsize
        self.token = f"streamnmf-source-{uuid.uuid4().hex}"

    def leading(self, runner):
        blocks = (self.source.read(lo, hi) for lo, hi in self.pass_ranges(0, 0))
        rows = leading_rows(blocks, self.n_features, self.n_samples)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()  # the client needs no open handle; a later read reopens the file
        return rows

    def prepare(self, runner):
        pass

    def leaf(self, runner, ranges, D_ref, alpha, kind, with_sum_y, key):
        return runner.delayed(_read_stats)(
            self.source, self.token, ranges, D_ref, alpha, kind, with_sum_y, runner.tune_malloc,
            dask_key_name=key,
        )

    def release(self, runner):
        """Close the file on the workers (best effort: a worker may be gone)."""
        try:
            if runner.client is not None:
                runner.client.run(_forget_source_async, self.token, wait=False,
                                  on_error="ignore")
            _forget_source(self.token)  # a thread cluster or the local schedulers
        except Exception:  # noqa: BLE001 - cleanup must not hide the fit's outcome
            pass


class _InMemory(_AlignedBlocks):
    """An in-memory array or CSR matrix, scattered to the workers once in aligned row blocks."""

    def __init__(self, source):
        self.source = source
        self.X = source.X
        self.n_samples, self.n_features = source.X.shape
        self.dtype = np.dtype(source.dtype)
        self.block_rows = int(source.block_rows)
        self.seed = source.seed if source.shuffle else None
        self.row_bytes = self.n_features * self.dtype.itemsize
        self.futures = None

    def leading(self, runner):
        blocks = (self.X[lo:hi] for lo, hi in self.pass_ranges(0, 0))
        return leading_rows(blocks, self.n_features, self.n_samples)

    def _block(self, b):
        return self.X[b * self.block_rows:(b + 1) * self.block_rows]

    def prepare(self, runner):
        n_blocks = -(-self.n_samples // self.block_rows)
        if runner.client is None:
            self.futures = [self._block(b) for b in range(n_blocks)]
            return
        if self.futures is None:
            self.futures = runner.client.scatter([self._block(b) for b in range(n_blocks)],
                                                 hash=False)
            return
        # after a loss: scatter again only the blocks whose every copy is gone
        for b, future in enumerate(self.futures):
            if future.status != "finished":
                self.futures[b] = runner.client.scatter(self._block(b), hash=False)

    def leaf(self, runner, ranges, D_ref, alpha, kind, with_sum_y, key):
        bounds = np.arange(len(self.futures)) * self.block_rows
        return _chunk_leaf(runner, self, self.futures, bounds, ranges, D_ref, alpha, kind,
                           with_sum_y, False, key)

    def release(self, runner):
        self.futures = None


class _DaskArray:
    """A dask array: one map task per row chunk (columns in one chunk), computed every stage."""

    def __init__(self, X):
        if X.ndim != 2:
            raise ValueError(
                f"X: expected a 2-D dask array of shape (n_samples, n_features), got shape "
                f"{X.shape}."
            )
        if any(math.isnan(c) for c in X.chunks[0]) or any(math.isnan(c) for c in X.shape):
            raise ValueError(
                "X: the dask array has unknown chunk sizes; call X.compute_chunk_sizes() (or "
                "to_dask_array(lengths=True)) first: every stage must know where each row lies."
            )
        dtype = np.dtype(X.dtype)
        if dtype not in (np.float32, np.float64):
            if not (np.issubdtype(dtype, np.number) or dtype == bool):
                raise ValueError(
                    f"X: expected numeric data, got dtype {dtype}. Convert it with "
                    "X.astype(np.float64)."
                )
            X = X.astype(np.float64)
            dtype = np.dtype(np.float64)
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})  # a task decodes whole rows
        self.X = X
        self.n_samples, self.n_features = (int(v) for v in X.shape)
        self.dtype = dtype
        self.bounds = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        # the block height the single-process fit of the same array would use: its first block
        # (the init) and the checkpoint's record of the read order are the same
        self.block_rows = default_block_rows(self.n_features, dtype.itemsize)
        self.seed = None
        self.row_bytes = 0  # one task per chunk: the user chose the chunks
        self.chunks = None

    def pass_ranges(self, epoch, start):
        bounds = self.bounds
        for c in range(len(bounds) - 1):
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            if hi <= start or hi == lo:
                continue
            yield max(lo, start), hi

    def leading(self, runner):
        head = self.X[: init_rows(self.n_features, self.dtype.itemsize, self.block_rows,
                                  self.n_samples)]
        block = runner.compute_one(head)
        return check_block(block, self.n_features, None, where="X (dask array)").astype(
            self.dtype, copy=False)

    def prepare(self, runner):
        if self.chunks is None:
            self.chunks = self.X.to_delayed().ravel().tolist()

    def leaf(self, runner, ranges, D_ref, alpha, kind, with_sum_y, key):
        return _chunk_leaf(runner, self, self.chunks, self.bounds, ranges, D_ref, alpha, kind,
                           with_sum_y, True, key)

    def release(self, runner):
        self.chunks = None


def _as_input(X, validate):
    """What the workers map over; ``validate`` turns other data into a validated source, as
    the single-process fit does."""
    if type(X).__module__.startswith("dask.") and hasattr(X, "to_dask_array"):
        X = X.to_dask_array(lengths=True)  # a dask DataFrame
    if type(X).__module__.startswith("dask.") and hasattr(X, "chunks"):
        return _DaskArray(X)
    source = validate(X)  # in-memory data by scikit-learn's rules
    while isinstance(source, Prefetch):  # reading ahead is the workers' business now
        source = source.source
    if isinstance(source, ArraySource):
        return _InMemory(source)
    if callable(getattr(source, "read", None)) and getattr(source, "block_rows", None) and (
        source.n_samples is not None
    ):
        return _RandomAccess(source)
    raise ValueError(
        f"The Dask backend needs random access to the rows of X, got {type(source).__name__}: "
        "pass an HDF5 file (path or HDF5Source), an in-memory array or a dask array. A stream "
        "of blocks can only be fitted sequentially: without a client, or with partial_fit."
    )


# -- client side: running a stage ----------------------------------------------------------------

class _Runner:
    """Submits the stage graphs: to ``client`` when given, else to dask's current scheduler."""

    def __init__(self, dask, client):
        self.dask = dask
        self.delayed = dask.delayed
        self.client = client
        # read once, in the thread that starts the fit (the tasks run elsewhere)
        config = get_config()
        self.task_bytes = config["dask_task_bytes"]
        self.tune_malloc = config["dask_malloc_tuning"]

    def compute_one(self, collection):
        if self.client is not None:
            return self.client.compute(collection).result()
        return self.dask.compute(collection)[0]

    def broadcast(self, D, token):
        """``D`` as one key of the stage's graph: sent once, to the worker that first needs it,
        copied worker to worker to the others (like ``scatter(broadcast=True)``) and, unlike
        scattered data, recomputed from the graph if every copy is lost with its workers."""
        return self.delayed(D, name=f"streamnmf-D-{token}", traverse=False)

    def run(self, inp, ranges, D, alpha, kind, with_sum_y):
        """Statistics of the rows ``ranges`` decoded with ``D`` and ``alpha``; the reduced
        :class:`StageStats`, summed in a fixed tree (``MERGE_FAN_IN``) over the ranges."""
        failures = _lost_errors()
        for attempt in range(STAGE_ATTEMPTS):
            token = uuid.uuid4().hex[:12]
            D_ref = parts = root = future = None
            try:
                inp.prepare(self)
                D_ref = self.broadcast(D, token)
                parts = [
                    inp.leaf(self, group, D_ref, alpha, kind, with_sum_y,
                             key=f"streamnmf-stats-{token}-{i}")
                    for i, group in enumerate(_groups(ranges, inp.row_bytes, self.task_bytes))
                ]
                level = 0
                while len(parts) > 1:  # in block order: a fixed summation tree
                    parts = [
                        self.delayed(_merge)(*parts[j:j + MERGE_FAN_IN],
                                             dask_key_name=f"streamnmf-merge-{token}-{level}-{j}")
                        if j + 1 < len(parts) else parts[j]
                        for j in range(0, len(parts), MERGE_FAN_IN)
                    ]
                    level += 1
                root = parts[0]
                if self.client is None:
                    return self.dask.compute(root)[0]
                future = self.client.compute(root, retries=RETRIES)
                return future.result()
            except failures:
                # A worker died with the only copies of scattered inputs (D, an in-memory
                # block), a connection to it closed mid-call, or a task killed its workers
                # too often: give the scheduler a moment, scatter again, rerun the stage.
                if attempt + 1 == STAGE_ATTEMPTS:
                    raise
                time.sleep(0.5 * (attempt + 1))
            finally:
                del D_ref, parts, root, future  # release the stage's keys on the cluster
        raise AssertionError("unreachable")


def _groups(ranges, row_bytes=0, task_bytes=64 << 20):
    """Consecutive ranges per map task.

    A task costs the scheduler and the worker a few ms besides its compute (measured here:
    ~3 ms of client CPU and ~3 ms of worker CPU per task, against ~35 ms to decode a 16 MiB
    block), so blocks are grouped up to ``task_bytes`` a task, but never below
    ``MIN_MAP_TASKS`` tasks a stage (work to balance over the workers) nor above
    ``MAX_MAP_TASKS``. The grouping depends only on the stage's ranges, never on the cluster,
    so the summation order (and the result, bit for bit) is the same on any number of workers.

    Parameters
    ----------
    ranges : list of (row_start, row_stop)
    row_bytes : int
        Bytes of a dense row (an upper bound for CSR rows); 0: one range per task.
    task_bytes : int
        Bytes a task reads at most (unless ``MAX_MAP_TASKS`` needs more).
    """
    n = len(ranges)
    rows = max((hi - lo for lo, hi in ranges), default=1)
    size = max(1, task_bytes // max(rows * row_bytes, 1)) if row_bytes else 1
    size = min(size, max(1, n // MIN_MAP_TASKS))
    size = max(size, -(-n // MAX_MAP_TASKS))
    return [ranges[i:i + size] for i in range(0, n, size)]


def _lost_errors():
    import concurrent.futures

    errors = [concurrent.futures.CancelledError]
    try:
        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError

        errors += [KilledWorker, CommClosedError]
    except ImportError:  # pragma: no cover - dask without distributed: no client either
        pass
    return tuple(errors)


def _plan_stage(inp, position, need):
    """Row ranges of the next ``need`` samples from ``position`` = (pass, samples of the pass),
    in the order the single-process fit reads them, and the position after them."""
    epoch, offset = position
    ranges = []
    while need > 0:
        for lo, hi in inp.pass_ranges(epoch, offset):
            take = min(hi - lo, need)
            ranges.append((lo, lo + take))
            offset += take
            need -= take
            if need == 0:
                break
        if offset >= inp.n_samples:
            epoch, offset = epoch + 1, 0
    return ranges, (epoch, offset)


def _sequential_message(update):
    what = f"update={update!r}" if update is not None else "This estimator's update"
    return (
        f"{what} changes the components after every sample, so a pass is sequential and "
        "cannot be split over Dask workers. Use update='stagewise' or 'gd' (one map-reduce per "
        "pass) with a client, or feed the blocks to partial_fit one after another on one "
        "machine (as dask-ml's Incremental does), e.g. `for chunk in X.to_delayed().ravel(): "
        "est.partial_fit(chunk.compute())`; a dask array passed to fit without a client is "
        "streamed that way."
    )


class _DaskChunks(Source):
    """A dask array read chunk by chunk in order (sequential fits: per-sample updates)."""

    def __init__(self, inp, dask):
        self.inp = inp
        self.dask = dask
        self.n_samples, self.n_features, self.dtype = inp.n_samples, inp.n_features, inp.dtype
        self.block_rows = inp.block_rows  # the record of ArraySource(X.compute())

    def blocks(self, start=0, epoch=0):
        inp = self.inp
        chunks = inp.X.to_delayed().ravel().tolist()
        for lo, hi in inp.pass_ranges(epoch, start):
            c = int(np.searchsorted(inp.bounds, lo, side="right")) - 1
            block = check_block(self.dask.compute(chunks[c])[0], self.n_features, None,
                                where="dask chunk").astype(self.dtype, copy=False)
            offset = int(inp.bounds[c])
            yield block[lo - offset:hi - offset]


# -- the executor -------------------------------------------------------------------------------

def make_executor(X, client, validate, per_sample, update=None, blas_threads=None):
    """The executor of a fit with Dask (see :mod:`streamnmf._driver`).

    One stage is one map-reduce: ``D`` and ``alpha`` broadcast once, one task per row block
    computing the block's statistics, a tree sum, the stage end on the client. The estimator's
    fit drives it as it drives the in-process executor: listeners (early stop, callback,
    checkpoint at every stage end) run as in the single-process fit, and a checkpoint of either
    resumes with the other.

    Parameters
    ----------
    X : dask array, HDF5 path / ``(path, name)`` / h5py object / HDF5Source, or in-memory array
        An HDF5 file must be readable at the same path on every worker. An in-memory array is
        scattered to the workers once, in row blocks.
    client : dask.distributed.Client or None
        Runs the tasks; None: dask's current scheduler (``dask.compute``), for a dask array.
    validate : callable
        ``validate(X)``: the validated source of data that is not a dask array.
    per_sample : bool
        Whether the rule updates per sample (then only a dask array without a client, streamed
        chunk by chunk in this process).
    update : str or None
        The estimator's ``update``, for the message.
    blas_threads : int, "auto" or None
        BLAS threads of the sequential case.

    Returns
    -------
    DaskStages or InProcess

    Raises
    ------
    ImportError
        dask is not installed.
    ValueError
        A per-sample update with a client, a source without random access (a generator of
        blocks), or invalid data.
    """
    dask = _import_dask()
    is_dask_array = type(X).__module__.startswith("dask.") and hasattr(X, "chunks")
    if per_sample:
        if client is not None or not is_dask_array:
            raise ValueError(_sequential_message(update))
        # a dask array without a client: stream its chunks through the sequential loop
        executor = InProcess(_DaskChunks(_DaskArray(X), dask), blas_threads)
        executor.files = []
        return executor
    return DaskStages(_as_input(X, validate), _Runner(dask, client), X)


class DaskStages:
    """Runs each stage as one map-reduce over Dask workers."""

    def __init__(self, inp, runner, X):
        self.inp, self.runner = inp, runner
        self.n_samples, self.n_features, self.dtype = inp.n_samples, inp.n_features, inp.dtype
        # what fixes the order of the samples, recorded as the single-process fit records it
        self.source_order = dict(
            block_rows=inp.block_rows, shuffle_seed=-1 if inp.seed is None else int(inp.seed))
        self.files = input_files(X, getattr(inp, "source", None))

    def leading(self):
        return self.inp.leading(self.runner)

    def run(self, loop, position, n_stages, after_block):
        """The stages, until the listeners stop the loop or ``n_stages`` is reached; every
        stage ends at a block boundary, so a checkpoint records its end exactly."""
        kind, with_sum_y = loop.rule.kind, bool(loop.rule.needs_sum_y)
        # On a LocalCluster (or dask's local schedulers) the workers own this machine's cores:
        # the client's per-stage solve runs on one BLAS thread, else OpenBLAS's threads spin
        # after it and take the cores from the workers (measured: 7x the client's CPU, 2x the
        # pass time).
        shared = single_threaded_blas() if _shares_cores(self.runner.client) \
            else contextlib.nullcontext()
        with shared:
            while not loop.stopped and loop.stage < n_stages:
                need = loop.stage_length - loop.stats.count  # > 0 after a mid-stage checkpoint
                ranges, end = _plan_stage(self.inp, position.position, need)
                t0 = time.perf_counter()
                stats = self.runner.run(self.inp, ranges, loop.D, loop.alpha, kind, with_sum_y)
                if stats.count != need:  # pragma: no cover - a broken source
                    raise RuntimeError(f"a stage got {stats.count} samples, expected {need}.")
                loop.add_stats(stats, time.perf_counter() - t0)
                del stats
                position.move_to(end, loop.samples_seen)
                loop.end_stage()

    def release(self):
        self.inp.release(self.runner)


def _shares_cores(client):
    """Whether the tasks run on this machine: dask's local schedulers or a LocalCluster."""
    if client is None:
        return True
    try:
        from distributed import LocalCluster
    except ImportError:  # pragma: no cover
        return False
    return isinstance(getattr(client, "cluster", None), LocalCluster)
