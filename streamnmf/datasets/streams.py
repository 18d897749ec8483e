"""The AND paper's data sets as reproducible streams, and perturbed starts."""

from collections import namedtuple

import numpy as np

from ._random import (
    CHUNK_SIZE, DATASET_NAMES, _KEY_COMPONENTS, _KEY_NOISE, _KEY_PRIOR, _KEY_WEIGHTS, _RECIPES,
    _check_dtype, _check_int, _check_random_state, _check_real, _child_rng, _int_seed,
    _seed_sequence,
)
from .topics import _draw_weights, _make_components, _resolve_weight_params


Dataset = namedtuple("Dataset", ["data", "components", "weights"])
Dataset.__doc__ = """A generated data set: ``data = weights @ components + noise``.

Attributes
----------
data : ndarray of shape (n_samples, n_features)
    The samples as rows (the paper's ``Y`` transposed).
components : ndarray of shape (n_components, n_features)
    The ground-truth components as rows (the paper's ``A*`` transposed).
weights : ndarray of shape (n_samples, n_components)
    The true weights as rows (the paper's ``X`` transposed).
"""


class DatasetStream:
    """One of the AND paper's data sets, generated block by block.

    The components are made when the stream is created (``.components``); the samples are
    generated on demand, so a data set far larger than memory can be streamed. Iterating yields
    ``(data_block, weights_block)`` pairs of ``block_size`` rows (the last one shorter). The
    numbers depend only on the parameters and ``random_state``, not on ``block_size`` or on
    the order of reading (see the module docstring); :func:`make_dataset` with the same
    arguments returns exactly the concatenated blocks. The object is picklable (for example to
    send it to distributed workers that call :meth:`get_block`).

    Parameters
    ----------
    name : {"dir", "ctm-ref", "ctm", "neg", "noise", "binary"}
        The data set; see :func:`make_dataset`.
    n_samples : int, default=5000
        Number of samples (the paper's N).
    n_components : int, default=100
        Number of components (the paper's n).
    n_features : int, default=1000
        Number of features (the paper's m).
    noise : float or None, default=None
        Noise level gamma (>= 0); None means the data set's default (0.01 for "noise", else 0).
    block_size : int, default=10000
        Rows per block when iterating.
    weight_params : dict or None, default=None
        Parameters of the weight distribution, see :func:`make_weights` (for example
        ``{"dir_sparsity": 20}`` for the paper's appendix B.2).
    random_state : None, int, SeedSequence or numpy Generator, default=None
        Seed for reproducible output.
    dtype : {np.float64, np.float32}, default=np.float64
        Type of the returned arrays (generated in float64, then cast).

    Attributes
    ----------
    components : ndarray of shape (n_components, n_features)
        The ground truth as rows (``A*.T``), in ``dtype``.
    weight_kind : str
        The weight distribution, one of ``WEIGHT_KINDS``.
    weight_params : dict
        The resolved weight parameters (for "ctm": ``mu``, ``cov`` and its square root
        ``factor``).
    random_state : int or None
        The seed if an int was passed, else None (recorded by :func:`write_hdf5`).
    n_blocks : int
        Number of blocks an iteration yields (also ``len(stream)``).
    """

    def __init__(self, name, n_samples=5000, n_components=100, n_features=1000, *, noise=None,
                 block_size=10000, weight_params=None, random_state=None, dtype=np.float64):
        if name not in _RECIPES:
            raise ValueError(
                f"Unknown data set name {name!r}; valid names are {list(DATASET_NAMES)}."
            )
        component_kind, weight_kind, default_noise = _RECIPES[name]
        self.name = name
        self.n_samples = _check_int("n_samples", n_samples)
        self.n_components = _check_int("n_components", n_components)
        self.n_features = _check_int("n_features", n_features)
        self.noise = default_noise if noise is None else _check_real("noise", noise, low=0.0)
        self.block_size = _check_int("block_size", block_size)
        self.dtype = _check_dtype(dtype)
        if weight_params is None:
            weight_params = {}
        if not isinstance(weight_params, dict):
            raise ValueError(
                f"weight_params must be a dict of make_weights parameters or None, got "
                f"{type(weight_params).__name__}."
            )
        self._seed = _seed_sequence(random_state)
        self.weight_kind = weight_kind
        self.weight_params = _resolve_weight_params(
            weight_kind, self.n_components, weight_params,
            _child_rng(self._seed, _KEY_PRIOR),
        )
        self._components = _make_components(
            component_kind, self.n_components, self.n_features,
            _child_rng(self._seed, _KEY_COMPONENTS),
        )
        # A copy, also in float64: the caller may modify ``.components`` without changing the
        # samples still to be generated from ``_components``.
        self.components = self._components.astype(self.dtype, copy=True)
        self.random_state = _int_seed(random_state)
        self._cache = None  # (chunk index, data, weights) of the last chunk generated

    @property
    def shape(self):
        """``(n_samples, n_features)`` of the whole data set."""
        return (self.n_samples, self.n_features)

    @property
    def n_blocks(self):
        return -(-self.n_samples // self.block_size)

    def __len__(self):
        return self.n_blocks

    def __repr__(self):
        return (f"DatasetStream({self.name!r}, n_samples={self.n_samples}, "
                f"n_components={self.n_components}, n_features={self.n_features}, "
                f"noise={self.noise}, block_size={self.block_size})")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = None  # a generated chunk is not worth shipping
        return state

    def _chunk(self, index):
        """Float64 data and weights of chunk ``index`` (rows ``index * CHUNK_SIZE`` on)."""
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1], self._cache[2]
        # Always a whole chunk, even past n_samples: the draws, and the shapes of the matrix
        # product (BLAS may round differently for other shapes), are then the same whatever
        # rows are asked for.
        data, weights = self._generate(index)
        self._cache = (index, data, weights)
        return data, weights

    def _generate(self, index):
        """Draw chunk ``index``: float64 ``(data, weights)`` of ``CHUNK_SIZE`` rows each."""
        weights = _draw_weights(
            self.weight_kind, CHUNK_SIZE, self.n_components,
            _child_rng(self._seed, _KEY_WEIGHTS, index), self.weight_params,
        )
        data = weights @ self._components
        if self.noise > 0:
            # The paper's NOISE set: columns of N ~ gamma N(0, I / m), std gamma / sqrt(m).
            noise_rng = _child_rng(self._seed, _KEY_NOISE, index)
            data += (self.noise / np.sqrt(self.n_features)) * noise_rng.standard_normal(
                (CHUNK_SIZE, self.n_features))
        return data, weights

    def get_block(self, start, stop):
        """Data and weights of samples ``start`` to ``stop - 1``.

        Parameters
        ----------
        start, stop : int
            ``0 <= start <= stop <= n_samples``.

        Returns
        -------
        data : ndarray of shape (stop - start, n_features)
        weights : ndarray of shape (stop - start, n_components)
        """
        start = _check_int("start", start, low=0)
        stop = _check_int("stop", stop, low=0)
        if not start <= stop <= self.n_samples:
            raise ValueError(
                f"Need 0 <= start <= stop <= n_samples = {self.n_samples}, got start={start}, "
                f"stop={stop}."
            )
        data = np.empty((stop - start, self.n_features), dtype=self.dtype)
        weights = np.empty((stop - start, self.n_components), dtype=self.dtype)
        row = start
        while row < stop:
            index, offset = divmod(row, CHUNK_SIZE)
            take = min(CHUNK_SIZE - offset, stop - row)
            chunk_data, chunk_weights = self._chunk(index)
            data[row - start: row - start + take] = chunk_data[offset: offset + take]
            weights[row - start: row - start + take] = chunk_weights[offset: offset + take]
            row += take
        return data, weights

    def __iter__(self):
        for start in range(0, self.n_samples, self.block_size):
            yield self.get_block(start, min(start + self.block_size, self.n_samples))


