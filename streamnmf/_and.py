"""AND: Alternating Non-negative gradient Descent (Li & Liang, ICML 2017, Algorithm 1)."""

from numbers import Integral, Real

import numpy as np
import scipy.linalg
from scipy.linalg import blas
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import SHARED_CONSTRAINTS, StreamingNMFBase
from ._engine import Rule
from .drift import DriftDetector
from .linalg import nonnegative_least_squares

UPDATES = ("stagewise", "gd", "sgd")

#: relative weight of the proximal term in the stagewise solve (see ``StagewiseRule``)
PROX = 1e-10
#: most coordinate-descent sweeps of a non-negative stagewise solve: the stages iterate
#: anyway, so a stage's solve need not be exact where the unconstrained one is infeasible
NNLS_SWEEPS = 5
#: what ``transform_algorithm`` takes
TRANSFORM_ALGORITHMS = ("auto", "nnls", "threshold")
DRIFT_MODES = ("reseed", "detect")


class StagewiseRule(Rule):
    """The limit of infinitely many gradient steps: ``C = argmin ||Y - Z C||^2`` per stage.

    Solves ``(S_zz + lam I) C = S_zy + lam C_prev`` with ``lam = 1e-10 * trace(S_zz) / n``: a
    proximal step that equals the least-squares solution ``S_zz^-1 S_zy`` to about 1e-10
    relative when ``S_zz`` is well conditioned, and keeps the previous rows in the directions
    the stage's codes never excite (a component that was never decoded, a singular ``S_zz``).
    The proximal term vanishes at a fixed point, so it does not bias the converged answer.

    ``nonnegative``: the same problem under ``C >= 0``, by ``NNLS_SWEEPS`` sweeps of
    coordinate descent warm-started from the previous components (the stages iterate, so
    one stage's solve need not be exact), or the unconstrained solution where it is feasible.
    """

    def __init__(self, nonnegative=False):
        self.nonnegative = nonnegative

    def end_stage(self, C, stats):
        S_zz = stats.S_zz
        n = S_zz.shape[0]
        lam = PROX * np.trace(S_zz) / n
        C = np.asarray(C, dtype=np.float64)
        if not lam > 0:
            return C  # nothing was decoded in this stage
        lhs = S_zz + lam * np.eye(n)
        # The right-hand side S_zy + lam C is formed in the statistics' own array and undone
        # after the solve: a (k x m) matrix fewer at the fit's peak of memory
        S_zy = stats.S_zy
        blas.daxpy(C.ravel(), S_zy.ravel(), a=lam)
        try:
            return self._solve(lhs, S_zy, C)
        finally:
            blas.daxpy(C.ravel(), S_zy.ravel(), a=-lam)

    def _solve(self, lhs, rhs, C):
        # Non-negative: where the previous solve left entries at the bound (images, text: the
        # unconstrained solution is never feasible there) go straight to the constrained solve
        if not (self.nonnegative and np.any(C == 0)):
            try:
                factor = scipy.linalg.cho_factor(lhs, check_finite=False)
                solution = scipy.linalg.cho_solve(factor, rhs, check_finite=False)
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                solution = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
            if not self.nonnegative or solution.min(initial=0.0) >= 0:
                # the papers' case near the truth: the unconstrained solution is feasible, and
                # then it is the constrained one, to round-off
                return solution
            del solution
        # the same proximal problem under C >= 0, warm-started from the previous components
        # as online NMF solves its dictionary step (from the clipped unconstrained solution
        # the error on ORL faces was 0.5-1% higher)
        return nonnegative_least_squares(lhs, rhs, C, max_sweeps=NNLS_SWEEPS)[0]


