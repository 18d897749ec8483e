"""The scikit-learn face shared by the estimators: validation, init, fit / partial_fit / transform.

An estimator only says which :class:`~streamnmf._engine.Rule` it runs (``_make_rule``) and
which stage length its full-batch fit uses; the stage loop does the work.
"""

import numbers
import time

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _engine
from .schedules import make_schedule
from .sources import Source, as_source, check_block

INIT_OPTIONS = ("spa", "random")


def check_random_state(random_state):
    """A ``np.random.Generator`` from None, an int, or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    raise ValueError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}."
    )


def _check_number(name, value, low=None, high=None, integer=False, allow_none=False,
                  low_open=False):
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or (
        not integer and not np.isfinite(value)
    ):
        what = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")


def spa_init(Y, n_components, rng):
    """Start rows from "pure" samples by the successive projection algorithm (SPA).

    The AND paper suggests initialising with data points that contain one major feature. SPA
    picks them greedily: the sample with the largest norm (after scaling every sample to unit
    l1 norm), then the largest after projecting out the picked ones, and so on; under
    separability these are the purest samples. Rows SPA cannot fill (fewer samples or a
    smaller rank than ``n_components``) are random convex combinations of samples.

    Parameters
    ----------
    Y : {ndarray, csr_matrix} of shape (n_samples, n_features)
    n_components : int
    rng : numpy Generator

    Returns
    -------
    C0 : ndarray of shape (n_components, n_features), float64
    """
    Yd = np.asarray(Y.toarray() if sp.issparse(Y) else Y, dtype=np.float64)
    l1 = np.abs(Yd).sum(axis=1)
    usable = l1 > 0
    R = Yd[usable] / l1[usable, None]
    rows = np.flatnonzero(usable)
    picked = []
    norms = np.einsum("ij,ij->i", R, R)
    scale = norms.max() if norms.size else 0.0
    while len(picked) < n_components and norms.size and norms.max() > 1e-12 * scale:
        j = int(np.argmax(norms))
        picked.append(rows[j])
        u = R[j] / np.sqrt(norms[j])
        R -= np.outer(R @ u, u)
        norms = np.einsum("ij,ij->i", R, R)
    C0 = np.empty((n_components, Yd.shape[1]))
    C0[: len(picked)] = Yd[picked]
    missing = n_components - len(picked)
    if missing:
        if Yd.shape[0] == 0 or not usable.any():
            C0[len(picked):] = rng.uniform(0.0, 1.0, (missing, Yd.shape[1]))
        else:
            weights = rng.dirichlet(np.ones(Yd.shape[0]), size=missing)
            C0[len(picked):] = weights @ Yd + 1e-3 * rng.standard_normal(
                (missing, Yd.shape[1])) * (np.abs(Yd).mean() + 1e-12)
    return C0


class StreamingNMFBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared machinery of :class:`~streamnmf.AND` and :class:`~streamnmf.Purification`."""

    # -- to be provided by the algorithm -------------------------------------------------------
    def _make_rule(self):
        """The :class:`~streamnmf._engine.Rule` this algorithm runs."""
        raise NotImplementedError

    def _validate_algorithm_params(self):
        """Check the algorithm's own parameters (raise ValueError naming the parameter)."""

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
    def _validate_params(self):
        _check_number("n_components", self.n_components, low=1, integer=True, allow_none=True)
        _check_number("tol", self.tol, low=0, allow_none=True)
        _check_number("n_iter_no_change", self.n_iter_no_change, low=1, integer=True,
                      allow_none=True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None, got {self.callback!r}.")
        self._validate_algorithm_params()
        settings = self._loop_settings()
        make_schedule(settings["thresholds"])  # raises on a bad schedule
        return settings

    def _initial_components(self, first_block, n_features, dtype, rng):
        init = self.init
        n_components = self.n_components or n_features
        if isinstance(init, str):
            if init not in INIT_OPTIONS:
                raise ValueError(
                    f"init={init!r} is not supported; expected one of {INIT_OPTIONS} or an "
                    "array of shape (n_components, n_features)."
                )
            if init == "spa":
                C0 = spa_init(first_block, n_components, rng)
            else:
                Yd = first_block.toarray() if sp.issparse(first_block) else first_block
                weights = rng.dirichlet(np.ones(Yd.shape[0]), size=n_components)
                C0 = weights @ np.asarray(Yd, dtype=np.float64)
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
        return np.array(C0, dtype=dtype, order="C")

    # -- fitting ----------------------------------------------------------------------------
    def _validated(self, X, reset):
        """Validate an in-memory X with scikit-learn's rules (dtype, sparse, features)."""
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32],
                          reset=reset)
        return check_block(X, where="X")

    @staticmethod
    def _is_stream(X):
        return isinstance(X, Source) or (
            hasattr(X, "__next__") and not isinstance(X, np.ndarray)
        )

    def _start(self, first_block, n_features, dtype, n_samples=None):
        settings = self._validate_params()
        stage_length = settings["stage_length"] or n_samples
        self._n_stages_max = settings["n_stages"]
        rng = check_random_state(self.random_state)
        C0 = self._initial_components(first_block, n_features, dtype, rng)
        self._loop = _engine.StageLoop(
            self._make_rule(), make_schedule(settings["thresholds"]), C0,
            stage_length=stage_length, sgd_eta=settings["sgd_eta"],
            batch_size=settings["batch_size"],
        )
        self._loop.listeners.append(self._on_stage_end)
        self._stalled = 0
        self._best_change = np.inf
        self._stop = False
        self.n_features_in_ = n_features

    def fit(self, X, y=None):
        """Fit the components to X by running stages over it.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features), or a Source
            Training data (signed values allowed). A :class:`~streamnmf.sources.Source` is
            streamed in row blocks, one pass per stage for the full-batch updates.
        y : Ignored

        Returns
        -------
        self
        """
        if self._is_stream(X):
            source = as_source(X)
            if source.n_samples is None:
                raise ValueError(
                    "fit needs a source of known length (one pass per stage); feed an "
                    "unbounded stream chunk by chunk with partial_fit instead."
                )
            n_features = source.n_features
        else:
            X = self._validated(X, reset=True)
            source = as_source(X)
            n_features = X.shape[1]
        if source.n_samples == 0:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
        first = next(iter(source.blocks()))
        self._start(first, n_features, source.dtype, source.n_samples)
        while not self._stop and self._loop.stage < self._n_stages_max:
            for block in source.blocks():
                self._loop.consume(block)
                if self._stop or self._loop.stage >= self._n_stages_max:
                    break
        self._finish()
        return self

    def partial_fit(self, X, y=None):
        """Feed one chunk of a stream.

        A stage spans ``stage_length`` samples across calls (None: every call is one stage).
        The feature count and dtype are locked by the first call.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self
        """
        first_call = not hasattr(self, "_loop")
        X = self._validated(X, reset=first_call)
        if first_call:
            self._start(X, X.shape[1], X.dtype)
        elif X.dtype != self._loop.dtype:
            X = X.astype(self._loop.dtype)
        self._loop.consume(X)
        if self._loop.stage_length is None:
            self._loop.end_stage()
        self._finish()
        return self

    def _on_stage_end(self, loop, row):
        # Early stop: the relative change of the working matrix fell below tol, or stopped
        # improving for n_iter_no_change stages (round-off or the noise floor reached).
        if self.callback is not None:
            t0 = time.perf_counter()
            if self.callback(self, row) is True:
                self._stop = True
            loop.seconds -= time.perf_counter() - t0  # time spent evaluating is not fitting
        tol = self._tol(loop.dtype)
        if row["change"] <= tol:
            self._stop = True
        if row["change"] < self._best_change:
            self._best_change, self._stalled = row["change"], 0
        else:
            self._stalled += 1
            if self.n_iter_no_change is not None and self._stalled >= self.n_iter_no_change:
                self._stop = True
        if self.verbose:
            print(
                f"[{type(self).__name__}] stage {row['stage']:4d}  alpha={row['alpha']:.3e}  "
                f"change={row['change']:.3e}  objective={row['objective']:.3e}  "
                f"density={row['density']:.3f}  {row['seconds']:.2f}s",
                flush=True,
            )

    def _tol(self, dtype):
        return 10 * np.finfo(dtype).eps if self.tol is None else self.tol

    def _finish(self):
        loop = self._loop
        self.components_ = loop.C.copy()
        self.n_stages_ = loop.stage
        self.alpha_ = loop.alpha if loop.stage == 0 else loop.history["alpha"][-1]
        self.history_ = {k: np.asarray(v) for k, v in loop.history.items()}
        self._n_features_out = self.components_.shape[0]
        self._D = np.ascontiguousarray(self._make_rule().decoding_matrix(self.components_))

    # -- using the model ----------------------------------------------------------------------
    def transform(self, X):
        """Decode X with the fitted components: the same thresholded decode that fit uses.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            The codes (the paper's weights ``z``), mostly zeros; same dtype as the model.
        """
        check_is_fitted(self, "components_")
        X = self._validated(X, reset=False)
        D = self._D if X.dtype == self._D.dtype else self._D.astype(X.dtype)
        Z = _engine.decode(X, D, self.alpha_, self._make_rule().kind)[0]
        return Z

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
