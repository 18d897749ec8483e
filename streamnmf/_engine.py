"""The stage loop shared by AND and Purification.

Data flow: a source yields row blocks -> the stage fixes the decoding matrix ``D`` and the
threshold ``alpha`` -> kernels decode a block and either update the working matrix per sample
(``Rule.per_sample``) or accumulate the stage's statistics -> at the stage end the rule turns
the statistics into the next working matrix -> listeners (checkpoints, callbacks) are told.

The algorithms differ only in a :class:`Rule`: the decoding matrix, the threshold kind and the
end-of-stage update. Everything here works on rows: ``C`` (n_components, n_features) is the
paper's ``A`` transposed and ``D`` (n_features, n_components) is the paper's decoding matrix
transposed, so a block decodes as ``Y @ D``.
"""

import contextlib
import threading
import time

import numpy as np
import scipy.linalg
from scipy.linalg import blas
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from . import _kernels as K
from .io.state import LoopState, StatisticsState

#: The stage-end work (pseudo-inverse, solve, objective) is small dense LAPACK on
#: (n_components x n_features) matrices: a second BLAS thread gains nothing there and, on a
#: busy machine, its spinning made these calls up to 100x slower (bench/speed.py). They run
#: single-threaded; the big per-block products keep all threads. Entering the limit costs
#: about 10 us with a controller built once.
_BLAS = ThreadpoolController()
_BLAS_LOCK = threading.Lock()
_blas_limit = {"depth": 0, "limiter": None}


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread inside the block.

    The limit is process-wide, so the context is re-entrant and safe across threads (Dask
    tasks in threads of one process, the client's stage end): the first to enter sets the
    limit, the last to leave restores the original one.
    """
    with _BLAS_LOCK:
        if _blas_limit["depth"] == 0 and any(
                lib.user_api == "blas" and lib.num_threads > 1 for lib in _BLAS.lib_controllers):
            _blas_limit["limiter"] = _BLAS.limit(limits=1, user_api="blas")
        _blas_limit["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_limit["depth"] -= 1
            if _blas_limit["depth"] == 0 and _blas_limit["limiter"] is not None:
                _blas_limit["limiter"].restore_original_limits()
                _blas_limit["limiter"] = None


#: default per-sample step of "sgd", relative to 1 / mean ||z||^2 of the first block
SGD_STEP = 0.1

#: above this fraction of non-zero codes the dense BLAS products beat walking the support
DENSE_CODES = 0.1
#: the same for CSR rows: ``(Y^T Z)^T`` by scipy.sparse (``O(nnz(Y) k)``, whatever the codes)
#: against the kernel's scatter over (code, word) pairs (``O(nnz(Y) nnz(z) / n)``, about 1.8 ns
#: a pair); measured on 200-token documents, 100 components: equal at 17-20% non-zero codes,
#: products 2.2-2.8x faster at 40%, the kernel 3.6-5x faster at 3%
CSR_DENSE_CODES = 0.2

#: at most this many components, dense rows decode with ``_kernels.dense_decode_narrow`` (dot
#: products, thresholded in the same pass) instead of a BLAS GEMM and ``threshold_codes``: GEMM
#: with so narrow a ``D`` runs far below its speed on wide shapes. Measured (bench/speed.py,
#: part ``decode``, one thread, two runs): up to 4 components 1.6-4.2x faster in float64 and
#: at 1000 features, 0.9-2.6x in float32 at 100 features; beyond that GEMM wins from 5-8
#: components in float32 and from 10-16 in float64.
NARROW_DECODE_COMPONENTS = 4

#: from this many features on, float64 blocks decode with the product written in Fortran order
#: (``np.matmul(Y, D, out=...)``): OpenBLAS then runs its kernel with the long dimension
#: (the samples) first, 1.22-1.43x faster at 300-1000 features and 16-100 components on this
#: machine (bench/speed.py, part ``decode``, ``gemm_layout``); at 100 features its 1.11x did
#: not pay for the copy into C order (decode 0.92-0.99x); float32 was slower that way
#: (0.52-0.87x) and keeps the C-ordered product. A fixed rule, not timed at
#: run time: the two layouts round differently, and resumed and distributed fits must equal
#: the uninterrupted single-process fit bit for bit.
FORTRAN_GEMM_MIN_FEATURES = 256


def decode(Y, D, alpha, kind):
    """Decode a block: ``Z = phi_alpha(Y @ D)`` with the support of every row.

    Parameters
    ----------
    Y : {ndarray, csr_matrix} of shape (n_samples, n_features)
    D : ndarray of shape (n_features, n_components)
    alpha : float
    kind : int
        ``_kernels.HARD`` or ``_kernels.SHIFTED_RELU``.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_components), dtype of ``D``
    z_indptr : ndarray of shape (n_samples + 1,), int64
    z_indices : ndarray of shape (nnz,), int32
    v_min : float
        Smallest decoded value before thresholding.
    """
    n_samples, n_components = Y.shape[0], D.shape[1]
    if not sp.issparse(Y) and n_components <= NARROW_DECODE_COMPONENTS and Y.flags.c_contiguous:
        Z = np.empty((n_samples, n_components), dtype=D.dtype)
        z_indptr = np.empty(n_samples + 1, dtype=np.int64)
        z_indices = np.empty(n_samples * n_components, dtype=np.int32)
        nnz, v_min = K.dense_decode_narrow(Y, np.ascontiguousarray(D.T), Z.dtype.type(alpha),
                                           kind, Z, z_indptr, z_indices)
        return Z, z_indptr, z_indices[:nnz], float(v_min)
    if sp.issparse(Y):
        V = Z = np.empty((n_samples, n_components), dtype=D.dtype)
        K.csr_decode(Y.data, Y.indices, Y.indptr, D, Z)
    elif Y.dtype == D.dtype == np.float64 and Y.shape[1] >= FORTRAN_GEMM_MIN_FEATURES:
        # BLAS: the whole block in one product, D fixed for the stage, written in Fortran
        # order (see FORTRAN_GEMM_MIN_FEATURES); the thresholding pass copies into C order
        V = np.empty((n_samples, n_components), dtype=D.dtype, order="F")
        np.matmul(Y, D, out=V)
        Z = np.empty((n_samples, n_components), dtype=D.dtype)
    else:
        V = Z = Y @ D
    z_indptr = np.empty(n_samples + 1, dtype=np.int64)
    z_indices, v_min = K.threshold_codes(V, Z.dtype.type(alpha), kind, z_indptr, Z)
    return Z, z_indptr, z_indices, float(v_min)


def in_arithmetic(Y, D):
    """The block ``Y`` in the dtype of the decoding matrix ``D``: a float32 fit refining in
    float64 (:meth:`StageLoop.refine`) decodes and sums its float32 rows in float64, one
    conversion of the block for both products."""
    return Y if Y.dtype == D.dtype else Y.astype(D.dtype)


def pinv_rows(C):
    """Moore-Penrose inverse of ``C`` (n_components, n_features), computed in float64.

    Through a thin QR ``C^T = Q R``: ``pinv(C) = Q R^-T``. The QR is Cholesky-QR2 (two rounds of
    ``R = chol(C C^T)``, ``Q = R^-T C``): all matrix products, where Householder QR of a tall
    skinny matrix runs at matrix-vector speed (3-4x slower at 50 000 features); two rounds make
    ``Q`` orthonormal to round-off while ``cond(C) < 1e5``. Worse conditioned matrices take
    Householder QR, and numerically rank-deficient ones the SVD.

    Returns
    -------
    D : ndarray of shape (n_features, n_components), C-ordered, dtype of ``C``
    """
    C64 = np.asarray(C, dtype=np.float64)
    n_components, n_features = C64.shape
    if n_components <= n_features:
        D = _pinv_cholesky_qr2(C64)
        if D is None:
            Q, R = scipy.linalg.qr(C64.T, mode="economic", check_finite=False)
            diag = np.abs(np.diag(R))
            if diag.size and diag.min() > max(C64.shape) * np.finfo(np.float64).eps * diag.max():
                D = scipy.linalg.solve_triangular(R, Q.T, check_finite=False).T  # Q R^-T
        if D is not None:
            return np.ascontiguousarray(D, dtype=C.dtype)
    return np.ascontiguousarray(np.linalg.pinv(C64), dtype=C.dtype)


def _pinv_cholesky_qr2(C):
    """``pinv(C)`` (n_features, n_components), Fortran-ordered, by Cholesky-QR2 of ``C^T``, or
    None if ``C`` is too ill conditioned for it (``cond(C) >= 1e5``: the first round's Cholesky
    factor squares the condition number)."""
    Q = C.T  # (n_features, n_components), Fortran-ordered: BLAS works on it without copies
    R = None
    for _ in range(2):
        gram = blas.dsyrk(1.0, Q, trans=1)  # upper triangle of Q^T Q
        try:
            R_round = scipy.linalg.cholesky(gram, lower=False, check_finite=False)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            return None
        diag = np.abs(np.diag(R_round))
        if not diag.size or not diag.min() > 1e-5 * diag.max():
            return None
        # Q R^-1: a new matrix in the first round (Q is C's memory), in place in the second
        Q = blas.dtrsm(1.0, R_round, Q, side=1, overwrite_b=R is not None)
        R = R_round if R is None else R_round @ R
    return blas.dtrsm(1.0, R, Q, side=1, trans_a=1, overwrite_b=True)  # Q R^-T


class DivergenceError(FloatingPointError):
    """The working matrix became non-finite; the last finite one was kept."""


class StageStats:
    """Sufficient statistics of one stage, accumulated in float64.

    ``S_zy = sum z y^T`` (n_components, n_features) is the paper's ``S_yz`` transposed,
    ``S_zz = sum z z^T``; with ``sum_z``, ``sum_y``, ``sum_yy`` and ``count`` they determine the
    full-batch updates of both algorithms and the squared reconstruction error of any ``C``.
    """

    def __init__(self, n_components, n_features, with_sum_y=False):
        self.S_zy = np.zeros((n_components, n_features))
        self.S_zz = np.zeros((n_components, n_components))
        self.sum_z = np.zeros(n_components)
        self.sum_y = np.zeros(n_features) if with_sum_y else None
        self.sum_yy = 0.0
        self.count = 0
        self.nnz = 0
        self.code_max = 0.0  # sum over samples of max_k z_k: the codes' scale
        self.v_min = np.inf  # smallest decoded value before thresholding

    def add(self, Y, Z, z_indptr, z_indices, v_min, with_products):
        n = Y.shape[0]
        self.v_min = min(self.v_min, v_min)
        self.count += n
        self.nnz += z_indices.size
        if n:
            self.code_max += K.row_max_sum(Z, z_indptr, z_indices)
        sparse = sp.issparse(Y)
        # the data's squared norm: the scale of the prequential error that detects drift
        self.sum_yy += float(np.dot(Y.data, Y.data)) if sparse else float(np.vdot(Y, Y))
        if not with_products:
            # a per-sample rule: its objective is the residuals the update kernel sums, so
            # sum_y and the products would only cost passes over the block
            return
        if self.sum_y is not None:
            self.sum_y += np.asarray(Y.sum(axis=0)).ravel()
        if z_indices.size > (CSR_DENSE_CODES if sparse else DENSE_CODES) * Z.size:
            if sparse:  # in float64: scipy would sum float32 rows in float32
                Z = Z.astype(np.float64, copy=False)
            self.S_zy += Z.T @ Y
            self.S_zz += Z.T @ Z
            self.sum_z += Z.sum(axis=0)
        elif sparse:
            K.accumulate_stats_csr(
                Y.data, Y.indices, Y.indptr, Z, z_indptr, z_indices,
                self.S_zy, self.S_zz, self.sum_z,
            )
        else:
            K.accumulate_stats_dense(Y, Z, z_indptr, z_indices, self.S_zy, self.S_zz, self.sum_z)

    def merge(self, other):
        """Add another part's statistics (blocks decoded with the same ``D`` and ``alpha``).

        Addition is the reduction of a map-reduce over blocks; the result does not depend on
        how the blocks were grouped, up to the order of floating-point sums.
        """
        self.S_zy += other.S_zy
        self.S_zz += other.S_zz
        self.sum_z += other.sum_z
        if self.sum_y is not None:
            self.sum_y += other.sum_y
        self.sum_yy += other.sum_yy
        self.count += other.count
        self.nnz += other.nnz
        self.code_max += other.code_max
        self.v_min = min(self.v_min, other.v_min)
        return self

    def squared_error(self, C):
        """``sum ||y - C^T z||^2 / count`` for this stage's codes, from the statistics alone."""
        C = np.asarray(C, dtype=np.float64)
        # <C, S_zz C> as <S_zz, C C^T>: a (k x k) temporary, not a (k x m) one
        value = self.sum_yy - 2.0 * np.vdot(C, self.S_zy) + np.vdot(self.S_zz, C @ C.T)
        return max(value, 0.0) / max(self.count, 1)