def iter_dataset(name, n_samples=5000, n_components=100, n_features=1000, *, block_size=10000,
                 noise=None, weight_params=None, random_state=None, dtype=np.float64):
    """Stream one of the AND paper's data sets in blocks, without holding it in memory.

    Returns a :class:`DatasetStream`: its ``.components`` are the ground truth and iterating
    over it yields ``(data_block, weights_block)``. The blocks concatenate to exactly
    ``make_dataset(name, ...)`` with the same arguments, for any ``block_size``.

    Parameters
    ----------
    name, n_samples, n_components, n_features, noise, weight_params, random_state, dtype
        As in :func:`make_dataset`.
    block_size : int, default=10000
        Rows per block.

    Returns
    -------
    stream : DatasetStream

    Examples
    --------
    >>> stream = iter_dataset("dir", 20000, block_size=5000, random_state=0)
    >>> truth = stream.components                       # (100, 1000)
    >>> for data_block, weights_block in stream:        # 4 blocks of (5000, 1000)
    ...     pass
    """
    return DatasetStream(name, n_samples, n_components, n_features, noise=noise,
                         block_size=block_size, weight_params=weight_params,
                         random_state=random_state, dtype=dtype)


def make_dataset(name, n_samples=5000, n_components=100, n_features=1000, *, noise=None,
                 weight_params=None, random_state=None, dtype=np.float64):
    """One of the AND paper's semi-synthetic data sets (section 7), in memory.

    ``data = weights @ components + noise`` (the paper's ``Y = A* X + N``, transposed).

    ========== =========================================== =====================================
    name       components (``A*.T``)                       weights (``X.T``), see make_weights
    ========== =========================================== =====================================
    "dir"      topic-word matrix, make_topic_components    "dir": Dirichlet(5 / n)
    "ctm-ref"  topic-word matrix                           "ctm-ref": the reference code's CTM
                                                           (nearly one-hot)
    "ctm"      topic-word matrix                           "ctm": logistic normal, fixed mean
                                                           and covariance (dense, correlated)
    "neg"      i.i.d. U[-0.5, 0.5), signed                 "ctm-ref"
    "noise"    topic-word matrix                           "ctm-ref"; noise 0.01 by default
    "binary"   topic-word matrix                           "binary": Bernoulli(3 / n) in {0, 1}
    ========== =========================================== =====================================

    The paper's CTM, NEG and NOISE figures were produced by the public reference code, whose
    "CTM" weights are what is called "ctm-ref" here; "ctm" is the prior the paper describes.

    Noise model (any data set): ``Y = A* X + N`` with each sample's noise ``gamma * N(0, I/m)``,
    i.e. i.i.d. entries of standard deviation ``gamma / sqrt(n_features)`` as in the paper
    (gamma from 0.0005 to 0.1 in its Figure 2c). The public reference code drew
    ``N(0, (gamma / m)^2)`` instead (std ``gamma / n_features``), 31.6 times less for
    m = 1000: to reproduce its runs pass ``noise=gamma / sqrt(n_features)``.

    Parameters
    ----------
    name : {"dir", "ctm-ref", "ctm", "neg", "noise", "binary"}
        The data set.
    n_samples : int, default=5000
        Number of samples (the paper's N = 5000).
    n_components : int, default=100
        Number of components (the paper's n = 100).
    n_features : int, default=1000
        Number of features (the paper's m).
    noise : float or None, default=None
        Noise level gamma (>= 0). None: 0.01 for "noise", 0 for the others.
    weight_params : dict or None, default=None
        Parameters of the weight distribution passed to :func:`make_weights`, e.g.
        ``{"dir_sparsity": 80}`` for "dir" or ``{"ctm_sigma": 2}`` for "ctm".
    random_state : None, int, SeedSequence or numpy Generator, default=None
        Seed for reproducible output. Components, weights and noise use independent streams,
        so the same seed gives the same components for every ``n_samples`` and ``noise``.
    dtype : {np.float64, np.float32}, default=np.float64
        Type of the returned arrays (generated in float64, then cast).

    Returns
    -------
    dataset : Dataset
        Named tuple ``(data, components, weights)`` of shapes (n_samples, n_features),
        (n_components, n_features) and (n_samples, n_components).
    """
    stream = DatasetStream(name, n_samples, n_components, n_features, noise=noise,
                           block_size=n_samples, weight_params=weight_params,
                           random_state=random_state, dtype=dtype)
    data, weights = stream.get_block(0, stream.n_samples)
    return Dataset(data, stream.components, weights)