class GDRule(Rule):
    """The paper's experiments: ``T`` full gradient steps on the stage's fixed statistics.

    ``C <- C + eta (S_zy - S_zz C) / N`` repeated ``n_inner`` times, where ``N`` is the stage's
    sample count. The paper's ``A <- A + eta_p (Y Z^T - A Z Z^T)`` on sums is ``eta = eta_p N``.
    Default ``eta = 1 / lambda_max(S_zz / N)``, the largest step that is monotone.
    """

    def __init__(self, n_inner, learning_rate, nonnegative=False):
        self.n_inner = n_inner
        self.learning_rate = learning_rate
        self.nonnegative = nonnegative

    def end_stage(self, C, stats):
        eta = self.learning_rate
        if eta is None:
            top = np.linalg.eigvalsh(stats.S_zz / stats.count)[-1]
            if not top > 0:
                return C.astype(np.float64)
            eta = 1.0 / top
        # C += eta (S_zy - S_zz C) / N in place, with one (k x m) buffer for the step
        C = np.array(C, dtype=np.float64)
        step = np.empty_like(C)
        scale = eta / stats.count
        for _ in range(self.n_inner):
            np.matmul(stats.S_zz, C, out=step)
            np.subtract(stats.S_zy, step, out=step)
            step *= scale
            C += step
            if self.nonnegative:  # projected gradient steps
                np.maximum(C, 0.0, out=C)
        return C


class SGDRule(Rule):
    """Algorithm 1 as written: one rank-one update per sample (or per small batch), projected
    on ``C >= 0`` when ``nonnegative``."""

    per_sample = True

    def __init__(self, nonnegative=False):
        self.nonnegative = nonnegative


