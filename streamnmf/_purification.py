"""Purification (Li, Liang and Risteski, NIPS 2016, Algorithm 1).

Iterations ``t = 0, 1, ...`` each take a fresh batch ``y_1 .. y_N`` and

* decode ``x = phi_alpha(B y)`` with the shifted ReLU ``phi_alpha(v) = max(v - alpha, 0)`` and
  ``B`` the left inverse of ``A`` (``B A = I``) with the smallest ``||B||_inf`` (largest row l1
  norm): :func:`min_inf_inverse_rows`;
* update ``A <- (1 - eta) A + r eta E_hat[(y - y')(x - x')^T]`` with ``y, y'`` independent uniform
  draws from the batch: :func:`pair_moment` computes the expectation in one pass from the
  stage statistics, :class:`PurificationRule` applies it.

Layout (as everywhere in the library): rows. ``C = A.T`` is (n_components, n_features), the
decoding matrix ``D = B.T`` is (n_features, n_components), so a block decodes as ``Y @ D`` and
``B A = I`` reads ``C D = I``. An iteration of the paper is a stage of the engine.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from . import _engine
from . import _kernels as K
from ._base import SHARED_CONSTRAINTS, StreamingNMFBase
from ._engine import Rule
from ._lp import InverseError, _min_inf, min_inf_inverse_rows


__all__ = [
    "InverseError",
    "min_inf_inverse_rows",
    "pair_moment",
    "balancing_scale",
    "PurificationRule",
    "Purification",
]

INVERSES = ("min-inf", "pinv")
STEP_DECAYS = ("sqrt",)

# --------------------------------------------------------------------------------------------
# the update
# --------------------------------------------------------------------------------------------

def pair_moment(stats):
    """``E_hat[(x - x')(y - y')^T]`` over independent uniform draws from the stage's batch.

    With ``y, y'`` drawn independently and uniformly from the ``N`` samples (all ``N^2``
    ordered pairs, ``i == j`` included, each with weight ``1 / N^2``)::

        1/N^2 sum_{i,j} (x_i - x_j)(y_i - y_j)^T = 2 (1/N sum_i x_i y_i^T - xbar ybar^T)

    twice the empirical (biased, ``1/N``) cross-covariance, from ``S_zy``, ``sum_z``, ``sum_y``
    and ``count`` in one pass. The pairs ``i == j`` contribute zero, so the average over the
    ``N (N - 1)`` pairs with ``i != j`` is ``N / (N - 1)`` times this (twice the unbiased
    covariance); with the default ``r`` the choice cancels.

    Parameters
    ----------
    stats : StageStats
        Accumulated with ``sum_y`` (``Rule.needs_sum_y``).

    Returns
    -------
    M : ndarray of shape (n_components, n_features), float64
        The paper's ``E_hat[(y - y')(x - x')^T]`` (m x n) transposed.
    """
    N = stats.count
    if N == 0:
        return np.zeros_like(stats.S_zy)
    mean_z = stats.sum_z / N
    mean_y = stats.sum_y / N
    return 2.0 * (stats.S_zy / N - np.outer(mean_z, mean_y))


class PurificationRule(Rule):
    """Purification's decode (shifted ReLU, min-inf or pinv inverse) and stage update.

    ``end_stage`` returns ``C <- (1 - eta_t) C + eta_t diag(r) M`` with ``M = pair_moment``.

    ``r=None`` ("auto"): per component ``r_i = 1 / (M D)_ii``. Since ``B A = I``,
    ``(B M^T)_ii = 2 cov(v_i, x_i)`` with ``v = B y`` the decoded values before the ReLU, so the
    update's coefficient along its own column, in the basis of the current ``A``, is exactly 1:
    ``B A_new = (1 - eta) I + eta diag(r) B M^T`` has unit diagonal and the columns keep their
    size; only the mixing with the other columns changes. At the truth with exact data,
    ``v = x*`` and ``M_i = 2 sum_k cov(x_i, x*_k) A*_k``; independence of the weights makes the
    terms ``k != i`` vanish, so ``A*`` (at any column scale) is a fixed point for every ``alpha``
    (up to the sampling noise of the cross-covariances, ``O(1/sqrt(N))``). A component whose
    codes are constant over the stage (never decoded) has no information and is kept as is.
    A float ``r`` is the paper's scalar scaling factor, applied as written.

    ``cov(v_i, phi(v_i)) >= var(phi(v_i)) >= 0`` for the 1-Lipschitz non-decreasing ReLU, so
    ``r_i`` is positive whenever the codes vary.

    Parameters
    ----------
    inverse : {"min-inf", "pinv"}
    eta : float
    r : float or None
    step_decay : None, float or "sqrt"
        None: ``eta_t = eta``; a float ``t0``: ``eta / (1 + t / t0)``; ``"sqrt"``:
        ``eta / sqrt(1 + t)``; ``t`` counts the updates made (the rule's state).
    balance_scale : ndarray or None
        The balancing scale of ``Purification(balance=True)``, kept here so that a checkpoint
        of the rule's state restores it.
    cache : dict or None
        Shared between the rules of one estimator: the last ``(C, D)`` and the LP bases, so a
        stage's inverse is computed once (the engine asks at the stage start, ``end_stage`` and
        ``transform`` ask again for the same ``C``).
    """

    kind = K.SHIFTED_RELU
    per_sample = False
    needs_sum_y = True

    def __init__(self, inverse="min-inf", eta=0.5, r=None, step_decay=None, balance_scale=None,
                 cache=None, nonnegative=False):
        self.nonnegative = nonnegative
        self.inverse = inverse
        self.eta = float(eta)
        self.r = r
        self.step_decay = step_decay
        self.balance_scale = balance_scale
        self.cache = {} if cache is None else cache
        self.t = 0

    # -- decode -------------------------------------------------------------------------------
    def _inverse64(self, C):
        cache = self.cache
        C64 = np.asarray(C, dtype=np.float64)
        hit = cache.get("D")
        if (hit is not None and cache.get("inverse") == self.inverse
                and cache["C"].shape == C64.shape and np.array_equal(cache["C"], C64)):
            return hit
        if self.inverse == "pinv":
            D = _engine.pinv_rows(C64)
        else:
            D, bases, solved = _min_inf(C64, cache.get("bases"))
            cache["bases"] = bases
            cache["programmes"] = cache.get("programmes", 0) + solved
            cache["inverses"] = cache.get("inverses", 0) + 1
        cache.update(C=C64.copy(), D=D, inverse=self.inverse)
        return D

    def decoding_matrix(self, C):
        D = self._inverse64(C)
        return np.ascontiguousarray(D, dtype=np.asarray(C).dtype)

    # -- update -------------------------------------------------------------------------------
    def step(self, t):
        """The step ``eta_t`` of update ``t`` (0-based)."""
        if self.step_decay is None:
            return self.eta
        if self.step_decay == "sqrt":
            return self.eta / np.sqrt(1.0 + t)
        return self.eta / (1.0 + t / float(self.step_decay))

    def scales(self, C, stats, M):
        """Per-component ``r`` (ndarray) and the mask of components left unchanged."""
        n = C.shape[0]
        if self.r is not None:
            return np.full(n, float(self.r)), np.zeros(n, dtype=bool)
        N = max(stats.count, 1)
        second = np.diag(stats.S_zz) / N
        var_x = second - (stats.sum_z / N) ** 2
        D = self._inverse64(C)
        g = np.einsum("if,fi->i", M, D)  # (B M^T)_ii = 2 cov(v_i, x_i)
        dead = ~((var_x > 1e-12 * second) & (g > 0) & np.isfinite(g))
        r = np.zeros(n)
        r[~dead] = 1.0 / g[~dead]
        return r, dead

    def end_stage(self, C, stats):
        C = np.asarray(C, dtype=np.float64)
        M = pair_moment(stats)
        r, dead = self.scales(C, stats, M)
        eta = self.step(self.t)
        C_new = (1.0 - eta) * C + eta * (r[:, None] * M)
        C_new[dead] = C[dead]
        if self.nonnegative:  # the projection on C >= 0 moves no farther from a non-negative A*
            np.maximum(C_new, 0.0, out=C_new)
        self.t += 1
        return C_new

    # -- checkpoints --------------------------------------------------------------------------
    def state(self):
        scale = np.zeros(0) if self.balance_scale is None else self.balance_scale
        return np.concatenate([[float(self.t)], scale])

    def set_state(self, values):
        values = np.asarray(values, dtype=np.float64)
        self.t = int(values[0])
        self.balance_scale = values[1:].copy() if values.size > 1 else None


# --------------------------------------------------------------------------------------------
# balancing (section 6, "more general proportions")
# --------------------------------------------------------------------------------------------

def balancing_scale(Y, C0, D0):
    """The diagonal ``D`` of section 6 from a block of data and the start matrix.

    The theorems need ``max_i E[x_i^2] <= 2 min_i E[x_i^2]``. Instead of ``Y = A* X`` one may
    solve ``Y = [A* D][D^-1 X]`` with a positive diagonal ``D`` that makes the second moments of
    ``D^-1 x`` comparable. ``E[x_i^2]`` is estimated from the start's decodings
    ``max(B0 y, 0)`` (ReLU without offset, so the estimate scales exactly with the columns and
    one pass suffices) and ``d_i = sqrt(m2_i / g)`` with ``g`` the geometric mean of the
    positive ``m2_i``: afterwards every estimated second moment equals ``g`` (the paper's
    factor 2 is met with room for the estimate's error) and ``prod d_i = 1``. Components never
    decoded get ``d_i = 1``. The appendix's own procedure is not in the text we have; this is
    the section's idea with the moments estimated from the warm start.

    Returns
    -------
    d : ndarray of shape (n_components,), float64
        Row ``i`` of the balanced start is ``d_i C0[i]`` (column ``i`` of ``A0 D``).
    """
    Yd = Y.toarray() if hasattr(Y, "toarray") else np.asarray(Y)
    V = np.asarray(Yd, dtype=np.float64) @ D0
    m2 = np.mean(np.maximum(V, 0.0) ** 2, axis=0)
    positive = m2 > 0
    d = np.ones(C0.shape[0])
    if positive.any():
        g = np.exp(np.mean(np.log(m2[positive])))
        d[positive] = np.sqrt(m2[positive] / g)
    return d


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------

class Purification(StreamingNMFBase):
    """Purification: alternating ReLU decoding and covariance updates with provable recovery.

    Every iteration (a stage) decodes a batch with the shifted ReLU,
    ``x = max(B y - alpha, 0)``, where ``B`` is the left inverse of ``A`` (``B A = I``) with the
    smallest ``||B||_inf``, and moves the features along the batch's pair moment:
    ``A <- (1 - eta) A + r eta E_hat[(y - y')(x - x')^T]`` (Li, Liang and Risteski, NIPS 2016,
    Algorithm 1). From a warm start it recovers ``A*`` needing only linearly independent
    features, and tolerates adversarial noise as large as the signal. The features may be
    signed; the weights are non-negative.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components (the paper's ``n``). None: ``n_features``. At most
        ``n_features`` (a left inverse must exist).
    components : {"signed", "nonnegative", "auto"}, default="signed"
        ``"signed"``: the paper's update as written. ``"nonnegative"``: every update is
        projected on ``C >= 0`` (in Frobenius norm the projection moves no farther from a
        non-negative ``A*``), for users who need non-negative parts; on the paper's data it
        recovers less well (README example: ln error -4.0 instead of -4.4), hence not the
        default. ``"auto"``: non-negative when every value of the rows the start reads is
        ``>= 0``. Kept in ``nonnegative_``.
    thresholds : float, sequence or ThresholdSchedule, default=0.1
        The ReLU offset ``alpha`` of every stage, in the units of the codes: a float is
        constant over the stages, as in the paper (anything
        :func:`~streamnmf.schedules.make_schedule` takes, as for :class:`~streamnmf.AND`).
        With the default ``r`` the codes keep the scale of ``init``.
    learning_rate : float, default=0.5
        Step size ``eta`` in (0, 1].
    r : float or None, default=None
        The paper's scaling factor ``r``. None: per component, the scale that keeps every
        column's size steady, ``r_i = 1 / (2 cov(v_i, x_i))`` with ``v = B y`` (see
        :class:`PurificationRule`); it makes the truth a fixed point for any ``alpha``. A float:
        the paper's scalar, used as given.
    n_stages : int, default=100
        Most stages (the paper's iterations, ``T``) ``fit`` runs.
    stage_length : int or None, default=None
        Samples per stage (the paper's ``N``). None: one pass over the data per stage in
        ``fit``; one call per stage in ``partial_fit``.
    inverse : {"min-inf", "pinv"}, default="min-inf"
        ``"min-inf"``: the paper's minimum-``||B||_inf`` left inverse, one basis-pursuit linear
        programme per component (HiGHS), computed once per stage; a programme whose
        previous basis is still optimal is skipped, and with ``highspy`` installed (extra
        ``lp``) the others hot-start from it (see :func:`min_inf_inverse_rows`; the result
        does not depend on it). ``"pinv"``: the Moore-Penrose inverse
        (cheaper; measured on (A2') data with anchor words it was within 0.12 of the
        min-inf inverse under adversarial noise and markedly better under unbiased noise,
        where the min-inf rows concentrate on few features: see bench/purification.py).
    step_decay : None, float or "sqrt", default=None
        None: constant ``eta`` (the paper). A float ``t0 > 0``: ``eta_t = eta / (1 + t / t0)``,
        which averages the sampling noise of the batches away on long streams (the error
        then keeps falling as the samples seen grow instead of stalling at a floor set by
        ``stage_length``). ``"sqrt"``: ``eta_t = eta / sqrt(1 + t)``.
    balance : bool, default=False
        Section 6's preprocessing for unequal proportions: rescale the start's columns so the
        second moments of the weights agree (estimated on the leading rows), solve, and undo
        the scaling in ``components_`` and ``transform`` (see :func:`balancing_scale`).
    init : {"spa", "nndsvda", "random"} or ndarray of shape (n_components, n_features), \
            default="spa"
        Start matrix (the paper's ``A(0)`` transposed); the theory needs a warm start. The
        options are AND's.
    tol : float or None, default=None
        Stop when the relative change of the components over a stage is at most ``tol``.
        None: round-off. In float64 ``10 * eps`` (2.2e-15). A float32 fit runs in float32
        arithmetic until its change falls to 4 float32 ulps (or stalls near that), then
        finishes with the decode and the block products in float64 (data and components stay
        float32) until the change is at most 0.05 ulp. A float ``tol`` applies as it is,
        without the float64 finish.
    n_iter_no_change : int or None, default=10
        Stop when the change has not reached a new minimum for this many stages. None:
        never.
    random_state : int, Generator or None, default=None
        Seeds the init.
    callback : callable or None, default=None
        ``callback(estimator, row)`` after every stage, with ``estimator.components_`` a
        copy of the working matrix; return True to stop.
    verbose : int, default=0
        Print one line per stage.
    checkpoint : str, PathLike or None, default=None
        File for the state of the fit, written at every stage's end and every
        ``checkpoint_every``; ``fit(X, resume=True)`` continues from it (see
        :class:`~streamnmf.AND`). The stage counter of ``step_decay`` and the balancing
        scale are part of the state.
    checkpoint_every : float or int, default=60.0
        A float: seconds between checkpoints within a stage; an int: samples.
    client : dask.distributed.Client or None, default=None
        Run every stage as one map-reduce on a Dask cluster (docs/distributed.md).
    blas_threads : "auto", int or None, default="auto"
        BLAS threads of the fit's products. ``"auto"``: as many as the cores that other
        processes leave free, re-decided every half second (all of them on an idle machine;
        spinning BLAS threads on busy cores slow a fit several-fold); an int: that many (fix it
        where two runs must agree bit for bit, a product split over fewer threads rounds
        differently); None: leave the BLAS library as configured.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned features as rows (the paper's ``A`` transposed); recovery is up to the
        scale of every row.
    alpha_ : float
    n_stages_ : int
        Stages run (the paper's iterations).
    n_features_in_ : int
    history_ : dict of ndarray
        Per stage, as in :class:`~streamnmf.AND`.
    balance_scale_ : ndarray of shape (n_components,)
        The balancing ``D`` (ones without ``balance``).

    Notes
    -----
    Paper to API: ``y`` is a row of X, ``A`` is ``components_.T``, ``x`` is a row of
    ``transform(X)``, ``A^dagger`` is ``_D.T``, an iteration ``t`` is a stage.

    The update moves along sample cross-covariances; those of independent weights are zero
    only in expectation, so with ``N`` samples per iteration and a constant step the iterates
    fluctuate around the truth: measured on (A2') binary weights, the total correlation error
    levels off near ``c n^2 eta / ((2 - eta) N)`` with ``c`` about 0.4 depending on ``A*``
    (ln -4.3 on a uniform random ``A*`` and -3.6 on topic components for ``n = 30``, ``N = 32000``,
    ``eta = 1``). Iterating ``fit`` over one fixed data set converges to that data set's fixed
    point, not to ``A*``. On a stream, ``step_decay`` averages the batches and the error keeps
    falling like ``1 / samples seen``, whatever the batch size.
    """

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "learning_rate": [Interval(Real, 0, 1, closed="right")],
        "r": [Interval(Real, 0, np.inf, closed="neither"), None],
        "inverse": [StrOptions(set(INVERSES))],
        "step_decay": [Interval(Real, 0, np.inf, closed="neither"), StrOptions(set(STEP_DECAYS)),
                       None],
        "balance": ["boolean"],
    }

    def __init__(self, n_components=None, *, components="signed", thresholds=0.1,
                 learning_rate=0.5, r=None, n_stages=100, stage_length=None,
                 inverse="min-inf", step_decay=None, balance=False, init="spa",
                 tol=None, n_iter_no_change=10, random_state=None, callback=None, verbose=0,
                 checkpoint=None, checkpoint_every=60.0, client=None,
                 blas_threads="auto"):
        self.n_components = n_components
        self.components = components
        self.thresholds = thresholds
        self.learning_rate = learning_rate
        self.r = r
        self.n_stages = n_stages
        self.stage_length = stage_length
        self.inverse = inverse
        self.step_decay = step_decay
        self.balance = balance
        self.init = init
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.callback = callback
        self.verbose = verbose
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.client = client
        self.blas_threads = blas_threads

    # -- hooks --------------------------------------------------------------------------------
    def _loop_settings(self):
        return dict(
            thresholds=self.thresholds, n_stages=self.n_stages, stage_length=self.stage_length,
            batch_size=1, sgd_eta=None,
        )

    def _cache(self):
        cache = self.__dict__.get("_inverse_cache")
        if cache is None:
            cache = self._inverse_cache = {}
        return cache

    def _make_rule(self):
        return PurificationRule(
            inverse=self.inverse, eta=self.learning_rate, r=self.r, step_decay=self.step_decay,
            balance_scale=self.__dict__.get("_balance_start"), cache=self._cache(),
            nonnegative=bool(self.__dict__.get("nonnegative_",
                                               self.components == "nonnegative")),
        )

    def _initial_components(self, leading, n_features, dtype, rng):
        C0 = super()._initial_components(leading, n_features, dtype, rng)
        self._balance_start = None
        if not self.balance:
            return C0
        rule = PurificationRule(inverse=self.inverse, cache=self._cache())
        D0 = rule._inverse64(C0)
        d = balancing_scale(leading, C0, D0)
        self._balance_start = d
        C_bal = np.array(C0 * d[:, None].astype(C0.dtype), order="C")
        # The inverse commutes with the scaling of the rows (each row's programme scales):
        # seed the cache so the balanced start needs no second round of programmes.
        cache = self._cache()
        cache.update(C=C_bal.astype(np.float64), D=D0 / d[None, :], inverse=self.inverse)
        return C_bal

    def _finish(self):
        super()._finish()
        d = self._loop.rule.balance_scale
        self._balanced = d is not None
        if d is None:
            self.balance_scale_ = np.ones(self.components_.shape[0])
            return
        # Undo the balancing: the loop solved for A* D, report A* (the decoding matrix stays
        # the balanced one; transform multiplies the codes back by d).
        self.balance_scale_ = np.asarray(d, dtype=np.float64).copy()
        self.components_ = self.components_ / d[:, None].astype(self.components_.dtype)

    def transform(self, X):
        """Decode X: ``x = max(B y - alpha, 0)`` with the fitted components.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            The weights (the paper's ``x``), same dtype as X. With ``balance=True`` they are
            the balanced problem's codes times ``balance_scale_``.
        """
        Z = super().transform(X)
        if self._balanced:
            Z *= self.balance_scale_.astype(Z.dtype)[None, :]
        return Z