# --------------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------------

def make_init(true_components, *, in_span=1.0, out_of_span=0.0, random_state=None):
    """The AND paper's warm start: the truth perturbed in and out of its span.

    The paper's ``A0 = A* (I + U) + N`` (section 7 with ``N = 0``; appendix B.1 in general). In
    the library's row layout, with ``C* = A*.T`` of shape (n, m)::

        C0 = A0.T = (I + U)^T @ C* + N^T

    so row i of ``C0`` is ``(1 + U_ii) c*_i + sum_{j != i} U_ji c*_j``: mostly the i-th true
    component, mixed with the others (in-span error), plus an error outside their span.

    * ``U`` (n x n) has i.i.d. entries ``U[-0.5, 0.5) * in_span / sqrt(n)``: for n = 100 that is
      the paper's ``U[-0.05, 0.05) * rl`` (``in_span`` is the paper's ``rl``, 1 in the main
      text, up to 4 in appendix B.1). The ``1 / sqrt(n)`` is the public reference code's scaling;
      it keeps the spectral norm ``||U||_2`` near ``0.58 * in_span`` for every n, where a fixed
      0.05 would make the start stronger for small n and weaker for large n.
    * ``N`` has i.i.d. entries ``U[-0.5, 0.5) * out_of_span / sqrt(n) * s`` with ``s`` the mean l1
      norm of the true rows (``out_of_span`` is the paper's ``rn``; it tries 0.005 to 0.02). The
      reference code uses ``s = 1``, which is what ``s`` is for topic matrices (rows sum to 1);
      measuring ``N`` against the truth's own scale makes ``out_of_span`` mean the same for
      signed or unnormalised components, and ``make_init(k * C)`` equal to ``k * make_init(C)``.

    ``U`` and ``N`` come from separate draws in a fixed order, so for a given seed ``U`` does
    not depend on ``out_of_span``. Note that the start can have negative entries (the reference
    code's does too), which a non-negative solver must clip.

    Parameters
    ----------
    true_components : array-like of shape (n_components, n_features)
        The ground truth as rows (``A*.T``).
    in_span : float, default=1.0
        Scale of the in-span error ``U`` (the paper's rl), >= 0.
    out_of_span : float, default=0.0
        Scale of the out-of-span error ``N`` (the paper's rn), >= 0.
    random_state : None, int, SeedSequence or numpy Generator, default=None
        Seed for reproducible output.

    Returns
    -------
    init : ndarray of shape (n_components, n_features)
        The start, in the dtype of ``true_components`` if that is float32 or float64, else
        float64. With ``in_span=0`` and ``out_of_span=0`` it equals ``true_components``.
    """
    truth = np.asarray(true_components)
    if truth.ndim != 2 or truth.shape[0] == 0 or truth.shape[1] == 0:
        raise ValueError(
            f"true_components must be a non-empty 2-D array of shape (n_components, "
            f"n_features), got shape {truth.shape}."
        )
    if truth.dtype.kind not in "biuf" or not np.all(np.isfinite(truth)):
        raise ValueError("true_components must hold finite real numbers.")
    in_span = _check_real("in_span", in_span, low=0.0)
    out_of_span = _check_real("out_of_span", out_of_span, low=0.0)
    rng = _check_random_state(random_state)
    out_dtype = truth.dtype if truth.dtype in (np.float32, np.float64) else np.float64
    truth = truth.astype(np.float64, copy=False)
    n, m = truth.shape

    u = (rng.random((n, n)) - 0.5) * (in_span / np.sqrt(n))
    noise = (rng.random((n, m)) - 0.5) * (out_of_span / np.sqrt(n))
    # C* + U^T C* rather than (I + U)^T C*: the same matrix, but the truth passes through
    # untouched (bit for bit when U = 0) and its round-off is not mixed into the perturbation.
    init = truth + u.T @ truth
    if out_of_span > 0:
        init += noise * np.mean(np.sum(np.abs(truth), axis=1))
    return init.astype(out_dtype, copy=False)