class AND(StreamingNMFBase):
    """AND: provable alternating decode-then-update NMF, streaming and out of core.

    Runs in stages ``j = 0, 1, ...``. A stage fixes the decoding matrix ``P = pinv(A)`` and the
    threshold ``alpha_j``; each sample ``y`` is decoded as ``z = phi_alpha(P y)`` with the hard
    threshold ``phi_alpha(v) = v if v >= alpha else 0`` and the working matrix moves towards
    ``y``: ``A <- A + eta (y - A z) z^T``. With a mild start it recovers the true ``A*`` even
    under strong correlations of the weights (Li & Liang, ICML 2017). The components may be
    signed; the weights are non-negative.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components (the paper's ``n``/``D``). None: ``n_features``.
    components : {"auto", "nonnegative", "signed"}, default="auto"
        ``"nonnegative"``: every update keeps the components non-negative (stagewise: a
        non-negative least-squares solve on the stage's statistics; gd: projected steps; sgd:
        projected rank-one updates), what an NMF user expects of non-negative data.
        ``"signed"``: the paper's model, components of any sign. ``"auto"``: non-negative when
        every value of the rows the start reads is ``>= 0``, signed otherwise; decided once,
        at the start, and kept in ``nonnegative_``, checkpoints and model files. On the
        papers' non-negative data both give the same fixed point (the true components are
        non-negative, so the unconstrained solve is feasible there).
    update : {"stagewise", "gd", "sgd"}, default="stagewise"
        ``"sgd"``: Algorithm 1, one rank-one update per sample (averaged over ``batch_size``
        samples). ``"gd"``: the paper's experiments, decode the stage once then ``n_inner``
        gradient steps on the fixed statistics. ``"stagewise"``: the limit ``n_inner -> inf``,
        the least-squares solve ``A = S_yz S_zz^-1`` once per stage (one pass per stage; see
        ``StagewiseRule`` for the guard against a singular ``S_zz``).
    thresholds : {"adaptive", "geometric"}, float, sequence or ThresholdSchedule, \
            default="adaptive"
        The stage thresholds ``alpha_j``. ``"geometric"`` is the paper's ``0.1 / 1.1**j``;
        ``"adaptive"`` (:class:`~streamnmf.schedules.Adaptive`) follows the measured progress
        and reaches float64 round-off where the geometric one is still far; a float is constant.
    n_stages : int, default=200
        Maximum number of stages (``s + 1`` in the paper).
    stage_length : int or None, default=None
        Samples per stage (the paper's ``T`` for ``"sgd"``). None: one pass over the data in
        ``fit``; one call in ``partial_fit``.
    n_inner : int, default=50
        Gradient steps per stage for ``update="gd"`` (the paper's ``T``: 50, 100 with noise).
    learning_rate : float or None, default=None
        ``"gd"``: step on the mean statistics (None: ``1 / lambda_max(S_zz / N)``). ``"sgd"``:
        per-sample step ``eta`` (None: ``0.1 / mean ||z||^2`` over the first block's samples
        with a non-zero code; a step of ``1 / ||z||^2`` would fit each sample exactly, a
        tenth of it averages the sample noise: on DIR, ln error -20 after 20 passes where 0.5
        stalls near -2.5).
    batch_size : int, default=1
        ``"sgd"`` only: samples whose rank-one terms are averaged into one update.
    init : {"spa", "nndsvda", "random"} or ndarray of shape (n_components, n_features), \
            default="spa"
        Start matrix (the paper's ``A0`` transposed). ``"spa"``: the purest samples among the
        leading rows (up to 64 MiB of them, at least the first block; ``partial_fit``: the
        first chunk) by successive projections, as the paper suggests; ``"nndsvda"``:
        scikit-learn's NMF start, the non-negative parts of those rows' truncated SVD
        (non-negative data only; for text, where no row is pure, its topics were more
        coherent than SPA's on news articles and less on WordNet glosses: see
        docs/performance.md); ``"random"``: random convex combinations of those rows. The
        recovery guarantee assumes a warm start; how far a data-driven one gets is measured
        in bench/README.md ("Starting from the data").
    tol : float or None, default=None
        Stop when the relative change of the components over a stage is at most ``tol``.
        None: round-off. In float64 ``10 * eps`` (2.2e-15). A float32 fit of a full-batch
        update runs in float32 arithmetic until its change falls to 4 float32 ulps (or
        stalls near that), then finishes with the decode and the block products in float64
        (data and components stay float32) until the change is at most 0.05 ulp: ln -28 on
        DIR, where float32 arithmetic stalls at -24. A float ``tol`` applies as it is,
        without the float64 finish.
    n_iter_no_change : int or None, default=10
        Stop when the change has not reached a new minimum for this many stages (round-off or
        the noise floor), or when the objective fell by less than 1% over this many stages
        while a residual remains (data that no set of components fits exactly). None: never.
    random_state : int, Generator or None, default=None
        Seeds the init.
    callback : callable or None, default=None
        ``callback(estimator, row)`` after every stage, with ``row`` the stage's history entry
        and ``estimator.components_`` a copy of the working matrix at the stage end. Return
        True to stop. Its time is excluded from ``history_["seconds"]``.
    verbose : int, default=0
        Print one line per stage.
    checkpoint : str, PathLike or None, default=None
        HDF5 file to which the complete fitting state is written, atomically, at every stage
        end and every ``checkpoint_every``; ``fit(X, resume=True)`` continues from it, with
        the same result as an uninterrupted fit. The previous generation is kept as
        ``<checkpoint>.prev``.
    checkpoint_every : float or int, default=60.0
        A float: seconds between checkpoints within a stage; an int: samples.
    client : dask.distributed.Client or None, default=None
        Fit the full-batch updates (``"stagewise"``, ``"gd"``) on a Dask cluster: every stage
        is one map-reduce over the row blocks (see ``streamnmf._dask``). A dask array passed
        to ``fit`` uses Dask too (with the current scheduler when ``client`` is None).
    transform_algorithm : {"auto", "nnls", "threshold"}, default="auto"
        How :meth:`transform` computes the codes. ``"threshold"``: the decode the fit uses,
        ``max(pinv(A) y)`` hard-thresholded at ``alpha_`` (the paper's ``z``; a row whose
        decoded values all fall below the threshold gets no code). ``"nnls"``: the
        non-negative least-squares codes ``argmin_{z >= 0} ||y - z C||`` (coordinate descent
        started from the thresholded decode), what an NMF user expects: every row with any
        overlap with the components gets a code, and ``inverse_transform`` of it is the best
        non-negative reconstruction. ``"auto"``: ``"nnls"`` for non-negative components,
        ``"threshold"`` for signed ones.
    drift : {"reseed", "detect"}, DriftDetector or None, default="reseed"
        Streams that change, in :meth:`partial_fit` (``fit`` reads a fixed data set).
        Every stage's prequential error (``history_["objective_before"]``: its samples'
        residual under the components it started from) is watched; a jump flags a change
        (``history_["drift"]``, the callback's ``row["drift"]``). ``"reseed"``: the stage's
        update is undone, the components the new rows no longer confirm are re-seeded from
        them, the others kept, and the threshold schedule restarts (see
        :mod:`streamnmf.drift`). ``"detect"``: flag only (:meth:`reseed` acts on request).
        A :class:`~streamnmf.drift.DriftDetector`: ``"reseed"`` with its settings. None:
        neither.
    blas_threads : "auto", int or None, default="auto"
        BLAS threads of the fit's products. ``"auto"``: as many as the cores that other
        processes leave free, re-decided every half second (all of them on an idle machine;
        spinning BLAS threads on busy cores slow a fit several-fold); an int: that many (fix it
        where two runs must agree bit for bit, a product split over fewer threads rounds
        differently); None: leave the BLAS library as configured.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned components (the paper's ``A`` transposed), unnormalised; recovery is up to
        the scale of every row.
    nonnegative_ : bool
        Whether the components were kept non-negative (``components`` resolved).
    alpha_ : float
        The threshold of the last stage, used by ``transform``.
    reconstruction_err_ : float
        ``||Y - Z C||_F`` of the last stage: its samples (a whole pass in ``fit``), its codes
        and the final components (scikit-learn's ``NMF.reconstruction_err_``).
    n_iter_ : int
        Stages run (= ``n_stages_``).
    n_stages_ : int
        Stages run.
    n_features_in_ : int
    history_ : dict of ndarray
        Per stage: ``stage``, ``seconds`` (cumulative fitting time: computing and, in ``fit``,
        waiting for the source's blocks; not callbacks or checkpoint writes), ``alpha``,
        ``n_samples``, ``objective`` (mean squared reconstruction error of the stage's codes;
        needs no ground truth), ``change`` (relative change of the components) and
        ``density`` of the codes, ``objective_before`` (the same for the components the stage
        started from: the error on samples not yet learned from, in ``partial_fit``) and
        ``drift`` (1.0 where ``partial_fit`` detected a change of the stream).

    Notes
    -----
    Paper to API: ``y`` is a row of X, ``A`` is ``components_.T``, ``z`` is a row of
    ``transform(X)``, ``alpha_j`` is ``history_["alpha"][j]``, ``(A^(0))^dagger`` is the
    decoding matrix computed once per stage.
    """

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "update": [StrOptions(set(UPDATES))],
        "n_inner": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "transform_algorithm": [StrOptions(set(TRANSFORM_ALGORITHMS))],
        "drift": [StrOptions(set(DRIFT_MODES)), DriftDetector, None],
    }

    def __init__(self, n_components=None, *, components="auto", update="stagewise",
                 thresholds="adaptive",
                 n_stages=200, stage_length=None, n_inner=50, learning_rate=None,
                 batch_size=1, init="spa", tol=None, n_iter_no_change=10,
                 random_state=None, callback=None, verbose=0, checkpoint=None,
                 checkpoint_every=60.0, client=None, transform_algorithm="auto",
                 drift="reseed", blas_threads="auto"):
        self.n_components = n_components
        self.components = components
        self.update = update
        self.thresholds = thresholds
        self.n_stages = n_stages
        self.stage_length = stage_length
        self.n_inner = n_inner
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.init = init
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.callback = callback
        self.verbose = verbose
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.client = client
        self.transform_algorithm = transform_algorithm
        self.drift = drift
        self.blas_threads = blas_threads

    def _make_rule(self):
        nonnegative = bool(self.__dict__.get("nonnegative_", self.components == "nonnegative"))
        if self.update == "stagewise":
            return StagewiseRule(nonnegative)
        if self.update == "gd":
            return GDRule(self.n_inner, self.learning_rate, nonnegative)
        return SGDRule(nonnegative)

    def _loop_settings(self):
        return dict(
            thresholds=self.thresholds, n_stages=self.n_stages, stage_length=self.stage_length,
            batch_size=self.batch_size,
            sgd_eta=self.learning_rate if self.update == "sgd" else None,
        )