def _distance(A, B, block_bytes=2**20):
    """``||A - B||_F`` by row blocks of at most ``block_bytes``: the difference of two
    component matrices without a temporary of their size."""
    rows = max(1, block_bytes // max(1, A.shape[1] * A.itemsize))
    total = 0.0
    for i in range(0, A.shape[0], rows):
        d = A[i:i + rows] - B[i:i + rows]
        total += float(np.vdot(d, d))
    return float(np.sqrt(total))


def block_stats(Y, D, alpha, kind, with_sum_y=False):
    """Decode one block and return its :class:`StageStats` (the map of a map-reduce stage).

    Parameters
    ----------
    Y : {ndarray, csr_matrix} of shape (n_samples, n_features)
    D : ndarray of shape (n_features, n_components)
        The stage's decoding matrix.
    alpha : float
    kind : int
    with_sum_y : bool

    Returns
    -------
    StageStats
    """
    stats = StageStats(D.shape[1], D.shape[0], with_sum_y)
    Y = in_arithmetic(Y, D)
    stats.add(Y, *decode(Y, D, alpha, kind), with_products=True)
    return stats


class Rule:
    """What an algorithm plugs into the stage loop.

    Attributes
    ----------
    kind : int
        Threshold kind of the decoder (``_kernels.HARD`` or ``_kernels.SHIFTED_RELU``).
    per_sample : bool
        True: the working matrix is updated sample by sample (``sgd_step``); False: the stage
        only accumulates statistics and ``end_stage`` computes the new matrix.
    needs_sum_y : bool
        Whether ``end_stage`` needs ``sum y`` (Purification's covariance).
    nonnegative : bool
        Whether the updates keep the working matrix non-negative.
    """

    kind = K.HARD
    per_sample = False
    needs_sum_y = False
    nonnegative = False

    def decoding_matrix(self, C):
        """(n_features, n_components) matrix ``D`` with ``Y @ D`` the decoded values."""
        return pinv_rows(C)

    def end_stage(self, C, stats):
        """Return the next working matrix (float64) from the stage's statistics."""
        raise NotImplementedError

    def state(self):
        """Floats a checkpoint must keep (e.g. a learning rate fixed at the first stage)."""
        return np.zeros(0)

    def set_state(self, values):
        """Restore what ``state()`` returned."""


class StageLoop:
    """Runs stages over row blocks; the estimator's fit and partial_fit both drive it.

    Parameters
    ----------
    rule : Rule
    schedule : ThresholdSchedule
    C0 : ndarray of shape (n_components, n_features)
        Start matrix, owned by the loop from then on. Its dtype is the working dtype: of the
        components, and of the arithmetic of the decode and the block products until
        :meth:`refine`.
    stage_length : int or None
        Samples per stage; None: the caller ends stages with :meth:`end_stage`.
    sgd_eta : float or None
        Per-sample step for per-sample rules; None: ``SGD_STEP / mean ||z||^2`` over the
        samples of the first block that decode to a non-zero code.
    batch_size : int
        Samples averaged per update in per-sample rules.
    """

    #: float64 decode and products of float32 data (:meth:`refine`); a class attribute, so
    #: that a loop pickled before refine existed reads False too
    refining = False

    def __init__(self, rule, schedule, C0, stage_length=None, sgd_eta=None, batch_size=1):
        self.rule = rule
        self.schedule = schedule
        # the loop owns C0 (the estimator hands over a fresh array): no second copy
        self.C = np.ascontiguousarray(C0)
        self.dtype = self.C.dtype
        self.stage_length = stage_length
        self.sgd_eta = sgd_eta
        self.batch_size = int(batch_size)
        self.stage = 0
        self.samples_seen = 0
        self.seconds = 0.0
        self.history = {k: [] for k in HISTORY_FIELDS}
        self.listeners = []
        # a DriftDetector (streamnmf.drift) or None; with ``revert_on_drift`` a stage flagged
        # as a change is undone (its update learned from codes of obsolete components) and
        # ``drift_pending`` tells the caller to re-seed
        self.detector = None
        self.revert_on_drift = False
        self.drift_pending = False
        self._replaying = False  # the current stage reads rows already consumed
        self.stopped = False  # set by a listener (early stop); consume() then returns at once
        self._begin_stage()

    # -- stage boundaries -------------------------------------------------------------------
    def _begin_stage(self):
        n_components, n_features = self.C.shape
        # a full-batch rule replaces C at the stage end and never writes into it: no copy
        self.C_start = self.C.copy() if self.rule.per_sample else self.C
        # the fresh statistics first: the last stage's are freed before the next inverse
        # (their zeros are untouched pages until the stage's first block)
        self.stats = StageStats(n_components, n_features, self.rule.needs_sum_y)
        self.D = self._decoding_matrix()
        self.alpha = float(self.schedule.alpha(self.stage))
        if not self.alpha >= 0:  # a custom schedule: a negative threshold keeps negative codes
            raise ValueError(
                f"{self.schedule!r} gave the threshold {self.alpha!r} for stage {self.stage}; "
                "thresholds must be >= 0."
            )
        if self.rule.per_sample:
            self._G = np.zeros(self.C.shape, self.dtype)  # calloc: no pages until written
            self._touched = np.zeros(n_components, dtype=np.bool_)
            self._batch = np.zeros(2)

    def _decoding_matrix(self):
        # the inverse is computed in float64 whatever the dtype; a refining loop keeps it so
        C = self.C.astype(np.float64) if self.refining else self.C
        with single_threaded_blas():
            return np.ascontiguousarray(self.rule.decoding_matrix(C))

    @property
    def can_refine(self):
        """Whether :meth:`refine` applies: float32 components and a full-batch rule."""
        return self.dtype == np.float32 and not self.rule.per_sample

    def refine(self, enabled=True):
        """Decode and sum the blocks in float64 from now on; the components stay float32.

        Float32 arithmetic stops a fit a few float32 ulps short of its fixed point: the
        decode's dot products over all features and the block products round the tiny codes
        that a fit near round-off must resolve. Float64 arithmetic from there on (each block
        converted once, the decoding matrix kept unrounded) finishes it, as mixed-precision
        iterative refinement does; the data and the components keep their float32 memory.
        Called at a stage boundary (the current stage has no sample yet); ``enabled=False``
        returns to the components' own arithmetic (a stream that follows a fit).
        """
        if self.stats.count or (enabled and not self.can_refine):
            raise RuntimeError("refine: needs a float32 full-batch loop at a stage boundary.")
        if enabled != self.refining:
            self.refining = enabled
            self.D = self._decoding_matrix()

    def end_stage(self):
        """Close the current stage (if it saw any sample), record it and begin the next one.

        Returns
        -------
        dict or None
            The stage's history row, or None when the stage was empty.
        """
        stats = self.stats
        if stats.count == 0:
            return None
        t0 = time.perf_counter()
        if self.rule.per_sample:
            if self._batch[0] > 0:  # a partial batch at the stage end is applied, not dropped
                K._sgd_flush(self.C, self._G, self._touched, self.sgd_eta / self._batch[0],
                             self.rule.nonnegative)
                self._batch[0] = 0.0
            objective = self._batch[1] / stats.count
            # every residual was taken before its sample's update: already prequential
            objective_before = objective
        else:
            # the stage's decoding matrix is not needed by the solve, and the next stage
            # computes its own: freed first, the solve's new matrix takes its place
            self.D = None
            with single_threaded_blas():
                C_new = self.rule.end_stage(self.C, stats)
                finite = np.all(np.isfinite(C_new))
                objective = stats.squared_error(C_new) if finite else np.nan
                # the stage's samples under the components it started from: how well the
                # model explained them before learning from them (the drift signal)
                objective_before = stats.squared_error(self.C_start)
            self.C = np.ascontiguousarray(C_new, dtype=self.dtype)
        drift = False
        replayed, self._replaying = self._replaying, False
        if self.detector is not None and stats.sum_yy > 0 and not replayed:
            drift = self.detector.observe(objective_before * stats.count / stats.sum_yy)
            if drift and self.revert_on_drift:
                self.C = self.C_start.copy()
                self.drift_pending = True
        if not np.all(np.isfinite(self.C)):
            # Divergence (a step size too large, overflow in float32): keep the last good
            # matrix, the start of this stage, and stop.
            self.C = self.C_start.copy()
            self.stopped = True
            if self.D is None:
                self.D = self._decoding_matrix()
            raise DivergenceError(
                f"The working matrix became non-finite in stage {self.stage} (the update "
                "diverged, e.g. learning_rate too large or float32 overflow). The components "
                f"were reset to the last finite matrix, the start of stage {self.stage}. Lower "
                "learning_rate, or use update='stagewise'."
            )
        norm = np.linalg.norm(self.C)
        change = _distance(self.C, self.C_start) / norm if norm > 0 else np.inf
        self.schedule.observe(
            self.stage, self.alpha, change=change, code_scale=stats.code_max / stats.count,
            decoding_error=max(0.0, -stats.v_min), objective=float(objective),
            energy=stats.sum_yy / stats.count,
        )
        self.seconds += time.perf_counter() - t0
        row = dict(
            stage=self.stage,
            seconds=self.seconds,
            alpha=self.alpha,
            n_samples=stats.count,
            objective=float(objective),
            change=change,
            density=stats.nnz / (stats.count * self.C.shape[0]),
            objective_before=float(objective_before),
            drift=float(drift),
        )
        for key in HISTORY_FIELDS:
            self.history[key].append(row[key])
        self.stage += 1
        del stats  # freed as the next stage begins
        t0 = time.perf_counter()
        self._begin_stage()
        self.seconds += time.perf_counter() - t0
        for listener in self.listeners:
            listener(self, row)
        return row

    def restart_stage(self, C):
        """Begin the current stage afresh from the matrix ``C`` (a re-seed).

        The stage's statistics so far are dropped (they were decoded with the replaced
        matrix); the samples stay counted in ``samples_seen``.
        """
        self.C = np.array(C, dtype=self.dtype, order="C")
        self.drift_pending = False
        self.refining = False  # far from the fixed point again
        self._begin_stage()

    # -- checkpoint state -------------------------------------------------------------------
    def state(self):
        """Everything needed to continue this loop exactly (arrays are not copied).

        Returns
        -------
        LoopState
        """
        stats = self.stats
        per_sample = self.rule.per_sample
        return LoopState(
            stage=self.stage, samples_seen=self.samples_seen, seconds=self.seconds,
            alpha=self.alpha, sgd_eta=self.sgd_eta, components=self.C,
            stage_start=self.C_start, decoding_matrix=self.D,
            stats=StatisticsState(
                S_zy=stats.S_zy, S_zz=stats.S_zz, sum_z=stats.sum_z, sum_y=stats.sum_y,
                count=stats.count, nnz=stats.nnz, sum_yy=stats.sum_yy,
                code_max=stats.code_max, v_min=stats.v_min),
            schedule_state=self.schedule.state(), rule_state=self.rule.state(),
            history={k: np.asarray(self.history[k], dtype=np.float64) for k in HISTORY_FIELDS},
            drift_state=None if self.detector is None else self.detector.state(),
            drift_pending=self.drift_pending, refining=self.refining,
            sgd_gradient=self._G if per_sample else None,
            sgd_touched=self._touched if per_sample else None,
            sgd_batch=self._batch if per_sample else None,
        )

    def restore(self, state):
        """Continue from a :class:`LoopState` of a loop with the same rule, schedule and shapes."""
        for name, value, expected in (("components", state.components, self.C.shape),
                                      ("stage_start", state.stage_start, self.C.shape),
                                      ("decoding_matrix", state.decoding_matrix, self.D.shape)):
            if value.shape != expected:
                raise ValueError(
                    f"checkpoint: {name} has shape {value.shape}, expected {expected}.")
        self.C = np.ascontiguousarray(state.components, dtype=self.dtype)
        self.C_start = np.ascontiguousarray(state.stage_start, dtype=self.dtype)
        self.refining = bool(state.refining)
        self.D = np.ascontiguousarray(state.decoding_matrix,
                                      dtype=np.float64 if self.refining else self.dtype)
        self.stage = int(state.stage)
        self.samples_seen = int(state.samples_seen)
        self.seconds = float(state.seconds)
        self.alpha = float(state.alpha)
        self.sgd_eta = state.sgd_eta
        saved, stats = state.stats, self.stats
        stats.S_zy[...] = saved.S_zy
        stats.S_zz[...] = saved.S_zz
        stats.sum_z[...] = saved.sum_z
        if stats.sum_y is not None:
            stats.sum_y[...] = saved.sum_y
        stats.count, stats.nnz = int(saved.count), int(saved.nnz)
        stats.sum_yy, stats.code_max = float(saved.sum_yy), float(saved.code_max)
        stats.v_min = float(saved.v_min)
        self.schedule.set_state(state.schedule_state)
        self.rule.set_state(state.rule_state)
        if self.rule.per_sample:
            self._G[...] = state.sgd_gradient
            self._touched[...] = state.sgd_touched
            self._batch[...] = state.sgd_batch
        if self.detector is not None and state.drift_state is not None:
            self.detector.set_state(state.drift_state)
            self.drift_pending = bool(state.drift_pending)
        n_rows = len(state.history["stage"])
        for key in HISTORY_FIELDS:
            # fields newer than the checkpoint's writer: unknown for its stages
            values = state.history.get(key, np.full(n_rows, np.nan))
            cast = int if key in ("stage", "n_samples") else float
            self.history[key] = [cast(v) for v in values]

    # -- data -------------------------------------------------------------------------------
    def add_stats(self, stats, seconds=0.0):
        """Merge statistics computed elsewhere (e.g. on Dask workers) into the current stage.

        Only for full-batch rules: the blocks must have been decoded with this stage's ``D``
        and ``alpha``. The caller ends the stage with :meth:`end_stage`.
        """
        if self.rule.per_sample:
            raise ValueError("add_stats needs a full-batch rule; per-sample updates are sequential.")
        self.stats.merge(stats)
        self.samples_seen += stats.count
        self.seconds += seconds

    def consume(self, Y):
        """Feed one validated row block; stages end automatically every ``stage_length``."""
        start = 0
        n = Y.shape[0]
        while start < n and not self.stopped:
            take = n - start
            if self.stage_length is not None:
                take = min(take, self.stage_length - self.stats.count)
            part = Y[start : start + take] if (start or take < n) else Y
            t0 = time.perf_counter()
            self._process(part)
            self.seconds += time.perf_counter() - t0
            self.samples_seen += take
            start += take
            if self.stage_length is not None and self.stats.count >= self.stage_length:
                self.end_stage()

    def replay(self, Y):
        """Feed a block the loop has already consumed (extra stages on the same rows): not
        counted in ``samples_seen``, and not fresh, so the drift detector ignores its stage.
        """
        self._replaying = True
        t0 = time.perf_counter()
        self._process(Y)
        self.seconds += time.perf_counter() - t0

    def _process(self, Y):
        Y = in_arithmetic(Y, self.D)
        Z, z_indptr, z_indices, v_min = decode(Y, self.D, self.alpha, self.rule.kind)
        per_sample = self.rule.per_sample
        self.stats.add(Y, Z, z_indptr, z_indices, v_min, with_products=not per_sample)
        if not per_sample:
            return
        if self.sgd_eta is None:
            # mean over the samples that decoded to something: a first block whose codes are
            # almost all cut would otherwise give a huge step (measured: 48 and divergence)
            coded = np.count_nonzero(np.diff(z_indptr))
            mean_sq = float(np.einsum("ij,ij->", Z, Z, dtype=np.float64)) / max(coded, 1)
            self.sgd_eta = SGD_STEP / mean_sq if mean_sq > 0 else None
            if self.sgd_eta is None:
                return  # nothing decoded yet: no update to make, no scale to learn from
        eta = self.dtype.type(self.sgd_eta)
        if sp.issparse(Y):
            K.sgd_update_csr(
                Y.data, Y.indices, Y.indptr, Z, z_indptr, z_indices, self.C, eta,
                self.batch_size, self._G, self._touched, self._batch, self.rule.nonnegative,
            )
        else:
            K.sgd_update_dense(
                Y, Z, z_indptr, z_indices, self.C, eta, self.batch_size,
                self._G, self._touched, self._batch, self.rule.nonnegative,
            )


HISTORY_FIELDS = ("stage", "seconds", "alpha", "n_samples", "objective", "change", "density",
                  "objective_before", "drift")
