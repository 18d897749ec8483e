"""The scikit-learn face shared by the estimators: validation, init, fit / partial_fit / transform.

An estimator only says which :class:`~streamnmf._engine.Rule` it runs (``_make_rule``) and
which stage length its full-batch fit uses; the stage loop does the work.
"""

import copy
import os
from numbers import Integral, Real
import time
import warnings
import weakref

import h5py
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import __version__, _engine
from . import _kernels as K
from ._blas import BlasThreads
from ._driver import FitPosition, InProcess
from ._start import check_random_state, nndsvda_init, spa_init
from .drift import DriftDetector, reseed_components
from .schedules import ThresholdSchedule, make_schedule
from .io import as_source, atomic, input_files, records
from .io.state import FitState, ModelState
from .io.sources import check_block

INIT_OPTIONS = ("spa", "nndsvda", "random")
#: early stop on a plateau of the objective: a fall of less than this (relative) over
#: ``n_iter_no_change`` stages, while the objective is above ``RESIDUAL_FLOOR`` times the
#: first stage's (on news tf-idf the objective falls 0.3% per 10 stages at stage 30; on the
#: papers' DIR and CTM-ref, from a data-driven start, at least 79% per 10 stages until
#: round-off)
OBJECTIVE_TOL = 5e-3
RESIDUAL_FLOOR = 1e-6
#: the default ``tol`` of a float64 fit: 10 ulps. A stage moves the components by about a third
#: of their distance to the fixed point, so a fit stops at an error of some 30 ulps; in float64
#: that is ln -61 on DIR. Where a float32 fit keeps float32 arithmetic (per-sample rules,
#: ``partial_fit``) it stops at one float32 ulp: its change stays at 1-1.3 ulps there (DIR,
#: 100 x 1000, ln -24.3), and ten ulps stopped it at ln -21.4
ROUND_OFF_TOL_FLOAT64 = 10 * np.finfo(np.float64).eps
#: with the default ``tol``, a float32 fit whose change per stage falls to this many float32
#: ulps has reached what float32 arithmetic resolves and finishes in float64 arithmetic
#: (``StageLoop.refine``) ...
REFINE_AT_ULPS = 4.0
#: ... or, should its change stall above that, whose best change is at most this many
REFINE_STALLED_ULPS = 64.0
#: ... until a stage changes the float32 components by at most this, relative
REFINE_TOL = 5e-2 * np.finfo(np.float32).eps
#: coordinate-descent sweeps and relative tolerance of the NNLS codes of ``transform``
NNLS_CODE_SWEEPS = 200
NNLS_CODE_TOL = 1e-8


def _is_dask_array(X):
    return type(X).__module__.startswith("dask.")


class _StageEndListener:
    """Calls ``estimator._on_stage_end`` through a weak reference.

    A bound method would make estimator -> loop -> estimator a reference cycle, and a
    discarded estimator's arrays would wait for the cycle collector. A pickled listener loses
    its estimator; the estimator's ``__setstate__`` gives it back.
    """

    def __init__(self, estimator):
        self._estimator = weakref.ref(estimator)

    def __call__(self, loop, row):
        self._estimator()._on_stage_end(loop, row)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._estimator = lambda: None


#: constraints of the parameters both estimators take, in scikit-learn's vocabulary (its
#: ``BaseEstimator._validate_params`` checks them); each estimator adds its own
SHARED_CONSTRAINTS = {
    "n_components": [Interval(Integral, 1, None, closed="left"), None],
    "components": [StrOptions({"auto", "nonnegative", "signed"})],
    "thresholds": [StrOptions({"adaptive", "geometric"}), Interval(Real, 0, None, closed="left"),
                   "array-like", ThresholdSchedule],
    "n_stages": [Interval(Integral, 1, None, closed="left")],
    "stage_length": [Interval(Integral, 1, None, closed="left"), None],
    "init": [StrOptions(set(INIT_OPTIONS)), "array-like"],
    "tol": [Interval(Real, 0, np.inf, closed="left"), None],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
    "random_state": [Interval(Integral, 0, None, closed="left"), np.random.Generator, None],
    "callback": [callable, None],
    "verbose": ["verbose"],
    "checkpoint": [str, os.PathLike, None],
    "checkpoint_every": [Interval(Real, 0, np.inf, closed="neither")],
    "client": [HasMethods(["compute", "scatter"]), None],
    "blas_threads": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
}


class StreamingNMFBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of :class:`~streamnmf.AND` and :class:`~streamnmf.Purification`."""

    _parameter_constraints: dict = SHARED_CONSTRAINTS

    def __setstate__(self, state):
        super().__setstate__(state)
        loop = self.__dict__.get("_loop")
        if loop is not None:  # the listener of a pickled loop lost its estimator
            loop.listeners = [_StageEndListener(self) if isinstance(l, _StageEndListener) else l
                              for l in loop.listeners]

    # -- to be provided by the algorithm -------------------------------------------------------
    def _make_rule(self):
        """The :class:`~streamnmf._engine.Rule` this algorithm runs."""
        raise NotImplementedError

    def _validate_algorithm_params(self):
        """Checks of the algorithm's parameters beyond ``_parameter_constraints`` (raise a
        ValueError naming the parameter)."""

    def _loop_settings(self):
        """How the stage loop runs, from the algorithm's parameters.

        Returns
        -------
        dict with keys
            ``thresholds`` (anything :func:`~streamnmf.schedules.make_schedule` takes),
            ``n_stages`` (int, the most stages ``fit`` runs), ``stage_length`` (int or None:
            one pass in ``fit``, one call in ``partial_fit``), ``batch_size`` (int, per-sample
            rules) and ``sgd_eta`` (float or None, per-sample rules).
        """
        raise NotImplementedError

    # -- validation -------------------------------------------------------------------------
    def _check_params(self):
        """Check every parameter (a ValueError naming it); returns the loop settings.

        Types and ranges come from ``_parameter_constraints``, checked by scikit-learn's
        ``_validate_params``; the rest (a schedule's values) by the algorithm.
        """
        self._validate_params()
        self._validate_algorithm_params()
        settings = self._loop_settings()
        make_schedule(settings["thresholds"])  # raises on a bad schedule
        return settings

    def _decide_nonnegative(self, leading):
        """Whether the fit keeps its components non-negative (``components`` resolved)."""
        components = getattr(self, "components", "signed")
        if components != "auto":
            return components == "nonnegative"
        values = leading.data if sp.issparse(leading) else leading
        return bool(values.size) and bool(np.min(values) >= 0)

    def _initial_components(self, leading, n_features, dtype, rng):
        init = self.init
        n_components = self.n_components or n_features
        if n_components > n_features:
            raise ValueError(
                f"n_components={n_components} is larger than n_features={n_features}: the "
                "decoding needs a left inverse of the components, which exists only for at "
                "most as many components as features. Lower n_components."
            )
        if isinstance(init, str):
            if init not in INIT_OPTIONS:
                raise ValueError(
                    f"init={init!r} is not supported; expected one of {INIT_OPTIONS} or an "
                    "array of shape (n_components, n_features)."
                )
            if init == "spa":
                C0 = spa_init(leading, n_components, rng)
            elif init == "nndsvda":
                C0 = nndsvda_init(leading, n_components, rng)
            else:
                # random convex combinations of samples; a CSR block stays sparse (the
                # product costs O(n_components nnz), not a dense copy of the block)
                weights = rng.dirichlet(np.ones(leading.shape[0]), size=n_components)
                if sp.issparse(leading):
                    C0 = np.asarray((leading.T.astype(np.float64) @ weights.T).T)
                else:
                    C0 = weights @ np.asarray(leading, dtype=np.float64)
        else:
            C0 = np.asarray(init)
            if C0.ndim != 2 or C0.shape[1] != n_features or (
                self.n_components is not None and C0.shape[0] != self.n_components
            ):
                raise ValueError(
                    f"init: expected an array of shape (n_components, n_features) = "
                    f"({self.n_components or 'n_components'}, {n_features}), got shape "
                    f"{C0.shape}. Rows are components (the paper's A0 transposed)."
                )
            if not np.all(np.isfinite(C0)):
                raise ValueError("init contains NaN or infinity.")
            zero = np.flatnonzero(~np.any(C0 != 0, axis=1))
            if zero.size:
                raise ValueError(
                    f"init: row {zero[0]} is all zeros ({zero.size} of {C0.shape[0]} rows). A "
                    "zero component decodes nothing and stays zero: give every component a "
                    "non-zero start, or use init='spa' to start from the data."
                )
        return np.array(C0, dtype=dtype, order="C")

    # -- fitting ----------------------------------------------------------------------------
    def _validated(self, X, reset):
        """Validate an in-memory X with scikit-learn's rules (dtype, sparse, features)."""
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32],
                          reset=reset, ensure_all_finite=False)
        return check_block(X, where="X")  # the finite check, naming the first bad row

    @staticmethod
    def _is_array(X):
        """In-memory data validated by scikit-learn's rules (not an HDF5 dataset: streamed)."""
        if isinstance(X, (h5py.Dataset, h5py.Group)):
            return False
        return isinstance(X, (list, tuple)) or sp.issparse(X) or hasattr(X, "__array__")

    def _fit_source(self, X):
        """The source ``fit`` reads, validated (in-memory data by scikit-learn's rules)."""
        if self._is_array(X):
            X = self._validated(X, reset=True)
            return as_source(X)
        source = as_source(X)
        if source.n_samples is None:
            iterable = getattr(source, "iterable", None)
            if iterable is not None and hasattr(iterable, "__next__"):
                raise ValueError(
                    f"fit got a one-shot {type(iterable).__name__}: fit reads its data once "
                    "per stage and a generator can be read only once. Feed the blocks to "
                    "partial_fit ('for block in blocks: model.partial_fit(block)'), or pass "
                    "a function that returns a new generator, with the rows of one pass: "
                    "fit(IterableSource(make_blocks, n_samples=N))."
                )
            raise ValueError(
                f"fit needs a source of known length (one pass per stage), got an "
                f"{type(source).__name__} with n_samples=None. Give the rows of one pass "
                "(IterableSource(make_blocks, n_samples=N)), or feed an unbounded stream "
                "chunk by chunk with partial_fit."
            )
        return source

    def _start(self, leading, n_features, dtype, n_samples=None):
        settings = self._check_params()
        stage_length = settings["stage_length"] or n_samples
        self._n_stages_max = settings["n_stages"]
        rng = check_random_state(self.random_state)
        self.nonnegative_ = self._decide_nonnegative(leading)
        C0 = self._initial_components(leading, n_features, dtype, rng)
        self._loop = _engine.StageLoop(
            self._make_rule(), make_schedule(settings["thresholds"]), C0,
            stage_length=stage_length, sgd_eta=settings["sgd_eta"],
            batch_size=settings["batch_size"],
        )
        self._loop.listeners.append(_StageEndListener(self))
        self._stalled = 0
        # re-seeded after a change, the threshold schedule still lowering carefully:
        # partial_fit runs catch-up stages on its blocks
        self._recovering = False
        self._best_change = np.inf
        self._early_stopped = False
        self._in_fit = False
        self._data_shape = (-1 if n_samples is None else int(n_samples), int(n_features))
        self._progress = FitPosition(self._data_shape[0])  # where fit resumes
        self._last_checkpoint = (time.monotonic(), 0)
        self._source_order = self._source_order_unknown()
        self.n_features_in_ = n_features

    def fit(self, X, y=None, resume=False, overwrite=False):
        """Fit the components to X by running stages over it.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features), Source, or path
            Training data (signed values allowed). Anything else than an in-memory matrix goes
            through :func:`~streamnmf.io.as_source` (an HDF5 file path or dataset, a
            :class:`~streamnmf.io.Source`, an ``IterableSource`` of known length) and is
            streamed in row blocks, one pass per stage for the full-batch updates. A one-shot
            generator gives one pass only: feed its blocks to :meth:`partial_fit`.
        y : Ignored
        resume : bool, default=False
            Continue from the ``checkpoint`` file if it exists (the same data and parameters
            are required; ``n_stages`` may be raised). When there is none yet, a warning says
            so and the fit starts afresh.
        overwrite : bool, default=False
            Start afresh over an existing checkpoint of this same fit (same data and
            parameters). Without ``resume`` or ``overwrite`` an existing checkpoint is an
            error, so that rerunning a fit cannot discard a long fit's state. A file that is
            not a checkpoint of this fit (the input data, another HDF5 or text file, another
            fit's checkpoint) is never replaced: that is always an error, raised before any
            work.

        Returns
        -------
        self
        """
        self._check_params()
        if resume and self.checkpoint is None:
            raise ValueError("resume=True needs the checkpoint parameter: a file path.")
        executor = self._executor(X)
        if executor.n_samples == 0:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
        try:
            self._check_checkpoint_target(
                executor.files,
                self._identity(executor.n_samples, executor.n_features, executor.dtype,
                               executor.source_order),
                resume, overwrite)
            first = executor.leading()
            # a stream of blocks may learn its feature count from its first block
            self._start(first, first.shape[1], executor.dtype or first.dtype,
                        executor.n_samples)
            del first
            self._source_order = executor.source_order
            if resume:
                self._resume()
            self._in_fit = True
            try:
                executor.run(self._loop, self._progress, self._n_stages_max,
                             self._periodic_checkpoint)
            except _engine.DivergenceError:
                self._finish()  # the last finite components stay available
                raise
            finally:
                self._in_fit = False
        finally:
            executor.release()
        self._finish()
        return self

    def _executor(self, X):
        """What runs the stages: a Dask executor with a client or for a dask array (dask is
        an optional extra), else this process, over the validated source of X."""
        if getattr(self, "client", None) is not None or _is_dask_array(X):
            from ._dask import make_executor

            return make_executor(X, self.client if hasattr(self, "client") else None,
                                 self._fit_source, self._make_rule().per_sample,
                                 getattr(self, "update", None), self.blas_threads)
        source = self._fit_source(X)
        executor = InProcess(source, self.blas_threads)
        executor.files = input_files(X, source)
        return executor

    @staticmethod
    def _source_order_unknown():
        return dict(block_rows=-1, shuffle_seed=-1)

    def partial_fit(self, X, y=None, resume=False, overwrite=False):
        """Feed one chunk of a stream.

        A stage spans ``stage_length`` samples across calls (None: every call is one stage).
        The feature count and dtype are locked by the first call. Early stopping and
        ``n_stages`` do not apply: the caller decides when the stream ends.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : Ignored
        resume : bool, default=False
            Only on the first call: restore the state of the ``checkpoint`` file first (then
            ``samples_seen_`` says how many samples of the stream it had consumed; feed the
            stream from there).
        overwrite : bool, default=False
            Only on the first call: start afresh over an existing checkpoint of this same fit
            (see :meth:`fit`; any other existing file is never replaced).

        Returns
        -------
        self
        """
        first_call = not hasattr(self, "_loop")
        X = self._validated(X, reset=first_call)
        if first_call:
            if resume and self.checkpoint is None:
                raise ValueError("resume=True needs the checkpoint parameter: a file path.")
            self._check_params()
            self._check_checkpoint_target(
                [], self._identity(None, X.shape[1], X.dtype, self._source_order_unknown()),
                resume, overwrite)
            self._start(X, X.shape[1], X.dtype)
            self._watch_drift()
            if resume:
                self._resume()
        elif X.dtype != self._loop.dtype:
            X = X.astype(self._loop.dtype)
        if self._loop.refining and not self._loop.stats.count:
            self._loop.refine(False)  # a fit's float64 finish: a stream keeps float32 speed
        self._loop.stopped = False
        if first_call or getattr(self, "_blas", None) is None:
            self._blas = BlasThreads(self.blas_threads)  # kept: it measures between calls
        try:
            with self._blas:
                self._consume_call(X)
        finally:
            self._finish()
        return self

    def _watch_drift(self):
        """Attach the ``drift`` parameter's detector to a streaming fit's stage loop."""
        drift = getattr(self, "drift", None)
        if drift is None:
            return
        loop = self._loop
        loop.detector = copy.deepcopy(drift) if isinstance(drift, DriftDetector) \
            else DriftDetector()
        loop.revert_on_drift = drift != "detect"

    def _consume_call(self, X):
        """One ``partial_fit`` call: its stages, a re-seed on a detected change, the
        catch-up stages of a recovery, and one checkpoint when the call's stages are done
        (a resumed fit then continues with the next call exactly)."""
        loop = self._loop
        self._checkpoint_deferred = False
        self._defer_checkpoints = True
        try:
            loop.consume(X)
            if loop.stage_length is None:
                loop.end_stage()
            reseeded = loop.drift_pending
            if reseeded:
                self._reseed_from(X)
            if self._recovering and loop.stage_length is None:
                # the careful start of the restarted schedule: more stages on this block
                # rather than waiting for fresh blocks (docs/design.md, "Drift")
                for _ in range(loop.detector.catch_up if loop.detector is not None else 0):
                    if not (loop.schedule.lowering or reseeded):
                        break
                    reseeded = False
                    loop.replay(X)
                    loop.end_stage()
            if self._recovering and not loop.schedule.lowering:
                self._recovering = False
        finally:
            self._defer_checkpoints = False
        if self.checkpoint is not None:
            if self._checkpoint_deferred:
                self._write_checkpoint((0, loop.samples_seen))
            else:
                self._periodic_checkpoint()

    def _reseed_from(self, X):
        """Keep the components the rows of X confirm, replace the others by pure rows of X,
        and restart the threshold schedule (see :mod:`streamnmf.drift`)."""
        loop = self._loop
        detector = loop.detector or DriftDetector()  # reseed() with drift=None: its defaults
        picks = spa_init(X, loop.C.shape[0], check_random_state(self.random_state))
        C, kept = reseed_components(loop.C, picks, detector.keep_cosine)
        if loop.rule.nonnegative:
            np.maximum(C, 0.0, out=C)
        # a replaced component starts as a data-driven start does; if all were kept, the
        # threshold stays and may rise from there (Adaptive)
        loop.schedule.restart(loop.stage, None if not kept.all() else loop.alpha)
        loop.restart_stage(C)
        detector.reset()
        self._recovering = True
        return kept

    def reseed(self, X):
        """Re-seed, from the rows of X, the components that no longer explain them.

        What ``partial_fit`` does by itself on a detected change (``drift="reseed"``); with
        ``drift="detect"`` call it where ``history_["drift"]`` flags one. The purest rows of
        X (successive projections) are matched to the components; a component whose match
        has cosine at least the detector's ``keep_cosine`` is kept, the others are replaced
        by their rows, and the threshold schedule restarts.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Rows of the stream as it is now.

        Returns
        -------
        kept : ndarray of shape (n_components,), bool
            Which components were kept.
        """
        check_is_fitted(self, "_loop")
        X = self._validated(X, reset=False).astype(self._loop.dtype, copy=False)
        kept = self._reseed_from(X)
        self._finish()
        return kept

    def _on_stage_end(self, loop, row):
        """The stage-end listener: the callback, the stopping rules, the report, the checkpoint."""
        stop = self._stopping_rules(loop, row, self._run_callback(loop, row))
        if self._in_fit and (stop or loop.stage >= self._n_stages_max):
            loop.stopped = True
        if self.verbose:
            self._print_stage(row)
        if self.checkpoint is not None:
            self._checkpoint_stage_end(loop)

    def _run_callback(self, loop, row):
        """Whether the user's callback asked to stop; its time is not fitting time."""
        if self.callback is None:
            return False
        t0 = time.perf_counter()
        self.components_ = loop.C.copy()  # what the callback inspects
        stop = self.callback(self, row) is True
        loop.seconds -= time.perf_counter() - t0
        return stop

    def _stopping_rules(self, loop, row, asked):
        """Whether to stop after this stage: asked by the callback, or converged (the relative
        change below ``tol``), or stalled (no better change, or an objective plateau, for
        ``n_iter_no_change`` stages: round-off or the noise floor reached)."""
        # a stage that decoded nothing leaves the matrix as it was: that is not convergence
        converged = row["change"] <= self._tol(loop) and row["density"] > 0
        may_refine = (self.tol is None and self._in_fit and loop.can_refine and not loop.refining
                      and row["density"] > 0 and not asked)
        ulp = np.finfo(np.float32).eps
        if may_refine and (converged or row["change"] <= REFINE_AT_ULPS * ulp):
            return self._refine(loop)
        self._early_stopped |= asked or converged
        stop = asked or converged
        if row["change"] < self._best_change:
            self._best_change, self._stalled = row["change"], 0
        elif not loop.schedule.lowering:  # a threshold still being lowered moves the fixed point
            self._stalled += 1
            if self.n_iter_no_change is not None and self._stalled >= self.n_iter_no_change:
                stop = True
        if self.n_iter_no_change is not None and self._objective_plateau(loop.history):
            stop = True
        if stop and may_refine and self._best_change <= REFINE_STALLED_ULPS * ulp:
            # stalled above REFINE_AT_ULPS but near float32 round-off, not at a noise floor
            return self._refine(loop)
        return stop

    def _refine(self, loop):
        """Float32 arithmetic has done what it can: the fit goes on in float64 arithmetic
        (``StageLoop.refine``), and its stopping rules start afresh."""
        loop.refine()
        self._best_change, self._stalled = np.inf, 0
        return False

    def _print_stage(self, row):
        print(
            f"[{type(self).__name__}] stage {row['stage']:4d}  alpha={row['alpha']:.3e}  "
            f"change={row['change']:.3e}  objective={row['objective']:.3e}  "
            f"density={row['density']:.3f}  {row['seconds']:.2f}s",
            flush=True,
        )

    def _checkpoint_stage_end(self, loop):
        if getattr(self, "_defer_checkpoints", False):  # partial_fit writes one when done
            self._checkpoint_deferred = True
            return
        position = self._progress.at(loop.samples_seen) if self._in_fit else (0, loop.samples_seen)
        self._write_checkpoint(position)

    def _objective_plateau(self, history):
        """Whether the objective fell by less than ``OBJECTIVE_TOL`` (relative) over the last
        ``n_iter_no_change`` stages while the fit leaves a residual (above ``RESIDUAL_FLOOR``
        times the first stage's: data the model does not generate, images, text, noise). On
        the papers' exact data the objective falls by 79% or more per 10 stages until
        round-off, where it carries no information."""
        window = self.n_iter_no_change
        objective = history["objective"]
        if len(objective) <= window:
            return False
        before, now = objective[-1 - window], objective[-1]
        return (np.isfinite(before) and now > RESIDUAL_FLOOR * objective[0]
                and before - now <= OBJECTIVE_TOL * before)

    def _tol(self, loop):
        if self.tol is not None:
            return self.tol
        if loop.refining:
            return REFINE_TOL
        return ROUND_OFF_TOL_FLOAT64 if loop.dtype == np.float64 else np.finfo(loop.dtype).eps

    # -- checkpoints ----------------------------------------------------------------------------
    #: parameters that may differ between the run that wrote a checkpoint and the one resuming
    _RESUME_FREE = ("n_stages", "tol", "n_iter_no_change", "callback", "verbose",
                    "checkpoint", "checkpoint_every", "init", "client", "blas_threads",
                    "transform_algorithm")

    def _identity(self, n_samples, n_features, dtype, source_order, n_components=None):
        """What a checkpoint of this fit records about its data and parameters (None: not
        known yet, not compared)."""
        if n_components is None:
            init = self.init
            n_components = self.n_components or (
                np.shape(init)[0] if not isinstance(init, str) else n_features)
        identity = dict(
            estimator=type(self).__name__,
            n_samples=-1 if n_samples is None else int(n_samples),
            n_features=None if n_features is None else int(n_features),
            n_components=None if n_components is None else int(n_components),
            dtype=None if dtype is None else str(np.dtype(dtype)),
            source_block_rows=source_order["block_rows"],
            source_shuffle_seed=source_order["shuffle_seed"],
        )
        params = records.plain_params(self.get_params())
        identity.update({f"param {k}": v for k, v in params.items()
                         if k not in self._RESUME_FREE})
        return identity

    def _check_checkpoint_target(self, inputs, identity, resume, overwrite,
                                 flags=("resume=True", "overwrite=True")):
        """Refuse, before any work, a checkpoint path whose writes would replace a file this
        fit did not write (see :func:`~streamnmf.io.records.check_checkpoint_target`)."""
        if self.checkpoint is not None:
            records.check_checkpoint_target(self.checkpoint, inputs, identity, resume,
                                            overwrite, flags)

    def _periodic_checkpoint(self):
        if self.checkpoint is None:
            return
        last_time, last_seen = self._last_checkpoint
        loop = self._loop
        every = self.checkpoint_every
        due = (loop.samples_seen - last_seen >= every) if isinstance(every, Integral) \
            else (time.monotonic() - last_time >= every)
        if due and loop.samples_seen > last_seen:
            self._write_checkpoint(self._progress.position)

    def _write_checkpoint(self, position):
        loop = self._loop
        state = FitState(
            estimator=type(self).__name__, params=records.plain_params(self.get_params()),
            library_version=__version__, n_samples=self._data_shape[0],
            n_features=self._data_shape[1], n_components=loop.C.shape[0],
            dtype=str(loop.dtype), source_block_rows=self._source_order["block_rows"],
            source_shuffle_seed=self._source_order["shuffle_seed"], epoch=position[0],
            offset=position[1], stalled=self._stalled, best_change=self._best_change,
            early_stopped=self._early_stopped, nonnegative=bool(self.nonnegative_),
            recovering=bool(self._recovering), loop=loop.state(),
        )
        atomic.write_atomic(self.checkpoint, state.to_hdf5, keep_previous=True)
        self._last_checkpoint = (time.monotonic(), loop.samples_seen)

    def _read_checkpoint(self):
        """Content of the newest intact checkpoint generation, or None when there is none."""
        path = os.fspath(self.checkpoint)
        # a resume follows a crash: a write cut short left its temporary file behind
        atomic.remove_stray_temporaries(path)
        previous = path + ".prev"
        if not os.path.exists(path) and not os.path.exists(previous):
            return None
        try:
            return records.read_verified(path, records.CHECKPOINT_FORMAT)
        except (FileNotFoundError, records.CheckpointError) as exc:
            if not os.path.exists(previous):
                raise records.CheckpointError(
                    f"{exc} There is no previous checkpoint ({previous!r}) to fall back on: "
                    "delete the file to start afresh."
                ) from exc
            warnings.warn(f"{exc} Resuming from the previous checkpoint {previous!r}.",
                          stacklevel=3)
            return records.read_verified(previous, records.CHECKPOINT_FORMAT)

    def _resume(self):
        content = self._read_checkpoint()
        if content is None:
            warnings.warn(
                f"No checkpoint at {os.fspath(self.checkpoint)!r} yet: starting afresh.",
                stacklevel=3,
            )
            return
        loop = self._loop
        differ = records.checkpoint_mismatch(records.decode_attrs(content.attrs), self._identity(
            self._data_shape[0], self._data_shape[1], loop.dtype, self._source_order,
            n_components=loop.C.shape[0]))
        if differ:
            raise records.CheckpointError(records.mismatch_message(os.fspath(self.checkpoint), differ))
        state = FitState.from_record(content)
        loop.restore(state.loop)
        # decided from the data at the start: the checkpoint's decision is the one to keep
        self.nonnegative_ = loop.rule.nonnegative = state.nonnegative
        self._early_stopped = loop.stopped = state.early_stopped
        self._progress.move_to((state.epoch, state.offset), loop.samples_seen)
        self._stalled = state.stalled
        self._recovering = state.recovering
        self._best_change = state.best_change
        self._last_checkpoint = (time.monotonic(), loop.samples_seen)

    def _finish(self):
        loop = self._loop
        # a full-batch loop replaces its C at every stage end and never writes into it: the
        # fitted matrix is shared, not copied (per-sample updates write into C)
        self.components_ = loop.C.copy() if loop.rule.per_sample else loop.C
        self.n_stages_ = loop.stage
        self.samples_seen_ = loop.samples_seen
        self.alpha_ = loop.alpha if loop.stage == 0 else loop.history["alpha"][-1]
        self.history_ = {k: np.asarray(v) for k, v in loop.history.items()}
        self.n_iter_ = self.n_stages_
        # scikit-learn's ||X - W H||_F, for the last stage's samples and codes
        self.reconstruction_err_ = float(np.sqrt(
            self.history_["objective"][-1] * self.history_["n_samples"][-1])) \
            if loop.stage else np.nan
        self._n_features_out = self.components_.shape[0]
        if loop.stats.count == 0:  # at a stage boundary: the next stage's D is of this C
            # the loop replaces its D at every stage, never writes into it (a refining float32
            # loop's is float64: the model keeps it in the components' dtype)
            self._D = None if loop.D is None else loop.D.astype(loop.dtype, copy=False)
        else:
            self._D = np.ascontiguousarray(loop.rule.decoding_matrix(self.components_))

    # -- model files ------------------------------------------------------------------------------
    def save(self, path, overwrite=False):
        """Write the fitted model to an HDF5 file (no pickle), atomically.

        The file holds ``components`` (n_components, n_features), the ``decoding_matrix``
        (n_features, n_components), ``history/<field>`` arrays, and as attributes the
        estimator name, its parameters (JSON), ``alpha_``, ``n_features_in_``, the format
        version and the streamnmf version (the layout: :class:`~streamnmf.io.state.ModelState`).
        Read it back with :meth:`load`.

        Parameters
        ----------
        path : str or PathLike
        overwrite : bool, default=False
            Replace an existing file; otherwise an existing file is an error.
        """
        check_is_fitted(self, "components_")
        records.check_output_path(path, overwrite, what="model file")
        state = ModelState(
            estimator=type(self).__name__, params=records.plain_params(self.get_params()),
            library_version=__version__, components=self.components_,
            decoding_matrix=self._D, history=self.history_, alpha=self.alpha_,
            n_features_in=self.n_features_in_, n_stages=self.n_stages_,
            samples_seen=self.samples_seen_, nonnegative=bool(self.nonnegative_),
            reconstruction_err=self.reconstruction_err_,
        )
        atomic.write_atomic(path, state.to_hdf5)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (or ``streamnmf fit --out``).

        Parameters that are plain values (numbers, strings, lists of numbers) are restored;
        others (an init array, a schedule object, a callback) keep their defaults.

        Parameters
        ----------
        path : str or PathLike

        Returns
        -------
        estimator
            Fitted: ``transform`` works as in the process that saved it.
        """
        state = ModelState.from_record(records.read_verified(path, records.MODEL_FORMAT))
        if cls is not StreamingNMFBase and state.estimator != cls.__name__:
            raise records.CheckpointError(
                f"{os.fspath(path)!r} holds a {state.estimator} model, not {cls.__name__}; "
                "load it with streamnmf.load(path)."
            )
        if cls is StreamingNMFBase:
            from . import ESTIMATORS

            if state.estimator not in ESTIMATORS:
                raise records.CheckpointError(
                    f"{os.fspath(path)!r} holds a model of estimator {state.estimator!r}, "
                    f"which this streamnmf ({__version__}) does not know (it knows "
                    f"{', '.join(sorted(ESTIMATORS))}); it was written by streamnmf "
                    f"{state.library_version}: load it with that version."
                )
            cls = ESTIMATORS[state.estimator]
        est = cls()
        valid = est.get_params()
        unknown = sorted(set(state.params) - set(valid))
        if unknown:
            warnings.warn(
                f"{os.fspath(path)!r} records parameters this streamnmf ({__version__}) does "
                f"not have: {', '.join(unknown)} (written by streamnmf "
                f"{state.library_version}); they are ignored, and the model may "
                "behave differently from the one saved.", stacklevel=3,
            )
        est.set_params(**{k: v for k, v in state.params.items()
                          if k in valid and not isinstance(v, dict)})
        est.components_ = state.components
        est._D = state.decoding_matrix
        est.history_ = state.history
        est.alpha_ = state.alpha
        est.n_features_in_ = state.n_features_in
        est.n_stages_ = state.n_stages
        est.samples_seen_ = state.samples_seen
        est.n_iter_ = est.n_stages_
        est.nonnegative_ = state.nonnegative
        est.reconstruction_err_ = state.reconstruction_err
        est._n_features_out = est.components_.shape[0]
        return est

    # -- using the model ----------------------------------------------------------------------
    def transform(self, X):
        """Codes of X on the fitted components.

        The thresholded decode that fit uses, refined to the non-negative least-squares codes
        where ``transform_algorithm`` says so (AND's default for non-negative components).

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            The codes (the paper's weights ``z``), non-negative; same dtype as X.
        """
        check_is_fitted(self, "components_")
        X = self._validated(X, reset=False)
        D = self._D if X.dtype == self._D.dtype else self._D.astype(X.dtype)
        Z = _engine.decode(X, D, self.alpha_, self._make_rule().kind)[0]
        if self._transform_by_nnls():
            # the thresholded decode (>= 0) starts coordinate descent on the exact problem
            C = self.components_.astype(np.float64)
            B = np.asarray(X @ self.components_.T.astype(X.dtype))
            K.nnls_codes(B, C @ C.T, Z, NNLS_CODE_SWEEPS, NNLS_CODE_TOL)
        return Z

    def _transform_by_nnls(self):
        algorithm = getattr(self, "transform_algorithm", "threshold")
        if algorithm == "auto":
            return bool(getattr(self, "nonnegative_", False))
        return algorithm == "nnls"

    def inverse_transform(self, Z):
        """Reconstruct data from codes: ``Z @ components_``.

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_components)

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self, "components_")
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"Expected codes of shape (n_samples, {self.components_.shape[0]}), got "
                f"{Z.shape}."
            )
        return Z @ self.components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
