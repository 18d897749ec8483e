"""The semi-synthetic data sets of the AND paper (section 7), reproducible and streamable.

Every data set is ``data = weights @ components + noise``: in the paper's column layout
``Y = A* X + N`` with ``Y`` (m x N), ``A*`` (m x n) and ``X`` (n x N). The library stores samples
and components as ROWS (scikit-learn layout), so

* ``data`` is ``Y.T``, shape (n_samples, n_features)          (paper: N samples, m words),
* ``components`` is ``A*.T``, shape (n_components, n_features) (paper: n or D topics),
* ``weights`` is ``X.T``, shape (n_samples, n_components).

Data sets (``make_dataset(name)``):

========== ======================================= ============================= ==========
name       components                              weights (one row per sample)  noise
========== ======================================= ============================= ==========
"dir"      :func:`make_topic_components`           Dirichlet(5/n)                0
"ctm-ref"  :func:`make_topic_components`           the reference code's "CTM"    0
"ctm"      :func:`make_topic_components`           logistic normal (a real CTM)  0
"neg"      i.i.d. U[-0.5, 0.5) (signed)            the reference code's "CTM"    0
"noise"    :func:`make_topic_components`           the reference code's "CTM"    0.01
"binary"   :func:`make_topic_components`           Bernoulli(3/n) in {0, 1}      0
========== ======================================= ============================= ==========

The Purification paper's model (``y = A* x + nu`` under (A1), (A2) or (A2'), with adversarial
or unbiased bounded noise) is :func:`make_purification_data` / :func:`iter_purification_data`.
Any of these streams can be written to an HDF5 file block by block, dense or CSR, with
:func:`write_hdf5`; :func:`load_hdf5_truth` reads back the ground truth.

Randomness. ``random_state`` seeds one :class:`numpy.random.SeedSequence`; the components, the
CTM prior, the weights and the noise each come from their own child sequence, and the samples
are generated in fixed chunks of ``CHUNK_SIZE`` rows, each chunk from its own child. So the
data for a seed do not depend on how they are read: any block size, any order, any subset of
rows (:meth:`DatasetStream.get_block`) give the same numbers, and a smaller ``n_samples`` gives
a prefix of a larger one. Changing ``noise`` rescales the same noise draw.
"""

import json
import numbers
import os
import tempfile
from collections import namedtuple

import numpy as np

from ._io import new_file_mode

__all__ = [
    "Dataset",
    "DatasetStream",
    "DATASET_NAMES",
    "WEIGHT_KINDS",
    "CHUNK_SIZE",
    "make_topic_components",
    "make_weights",
    "make_dataset",
    "iter_dataset",
    "make_init",
    "PURIFICATION_WEIGHTS",
    "PURIFICATION_NOISE",
    "PurificationStream",
    "make_purification_data",
    "iter_purification_data",
    "write_hdf5",
    "load_hdf5_truth",
    "load_hdf5",
]

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

WEIGHT_KINDS = ("dir", "ctm-ref", "ctm", "binary")

# name -> (components kind, weights kind, default noise level gamma)
_RECIPES = {
    "dir": ("topic", "dir", 0.0),
    "ctm-ref": ("topic", "ctm-ref", 0.0),
    "ctm": ("topic", "ctm", 0.0),
    "neg": ("uniform", "ctm-ref", 0.0),
    "noise": ("topic", "ctm-ref", 0.01),
    "binary": ("topic", "binary", 0.0),
}
DATASET_NAMES = tuple(_RECIPES)

# Rows generated per random stream. Fixed (not the user's block size) so that the numbers do not
# depend on how the data are read; 256 rows keep a chunk of 1000 features at 2 MB.
CHUNK_SIZE = 256

# The parameters each weight kind accepts, with their defaults (None: decided from n).
_WEIGHT_PARAMS = {
    "dir": {"dir_sparsity": 5.0},
    "ctm-ref": {},
    "ctm": {"mu": None, "cov": None, "ctm_sigma": None, "n_factors": None},
    "binary": {"binary_sparsity": 3.0},
}

# Child keys of the root SeedSequence: one independent stream per role.
_KEY_COMPONENTS, _KEY_PRIOR, _KEY_WEIGHTS, _KEY_NOISE = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------
# validation and randomness helpers
# --------------------------------------------------------------------------------------------

def _check_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int >= {low}, got {value!r} "
                         f"(type {type(value).__name__}).")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}.")
    return int(value)


def _check_real(name, value, low=None, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")
    return float(value)


def _check_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype!r}.") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(
            f"dtype must be np.float32 or np.float64, got {dtype}. The data are generated in "
            f"float64 and cast; cast the result yourself for other types."
        )
    return dtype


def _check_random_state(random_state):
    """A :class:`numpy.random.Generator` from None, an int, a SeedSequence or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    return np.random.default_rng(_seed_sequence(random_state))


def _seed_sequence(random_state):
    """A :class:`numpy.random.SeedSequence` that all the data set's streams derive from."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int, got {random_state}.")
        return np.random.SeedSequence(int(random_state))
    if isinstance(random_state, np.random.Generator):
        # Draw the entropy from the generator: reproducible when the generator is seeded, and
        # it advances the generator like any other use would.
        return np.random.SeedSequence(random_state.integers(0, 2**63, size=4).tolist())
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(random_state.randint(0, 2**31, size=4).tolist())
    raise ValueError(
        f"random_state must be None, a non-negative int, a numpy SeedSequence or a numpy "
        f"Generator, got {random_state!r}."
    )


def _int_seed(random_state):
    """``random_state`` as a plain int if it is one (bool excluded), else None."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return None


def _child_rng(seed_sequence, *key):
    """The generator of the child ``key`` of ``seed_sequence``, without mutating it.

    ``SeedSequence.spawn`` would advance the parent's counter, so spawning twice (or from a
    sequence the caller passed in) would give different streams; an explicit spawn key is a
    pure function of the parent and the key.
    """
    child = np.random.SeedSequence(
        entropy=seed_sequence.entropy,
        spawn_key=tuple(seed_sequence.spawn_key) + tuple(key),
        pool_size=seed_sequence.pool_size,
    )
    return np.random.default_rng(child)


def _softmax(logits):
    """Row-wise softmax, stable for logits in the hundreds (subtract the row maximum)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


# --------------------------------------------------------------------------------------------
# components
# --------------------------------------------------------------------------------------------

def make_topic_components(n_components=100, n_features=1000, *, zipf_exponent=1.0,
                          concentration=0.1, n_anchors=None, anchor_mass=0.1,
                          random_state=None):
    """A realistic non-negative topic-word matrix: rows are word distributions.

    The AND paper's ``A*`` was 100 topics learned on NIPS papers by the anchor-word algorithm of
    Arora et al. (2013); that matrix is not available, so this builds one with the same traits:

    1. **Vocabulary.** ``n_components * n_anchors`` words are reserved as anchor words (``n_anchors``
       per topic, disjoint); the remaining ``m'`` "general" words get a Zipf base measure
       ``b_w ~ 1 / rank_w ** zipf_exponent`` with the ranks in random order, so a few words are
       frequent in every topic and most are rare, as in text.
    2. **Topics.** Each topic's distribution over the general words is a Dirichlet draw with
       parameter ``concentration * m' * b`` (a total concentration of ``concentration * m'``,
       100 for the defaults): small, so every topic puts most of its mass on a few dozen words
       (sparse and long-tailed, about half the mass on its 10 top words) while common words are
       shared, which correlates the topics as real ones are.
    3. **Anchors.** Each topic gets ``anchor_mass`` of probability spread over its own anchor
       words (a flat Dirichlet split) and the anchor words have probability exactly 0 in all
       other topics: the separability assumption of anchor-word models, which also keeps the
       matrix well conditioned.

    Each row sums to 1. With the defaults the condition number ``s_max / s_min`` of the
    (100, 1000) matrix is about 20 (19.5 for ``random_state=0``); without anchors
    (``anchor_mass=0``) it is about 40, and it grows with ``zipf_exponent`` and
    ``concentration`` (topics sharing more words).

    Parameters
    ----------
    n_components : int, default=100
        Number of topics (the paper's n = 100).
    n_features : int, default=1000
        Vocabulary size (the paper's m).
    zipf_exponent : float, default=1.0
        Exponent of the Zipf base measure (>= 0; 0 gives a flat vocabulary).
    concentration : float, default=0.1
        Dirichlet concentration per general word (> 0); smaller means sparser topics.
    n_anchors : int or None, default=None
        Anchor words per topic. None: ``min(3, n_features // (2 * n_components))``, so anchors
        take at most half the vocabulary (3 for the default shape, 0 when
        ``n_features < 2 * n_components``).
    anchor_mass : float, default=0.1
        Probability mass of each topic on its anchor words, in [0, 1]; must be 0 when
        ``n_anchors`` is 0 and 1 when no general word is left.
    random_state : None, int, SeedSequence or numpy Generator, default=None
        Seed for reproducible output.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
        Non-negative rows summing to 1 (the paper's ``A*`` transposed: its columns sum to 1).
    """
    n = _check_int("n_components", n_components)
    m = _check_int("n_features", n_features)
    zipf_exponent = _check_real("zipf_exponent", zipf_exponent, low=0.0)
    concentration = _check_real("concentration", concentration, low=0.0, low_open=True)
    anchor_mass = _check_real("anchor_mass", anchor_mass, low=0.0, high=1.0)
    if n_anchors is None:
        n_anchors = min(3, m // (2 * n))
        if n_anchors == 0:
            anchor_mass = 0.0
    n_anchors = _check_int("n_anchors", n_anchors, low=0)
    n_general = m - n * n_anchors
    if n_general < 0:
        raise ValueError(
            f"n_anchors={n_anchors} anchor words for each of {n} topics need "
            f"{n * n_anchors} words, but n_features is {m}. Lower n_anchors to at most "
            f"{m // n} or raise n_features."
        )
    if n_anchors == 0 and anchor_mass > 0:
        raise ValueError(f"anchor_mass must be 0 when n_anchors is 0, got {anchor_mass}.")
    if n_general == 0 and anchor_mass < 1:
        raise ValueError(
            f"All {m} words are anchors, so anchor_mass must be 1, got {anchor_mass}. "
            f"Lower n_anchors or raise n_features."
        )
    rng = _check_random_state(random_state)

    words = rng.permutation(m)
    anchors = words[: n * n_anchors].reshape(n, n_anchors)
    general = words[n * n_anchors:]
    components = np.zeros((n, m))
    if n_general > 0:
        rank = rng.permutation(n_general) + 1.0
        base = rank ** (-zipf_exponent)
        base /= base.sum()
        topics = rng.dirichlet(concentration * n_general * base, size=n)
        components[:, general] = (1.0 - anchor_mass) * topics
    if n_anchors > 0:
        split = rng.dirichlet(np.ones(n_anchors), size=n)
        components[np.arange(n)[:, None], anchors] = anchor_mass * split
    # Renormalise: the Dirichlet rows sum to 1 only up to round-off.
    components /= components.sum(axis=1, keepdims=True)
    return components


def _make_components(kind, n_components, n_features, rng):
    if kind == "topic":
        return make_topic_components(n_components, n_features, random_state=rng)
    # "neg": the paper's NEG set, A*_ij ~ U[-0.5, 0.5): signed, so only AND can recover it.
    return rng.random((n_components, n_features)) - 0.5


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------

def _random_correlation(n, n_factors, rng):
    """A random correlation matrix with strong correlations, from a factor model.

    ``R = L L^T + diag(1 - h)`` with loading rows ``L_i = sqrt(h_i) * w_i / ||w_i||``, ``w_i``
    standard normal in ``n_factors`` dimensions and communalities ``h_i ~ U[0.3, 0.9]``: unit
    diagonal, off-diagonal entries up to about 0.9, smallest eigenvalue >= 0.1.
    """
    w = rng.standard_normal((n, n_factors))
    h = rng.uniform(0.3, 0.9, size=n)
    loadings = np.sqrt(h)[:, None] * w / np.linalg.norm(w, axis=1, keepdims=True)
    corr = loadings @ loadings.T
    corr[np.diag_indices(n)] = 1.0
    return corr


def _resolve_weight_params(kind, n_components, params, prior_rng):
    """Validate ``params`` for ``kind``, fill the defaults, and draw the CTM prior if needed."""
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"Unknown weight kind {kind!r}; valid kinds are {list(WEIGHT_KINDS)}.")
    accepted = _WEIGHT_PARAMS[kind]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"Weight kind {kind!r} got unexpected parameter(s) {unknown}; it accepts "
            f"{sorted(accepted) if accepted else 'no parameters'}."
        )
    n = n_components
    resolved = dict(accepted)
    resolved.update(params)
    if kind == "dir":
        _check_real("dir_sparsity", resolved["dir_sparsity"], low=0.0, low_open=True)
    elif kind == "binary":
        _check_real("binary_sparsity", resolved["binary_sparsity"], low=0.0, high=n,
                    low_open=True)
    elif kind == "ctm":
        resolved = _resolve_ctm_prior(n, resolved, prior_rng)
    return resolved


def _resolve_ctm_prior(n, params, prior_rng):
    mu, cov = params["mu"], params["cov"]
    if cov is not None and (params["ctm_sigma"] is not None or params["n_factors"] is not None):
        raise ValueError(
            "ctm_sigma and n_factors shape the generated covariance; with an explicit cov "
            "they do nothing. Pass either cov or ctm_sigma/n_factors, not both."
        )
    if mu is None:
        mu = np.zeros(n)
    mu = np.asarray(mu, dtype=np.float64)
    if mu.shape != (n,) or not np.all(np.isfinite(mu)):
        raise ValueError(
            f"mu must be a finite vector of shape (n_components,) = ({n},), got shape "
            f"{mu.shape}."
        )
    if cov is None:
        sigma = 1.0 if params["ctm_sigma"] is None else params["ctm_sigma"]
        sigma = _check_real("ctm_sigma", sigma, low=0.0, low_open=True)
        n_factors = max(1, n // 20) if params["n_factors"] is None else params["n_factors"]
        n_factors = _check_int("n_factors", n_factors)
        cov = sigma**2 * _random_correlation(n, n_factors, prior_rng)
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (n, n) or not np.all(np.isfinite(cov)):
        raise ValueError(
            f"cov must be a finite matrix of shape (n_components, n_components) = ({n}, {n}), "
            f"got shape {cov.shape}."
        )
    scale = max(np.max(np.abs(cov)), np.finfo(np.float64).tiny)
    if not np.allclose(cov, cov.T, rtol=0, atol=1e-12 * scale):
        raise ValueError("cov must be symmetric; symmetrise it with (cov + cov.T) / 2.")
    # A symmetric square root through eigh accepts singular (positive semi-definite) covariances,
    # which Cholesky would reject.
    eigval, eigvec = np.linalg.eigh(cov)
    if eigval[0] < -1e-10 * max(eigval[-1], 0.0) or eigval[-1] <= 0:
        raise ValueError(
            f"cov must be positive semi-definite, but its smallest eigenvalue is "
            f"{eigval[0]:.3g} (largest {eigval[-1]:.3g})."
        )
    factor = eigvec * np.sqrt(np.clip(eigval, 0.0, None))
    return {"mu": mu, "cov": cov, "factor": factor}


def _ctm_ref_logits(n_samples, n, rng):
    """Logits ``Sigma g`` with ``Sigma = C C`` (a product, not ``C C^T``), C ~ randn(n, n).

    The reference code redraws ``C`` for every sample; drawing it costs n^2 normals per sample.
    This draws the SAME distribution from 3n normals. With ``u = g / ||g||`` and the orthogonal
    complement ``Q`` of ``u``, ``a = C u`` and ``B = C Q`` are independent standard Gaussian,
    ``C g = ||g|| a`` and ``C C g = ||g|| (a (u . a) + B (Q^T a))``, where ``B (Q^T a)`` given
    ``a`` is ``N(0, ||Q^T a||^2 I)``, ``||Q^T a||^2 = ||a||^2 - (u . a)^2``. So

        logit = ||g|| * ((u . a) a + sqrt(||a||^2 - (u . a)^2) h),   g, a, h ~ N(0, I_n).

    ``tests/test_datasets.py`` checks it against the brute-force ``C @ (C @ g)``.
    """
    g = rng.standard_normal((n_samples, n))
    a = rng.standard_normal((n_samples, n))
    h = rng.standard_normal((n_samples, n))
    g_norm = np.linalg.norm(g, axis=1)
    ua = np.einsum("ij,ij->i", g, a) / g_norm
    rest = np.sqrt(np.maximum(np.einsum("ij,ij->i", a, a) - ua**2, 0.0))
    return g_norm[:, None] * (ua[:, None] * a + rest[:, None] * h)


def _draw_weights(kind, n_samples, n, rng, params):
    if kind == "dir":
        # numpy switches to a stick-breaking sampler for alpha < 0.1, so tiny parameters
        # (0.05 in the paper) do not give NaN rows.
        return rng.dirichlet(np.full(n, params["dir_sparsity"] / n), size=n_samples)
    if kind == "ctm-ref":
        return _softmax(_ctm_ref_logits(n_samples, n, rng))
    if kind == "ctm":
        logits = rng.standard_normal((n_samples, n)) @ params["factor"].T
        logits += params["mu"]
        return _softmax(logits)
    # "binary"
    return (rng.random((n_samples, n)) < params["binary_sparsity"] / n).astype(np.float64)


def make_weights(kind, n_samples, n_components, *, random_state=None, **params):
    """Draw weight vectors (the paper's columns of ``X``), one row per sample.

    Kinds and their parameters:

    ``"dir"`` -- ``dir_sparsity`` (default 5)
        ``x ~ Dirichlet(dir_sparsity / n, ..., dir_sparsity / n)``. The paper's DIR set uses
        0.05 per component for n = 100 (``dir_sparsity=5``); its appendix B.2 varies
        ``dir_sparsity`` from 5 to 80 (almost full support). Rows sum to 1; most entries are
        tiny.
    ``"ctm-ref"`` -- no parameters
        What the public reference code (PrincetonML/AND4NMF) calls CTM: for every sample a fresh
        ``C ~ randn(n, n)``, ``Sigma = C @ C`` (a matrix product, NOT ``C C^T``, as in the
        reference), ``logit = Sigma @ g`` with ``g ~ N(0, I)``, ``x = softmax(logit)``. The
        logits are of order n, so ``x`` is nearly one-hot: for n = 100 about 89% of the samples
        have a largest weight above 0.99. This is what the paper's CTM/NEG/NOISE figures ran
        on; it is NOT a correlated topic model. Drawn exactly in distribution from 3n normals
        per sample instead of n^2 (see the source).
    ``"ctm"`` -- ``mu``, ``cov``, ``ctm_sigma`` (default 1), ``n_factors`` (default n // 20)
        A real correlated-topic-model prior (Blei & Lafferty, 2006): the logistic normal
        ``x = softmax(mu + L g)``, ``L L^T = cov``, with ONE mean and covariance for all samples.
        By default ``mu = 0`` and ``cov = ctm_sigma^2 R`` with ``R`` a random correlation matrix
        of a factor model with ``n_factors`` factors (off-diagonal correlations up to about 0.9),
        drawn once from ``random_state``. Pass ``mu`` (shape (n,)) and/or ``cov`` (shape (n, n),
        positive semi-definite) to fix them. The weights are dense (every entry positive; the
        largest is about 0.06 for n = 100) and strongly correlated: much harder than
        ``"ctm-ref"``.
    ``"binary"`` -- ``binary_sparsity`` (default 3)
        ``x_i = 1`` independently with probability ``binary_sparsity / n``, else 0: the AND
        paper's Theorem 1 setting and the Purification paper's assumption (A2'). A sample may
        have no active component.

    Parameters
    ----------
    kind : {"dir", "ctm-ref", "ctm", "binary"}
        The distribution, see above.
    n_samples : int
        Number of weight vectors (the paper's N).
    n_components : int
        Their length (the paper's n).
    random_state : None, int, SeedSequence or numpy Generator, default=None
        Seed for reproducible output. For ``"ctm"`` the prior is drawn from it first.
    **params
        The kind's parameters listed above; others raise ValueError.

    Returns
    -------
    weights : ndarray of shape (n_samples, n_components)
        Non-negative float64 weights (the paper's ``X`` transposed).
    """
    n_samples = _check_int("n_samples", n_samples)
    n = _check_int("n_components", n_components)
    rng = _check_random_state(random_state)
    resolved = _resolve_weight_params(kind, n, params, rng)
    return _draw_weights(kind, n_samples, n, rng, resolved)


# --------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# the Purification paper's model (Li, Liang and Risteski, NIPS 2016, section 3)
# --------------------------------------------------------------------------------------------

PURIFICATION_WEIGHTS = ("a2'", "a2")
PURIFICATION_NOISE = ("adversarial", "aimed", "unbiased")


def _check_sparsity(sparsity, n):
    """``sparsity`` as a float64 vector of shape (n,) with entries in (0, n]."""
    if np.ndim(sparsity) == 0:
        value = _check_real("sparsity", sparsity, low=0.0, high=n, low_open=True)
        return np.full(n, value)
    try:
        values = np.asarray(sparsity, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"sparsity must be a number or an array of shape (n_components,) = ({n},), got "
            f"{sparsity!r}."
        ) from None
    if values.shape != (n,):
        raise ValueError(
            f"sparsity must be a number or an array of shape (n_components,) = ({n},), got "
            f"shape {values.shape}."
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > n):
        raise ValueError(
            f"every sparsity s_i must be in (0, n_components] = (0, {n}] (component i is "
            f"active with probability s_i / n), got values from {np.min(values)!r} to "
            f"{np.max(values)!r}."
        )
    return values


def _check_value_range(value_range, weights):
    if weights == "a2'":
        if value_range is not None:
            raise ValueError(
                "value_range applies to weights='a2' only; under (A2') the active weights are "
                "exactly 1. Drop value_range or pass weights='a2'."
            )
        return None
    if value_range is None:
        return (0.0, 1.0)
    try:
        low, high = value_range
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a pair (low, high) with 0 <= low <= high <= 1, got "
            f"{value_range!r}."
        ) from None
    low = _check_real("value_range[0]", low, low=0.0, high=1.0)
    high = _check_real("value_range[1]", high, low=0.0, high=1.0, low_open=True)
    if low > high:
        raise ValueError(f"value_range must have low <= high, got ({low}, {high}).")
    return (low, high)


def _purification_components(components, n, m, rng):
    """The ground truth for :class:`PurificationStream`, checked against (A1)."""
    if n > m:
        raise ValueError(
            f"(A1) needs n_components linearly independent components in R^n_features, "
            f"impossible with n_components={n} > n_features={m}. Raise n_features or lower "
            f"n_components."
        )
    if components is None or (isinstance(components, str) and components == "topic"):
        return make_topic_components(n, m, random_state=rng)
    if isinstance(components, str):
        if components == "signed":
            signed = rng.standard_normal((n, m))
            return signed / np.sum(np.abs(signed), axis=1, keepdims=True)
        raise ValueError(
            f"components must be None, 'topic', 'signed' or an array of shape (n_components, "
            f"n_features) = ({n}, {m}), got {components!r}."
        )
    array = np.asarray(components)
    if array.shape != (n, m):
        raise ValueError(
            f"components must have shape (n_components, n_features) = ({n}, {m}), got "
            f"{array.shape}. Rows are components (the paper's A* transposed)."
        )
    if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
        raise ValueError("components must hold finite real numbers.")
    array = np.array(array, dtype=np.float64)  # a private copy
    rank = np.linalg.matrix_rank(array)
    if rank < n:
        raise ValueError(
            f"components must be linearly independent (assumption (A1)), but the {n} rows "
            f"span only {rank} dimensions. Remove or perturb the dependent rows."
        )
    return array


class PurificationStream(DatasetStream):
    """Data of the Purification paper's model, generated block by block.

    ``y = A* x + nu`` (the paper's equation (1)); as everywhere in the library samples and
    components are rows, so a block of ``data`` is ``weights @ components + noise``. See
    :func:`make_purification_data` for the model and the parameters; this class adds
    ``block_size`` (rows per block when iterating) and streams like :class:`DatasetStream`:
    the numbers do not depend on the block size or the reading order, and
    :func:`make_purification_data` returns exactly the concatenated blocks.

    Attributes
    ----------
    components : ndarray of shape (n_components, n_features)
        The ground truth ``A*.T``, in ``dtype``.
    weight_kind : {"a2'", "a2"}
    weight_params : dict
        ``{"sparsity": ndarray of shape (n_components,), "value_range": (low, high) or None}``.
    noise_kind : {"adversarial", "aimed", "unbiased"}
    noise_directions : ndarray of shape (n_components, n_features) or None
        The fixed vectors ``v_i`` of the adversarial and aimed noise (entries in [-1, 1],
        random signs unless given); None for unbiased noise.
    """

    def __init__(self, n_samples=5000, n_components=100, n_features=1000, *, weights="a2'",
                 sparsity=3.0, value_range=None, noise=0.0, noise_kind="adversarial",
                 noise_directions=None, components=None, block_size=10000, random_state=None,
                 dtype=np.float64):
        if weights not in PURIFICATION_WEIGHTS:
            raise ValueError(
                f"weights must be one of {list(PURIFICATION_WEIGHTS)}, got {weights!r}."
            )
        if noise_kind not in PURIFICATION_NOISE:
            raise ValueError(
                f"noise_kind must be one of {list(PURIFICATION_NOISE)}, got {noise_kind!r}."
            )
        self.name = "purification"
        self.n_samples = _check_int("n_samples", n_samples)
        self.n_components = _check_int("n_components", n_components)
        self.n_features = _check_int("n_features", n_features)
        self.noise = _check_real("noise", noise, low=0.0)
        self.noise_kind = noise_kind
        self.block_size = _check_int("block_size", block_size)
        self.dtype = _check_dtype(dtype)
        self.weight_kind = weights
        self.weight_params = {
            "sparsity": _check_sparsity(sparsity, self.n_components),
            "value_range": _check_value_range(value_range, weights),
        }
        self._seed = _seed_sequence(random_state)
        self.random_state = _int_seed(random_state)
        self._components = _purification_components(
            components, self.n_components, self.n_features,
            _child_rng(self._seed, _KEY_COMPONENTS),
        )
        self.components = self._components.astype(self.dtype, copy=True)
        self.noise_directions = _noise_directions(
            noise_directions, noise_kind, self.n_components, self.n_features,
            _child_rng(self._seed, _KEY_PRIOR))
        self._cache = None

    def __repr__(self):
        return (f"PurificationStream(n_samples={self.n_samples}, "
                f"n_components={self.n_components}, n_features={self.n_features}, "
                f"weights={self.weight_kind!r}, noise={self.noise}, "
                f"noise_kind={self.noise_kind!r}, block_size={self.block_size})")

    def _generate(self, index):
        n, m = self.n_components, self.n_features
        rng = _child_rng(self._seed, _KEY_WEIGHTS, index)
        active = rng.random((CHUNK_SIZE, n)) < self.weight_params["sparsity"] / n
        if self.weight_kind == "a2":
            low, high = self.weight_params["value_range"]
            weights = active * rng.uniform(low, high, size=(CHUNK_SIZE, n))
        else:
            weights = active.astype(np.float64)
        data = weights @ self._components
        if self.noise > 0:
            if self.noise_kind == "adversarial":
                # nu = C_nu * V^T x / max(1, ||x||_1): a deterministic function of x, so
                # E[nu | x] = nu != 0, and |nu_j| <= C_nu because |(V^T x)_j| <= ||x||_1.
                scale = self.noise / np.maximum(1.0, np.sum(weights, axis=1))
                data += scale[:, None] * (weights @ self.noise_directions)
            elif self.noise_kind == "aimed":
                # nu = C_nu v_K with K uniform, independent of x
                aim = _child_rng(self._seed, _KEY_NOISE, index).integers(0, n, size=CHUNK_SIZE)
                data += self.noise * self.noise_directions[aim]
            else:
                signs = _child_rng(self._seed, _KEY_NOISE, index).integers(
                    0, 2, size=(CHUNK_SIZE, m))
                data += self.noise * (2.0 * signs - 1.0)
        return data, weights


def _noise_directions(directions, noise_kind, n, m, rng):
    """The ``v_i`` of adversarial or aimed noise: ``directions`` checked, or random signs."""
    if noise_kind == "unbiased":
        if directions is not None:
            raise ValueError(
                "noise_directions applies to noise_kind 'adversarial' or 'aimed'; unbiased "
                "noise has random signs in every entry. Drop noise_directions or change "
                "noise_kind."
            )
        return None
    signs = 2.0 * rng.integers(0, 2, size=(n, m)) - 1.0  # drawn either way: same data after
    if directions is None:
        return signs
    values = np.asarray(directions)
    if values.shape != (n, m) or values.dtype.kind not in "biuf":
        raise ValueError(
            f"noise_directions must be a real array of shape (n_components, n_features) = "
            f"({n}, {m}), got {values.dtype} of shape {values.shape}."
        )
    values = np.array(values, dtype=np.float64)
    if not np.all(np.abs(values) <= 1.0):  # NaN fails too
        raise ValueError(
            "noise_directions must have entries in [-1, 1] (|nu_j| <= noise is the model's "
            f"bound), found entries up to {float(np.nanmax(np.abs(values))):g}. Scale them, "
            "e.g. np.sign(decoder rows)."
        )
    return values


def iter_purification_data(n_samples=5000, n_components=100, n_features=1000, *,
                           weights="a2'", sparsity=3.0, value_range=None, noise=0.0,
                           noise_kind="adversarial", noise_directions=None, components=None,
                           block_size=10000, random_state=None, dtype=np.float64):
    """Stream :func:`make_purification_data` in blocks, without holding it in memory.

    Parameters are those of :func:`make_purification_data`, plus ``block_size`` (rows per
    block, default 10000). Returns a :class:`PurificationStream`: ``.components`` is the truth,
    iterating yields ``(data_block, weights_block)``, and :func:`write_hdf5` accepts it.
    """
    return PurificationStream(
        n_samples, n_components, n_features, weights=weights, sparsity=sparsity,
        value_range=value_range, noise=noise, noise_kind=noise_kind,
        noise_directions=noise_directions, components=components, block_size=block_size,
        random_state=random_state, dtype=dtype,
    )


def make_purification_data(n_samples=5000, n_components=100, n_features=1000, *,
                           weights="a2'", sparsity=3.0, value_range=None, noise=0.0,
                           noise_kind="adversarial", noise_directions=None, components=None,
                           random_state=None, dtype=np.float64):
    """Data from the Purification paper's model ``y = A* x* + nu`` (NIPS 2016, section 3).

    In the library's row layout ``data = weights @ components + noise`` with ``components`` =
    ``A*.T`` (n x m), ``weights`` = ``X*.T`` and ``noise`` = the ``nu`` of every sample.

    **Components, assumption (A1)** (the columns of ``A*`` are linearly independent; nothing
    else, not even non-negativity). ``components=None`` or ``"topic"``:
    :func:`make_topic_components`, non-negative rows summing to 1, i.e. columns of ``A*`` of
    unit l1 norm, ``||A*||_1 = 1`` as in the remark after Theorem 1; with
    ``n_features >= 2 * n_components`` it has anchor words and a condition number about 20.
    ``"signed"``: i.i.d. standard normal entries, rows scaled to unit l1 norm (signed, allowed
    by (A1); well conditioned when ``n_features`` is several times ``n_components``). An array
    of shape (n_components, n_features) is used as given (copied; its rank is checked).

    **Weights.** The coordinates are independent.

    * ``"a2'"`` -- the simplified assumption (A2') of Theorems 1 and 2: ``x_i = 1`` with
      probability ``s_i / n``, else 0 (``s_i`` = ``sparsity``). The paper's constants are then
      ``C1 = c2 = C2 = s``.
    * ``"a2"`` -- the general assumption (A2), ``x_i`` in [0, 1], ``E[x_i] <= C1 / n``,
      ``c2 / n <= E[x_i^2] <= C2 / n``. Concretely ``x_i = b_i u_i`` with
      ``b_i ~ Bernoulli(s_i / n)`` and ``u_i ~ U[low, high)`` (``value_range``, default
      ``(0, 1)``), all independent, so ``E[x_i] = (s_i / n) (low + high) / 2`` and
      ``E[x_i^2] = (s_i / n) (low^2 + low high + high^2) / 3``.

    A ``sparsity`` vector with unequal entries gives unbalanced proportions ``E[x_i^2]``, the
    case of the paper's section 6 ("more general proportions", Theorems 6 and 7 need
    ``max E[x_i^2] <= 2 min E[x_i^2]``).

    **Noise**, entrywise bounded by ``C_nu`` = ``noise`` (``|nu_j| <= noise`` always):

    * ``"adversarial"`` -- model (N1): ``nu = C_nu V^T x / max(1, ||x||_1)`` with a fixed
      matrix ``V`` (n x m, rows ``v_i`` of i.i.d. random signs, ``.noise_directions`` of the
      stream) drawn once per data set. The noise is a deterministic function of ``x``, biased
      (``E[nu | x] = nu != 0``) and aligned with the features: a sample whose only active
      component is ``i`` (with ``x_i <= 1``) is exactly ``(A*_i + C_nu v_i) x_i``, so the data
      look as if every column ``A*_i`` were shifted by ``C_nu v_i`` (l1 norm ``C_nu m``), which
      no amount of data can undo. This is the noise limit of Theorem 1: recovery up to an error
      of the order of one sample's noise.
    * ``"aimed"`` -- also (N1), aimed at a decoder instead of the columns: ``nu = C_nu v_K``
      with ``K`` uniform over the components, drawn per sample independently of ``x``. With
      ``noise_directions`` = the signs of the rows ``b_k`` of a decoder ``B`` of ``A*``
      (``np.sign(B)``), every sample's decoded value ``k = K`` moves by ``C_nu ||b_k||_1``, the
      most any noise within the bound can move it: the worst case of that decoder, the one the
      minimum-infinity-norm inverse minimises (Purification's Theorem 1). Independent of
      ``x``, it cannot pass for a shift of the columns; only the decoder turns it into bias.
    * ``"unbiased"`` -- model (N2): ``nu_j = C_nu r_j`` with i.i.d. Rademacher signs ``r_j``
      (+-1), independent of ``x``: zero mean given ``x`` and saturating the bound in every
      entry, the largest noise (N2) allows.

    Scale: with the default components ``||A* x||_1 = ||x||_1`` (about ``mean(s)`` for
    (A2')) while ``||nu||_1`` is up to ``C_nu m``. Theorem 1 tolerates adversarial noise with
    ``C_nu m`` of the order of the signal (``noise`` about ``c / n_features``); Theorem 2
    tolerates unbiased noise ``sqrt(n)`` times larger.

    Parameters
    ----------
    n_samples : int, default=5000
        Number of samples (the paper's N).
    n_components : int, default=100
        Number of components (the paper's n).
    n_features : int, default=1000
        Number of features (the paper's m); at least ``n_components`` for (A1).
    weights : {"a2'", "a2"}, default="a2'"
        The weight distribution, see above.
    sparsity : float or array-like of shape (n_components,), default=3.0
        The paper's ``s``: component ``i`` is active with probability ``s_i / n``; each
        ``s_i`` in (0, n_components].
    value_range : (float, float) or None, default=None
        ``(low, high)``, ``0 <= low <= high <= 1``, the range of active weights for "a2";
        None means ``(0, 1)``. Must be None for "a2'".
    noise : float, default=0.0
        The entrywise bound ``C_nu`` (>= 0).
    noise_kind : {"adversarial", "aimed", "unbiased"}, default="adversarial"
        The noise model, see above.
    noise_directions : array-like of shape (n_components, n_features) or None, default=None
        The ``v_i`` of adversarial and aimed noise, entries in [-1, 1]; None: i.i.d. random
        signs drawn from ``random_state``.
    components : None, "topic", "signed" or array-like of shape (n_components, n_features)
        The ground truth ``A*.T``, see above.
    random_state : None, int, SeedSequence or numpy Generator, default=None
        Seed for reproducible output. Components, noise directions, weights and noise use
        independent streams (as in :func:`make_dataset`): the same seed gives the same
        components for any ``n_samples`` or ``noise``, and the same draws rescaled for another
        ``noise``.
    dtype : {np.float64, np.float32}, default=np.float64
        Type of the returned arrays (generated in float64, then cast).

    Returns
    -------
    dataset : Dataset
        Named tuple ``(data, components, weights)`` of shapes (n_samples, n_features),
        (n_components, n_features) and (n_samples, n_components).
    """
    stream = iter_purification_data(
        n_samples, n_components, n_features, weights=weights, sparsity=sparsity,
        value_range=value_range, noise=noise, noise_kind=noise_kind,
        noise_directions=noise_directions, components=components,
        block_size=max(1, _check_int("n_samples", n_samples)), random_state=random_state,
        dtype=dtype,
    )
    data, weights_ = stream.get_block(0, stream.n_samples)
    return Dataset(data, stream.components, weights_)


# --------------------------------------------------------------------------------------------
# HDF5 files
# --------------------------------------------------------------------------------------------

HDF5_FORMAT = "streamnmf-dataset"
HDF5_FORMAT_VERSION = 1

# Target bytes of one HDF5 chunk (the unit HDF5 reads, compresses and caches) and of one block
# generated in memory while writing.
_CHUNK_BYTES = 1 << 20
_WRITE_BLOCK_BYTES = 1 << 24
_COMPRESSIONS = (None, "gzip", "lzf")


def _chunk_rows(n_rows, row_bytes):
    """Rows of a (rows, full width) HDF5 chunk of about 1 MiB (at least 1, at most n_rows)."""
    return int(max(1, min(n_rows, round(_CHUNK_BYTES / max(1, row_bytes)))))


def _check_compression(compression):
    if isinstance(compression, numbers.Integral) and not isinstance(compression, bool):
        if not 0 <= compression <= 9:
            raise ValueError(f"A gzip compression level must be in 0..9, got {compression}.")
        return "gzip", int(compression)
    if compression not in _COMPRESSIONS:
        raise ValueError(
            f"compression must be None, 'gzip', 'lzf' or a gzip level 0..9, got "
            f"{compression!r}."
        )
    return compression, None


def _resolve_stream(source, n_samples, n_components, n_features, noise, weight_params,
                    random_state, dtype):
    if isinstance(source, DatasetStream):
        given = {
            "n_samples": n_samples, "n_components": n_components, "n_features": n_features,
            "noise": noise, "weight_params": weight_params, "random_state": random_state,
            "dtype": dtype,
        }
        clash = sorted(key for key, value in given.items() if value is not None)
        if clash:
            raise ValueError(
                f"{clash} are fixed by the stream passed as source; leave them out, or pass "
                f"the data set's name instead of a stream."
            )
        return source
    if not isinstance(source, str):
        raise ValueError(
            f"source must be a data set name (one of {list(DATASET_NAMES)}) or a DatasetStream "
            f"(e.g. from iter_dataset or iter_purification_data), got "
            f"{type(source).__name__}."
        )
    return DatasetStream(
        source,
        5000 if n_samples is None else n_samples,
        100 if n_components is None else n_components,
        1000 if n_features is None else n_features,
        noise=noise, weight_params=weight_params, random_state=random_state,
        dtype=np.float64 if dtype is None else dtype,
    )


def _plain_params(params):
    """The JSON-representable part of a parameter dict (arrays summarised by their shape)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            if value.ndim == 1 and value.size <= 1000:
                out[key] = value.tolist()
            else:
                out[key] = f"<array of shape {value.shape}>"
        elif isinstance(value, (np.integer, np.floating)):
            out[key] = value.item()
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is atomic anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp, path, overwrite):
    """Move the finished ``tmp`` to ``path`` atomically; without ``overwrite``, never clobber."""
    if overwrite:
        os.replace(tmp, path)
        return
    # A hard link fails if ``path`` appeared meanwhile (another writer): no race between the
    # check at the start and the rename. Filesystems without hard links fall back to a check.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            f"{path!r} was created by someone else while the data were being written; it was "
            f"left untouched. Pass overwrite=True to replace it."
        ) from None
    except OSError:
        if os.path.exists(path):
            raise FileExistsError(
                f"{path!r} already exists; pass overwrite=True to replace it."
            ) from None
        os.replace(tmp, path)
        return
    os.remove(tmp)


def write_hdf5(path, source, n_samples=None, n_components=None, n_features=None, *,
               noise=None, weight_params=None, dataset="data", sparse=False, block_size=None,
               compression=None, with_weights=False, overwrite=False, random_state=None,
               dtype=None):
    """Write a generated data set to an HDF5 file, block by block.

    Memory stays bounded by one block of ``block_size`` rows (dense, plus its CSR form when
    ``sparse``), whatever ``n_samples``: a 1e7 x 1000 data set (80 GB) is written with about
    16 MiB of data in memory. The file is written atomically: into a temporary file in the
    target's directory, flushed, fsync'ed and renamed (``os.replace``), so the path holds either
    nothing (or its old content) or the complete file; the temporary file is removed on any
    error, including KeyboardInterrupt.

    Layout (``N = n_samples``, ``m = n_features``, ``n = n_components``):

    * dense (``sparse=False``): dataset ``<dataset>`` of shape (N, m), samples as rows, stored
      contiguous (compressed: chunked by whole rows with about 1 MiB per chunk).
    * CSR (``sparse=True``): group ``<dataset>`` holding ``data`` (nnz values), ``indices``
      (nnz column indices, int32 unless m needs int64) and ``indptr`` (N + 1, int64), with group
      attributes ``shape = (N, m)``, ``encoding-type = "csr_matrix"``,
      ``encoding-version = "0.1.0"`` (the anndata convention) and ``h5sparse_format = "csr"``,
      ``h5sparse_shape`` (h5sparse). Exact zeros are dropped; ``data`` and ``indices`` grow per
      block. Worth it when most entries are exactly 0, e.g. binary or (A2') weights with
      components that have exact zeros.
    * ``components``: (n, m), the ground truth ``A*.T``, float64 as generated.
    * ``weights``: (N, n), dense, only with ``with_weights=True`` (as big as N x n).
    * root attributes: ``format = "streamnmf-dataset"``, ``format_version``, ``name``,
      ``data_path`` (= ``dataset``), ``layout`` ("dense" or "csr"), ``n_samples``,
      ``n_features``, ``n_components``, ``noise``, ``weight_kind``, ``weight_params_json``,
      ``streamnmf_version``, ``dtype``; ``noise_kind`` for Purification streams;
      ``random_state`` when the seed was an int; ``seed_entropy`` (decimal string) whenever
      ``random_state=int(seed_entropy)`` regenerates the same data.

    Parameters
    ----------
    path : str or PathLike
        The file to create. Its directory must exist.
    source : str or DatasetStream
        A data set name of :func:`make_dataset` (then ``n_samples`` ... ``dtype`` are as there,
        with its defaults when None), or a stream from :func:`iter_dataset` or
        :func:`iter_purification_data` (then those parameters must be left None).
    n_samples, n_components, n_features : int or None
        As in :func:`make_dataset`; None means its default (5000, 100, 1000).
    noise : float or None, default=None
        As in :func:`make_dataset`.
    weight_params : dict or None, default=None
        As in :func:`make_dataset`.
    dataset : str, default="data"
        Name of the data's dataset (dense) or group (CSR); not "components" or "weights".
    sparse : bool, default=False
        Write CSR instead of a dense array.
    block_size : int or None, default=None
        Rows generated and written at a time; None: about 16 MiB of dense rows, a whole number
        of HDF5 chunks.
    compression : None, "gzip", "lzf" or int, default=None
        HDF5 compression filter of every dataset; an int is a gzip level 0..9.
    with_weights : bool, default=False
        Also store the true weights.
    overwrite : bool, default=False
        Replace an existing file. Without it an existing ``path`` raises FileExistsError.
    random_state : None, int, SeedSequence or numpy Generator, default=None
        As in :func:`make_dataset`.
    dtype : {np.float64, np.float32} or None, default=None
        Type of the stored data and weights; None: float64 (or the stream's dtype).

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        The directory of ``path`` does not exist.
    ValueError
        Bad parameters (see :func:`make_dataset`), or parameters given with a stream.

    Examples
    --------
    >>> write_hdf5("dir.h5", "dir", 10**6, random_state=0)              # doctest: +SKIP
    >>> stream = iter_purification_data(10**5, 20, 200, random_state=1)   # doctest: +SKIP
    >>> write_hdf5("pur.h5", stream, sparse=True, with_weights=True)     # doctest: +SKIP
    """
    import h5py

    from . import __version__

    path = os.fspath(path)
    stream = _resolve_stream(source, n_samples, n_components, n_features, noise,
                             weight_params, random_state, dtype)
    if not isinstance(dataset, str) or not dataset.strip("/") or dataset.strip("/") in (
            "components", "weights"):
        raise ValueError(
            f"dataset must be a non-empty name other than 'components' and 'weights' (those "
            f"hold the truth), got {dataset!r}."
        )
    dataset = dataset.strip("/")
    compression, compression_opts = _check_compression(compression)
    n, m, k = stream.n_samples, stream.n_features, stream.n_components
    itemsize = stream.dtype.itemsize
    rows_per_chunk = _chunk_rows(n, m * itemsize)
    if block_size is None:
        chunks_per_block = max(1, _WRITE_BLOCK_BYTES // (rows_per_chunk * m * itemsize))
        block_size = min(n, chunks_per_block * rows_per_chunk)
    block_size = _check_int("block_size", block_size)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; give the path of the file to create.")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; pass overwrite=True to replace it.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"The directory {directory!r} of {path!r} does not exist; create it first."
        )

    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    os.close(fd)
    try:
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would ignore the user's umask
        # A chunk cache that holds a few chunks, so that writes that straddle chunks do not
        # re-read them from disk.
        with h5py.File(tmp, "w", rdcc_nbytes=8 * _CHUNK_BYTES) as f:
            filters = {"compression": compression, "compression_opts": compression_opts}
            attrs = f.attrs
            attrs["format"] = HDF5_FORMAT
            attrs["format_version"] = HDF5_FORMAT_VERSION
            attrs["name"] = stream.name
            attrs["data_path"] = dataset
            attrs["layout"] = "csr" if sparse else "dense"
            attrs["n_samples"] = n
            attrs["n_features"] = m
            attrs["n_components"] = k
            attrs["noise"] = float(stream.noise)
            attrs["weight_kind"] = stream.weight_kind
            attrs["weight_params_json"] = json.dumps(_plain_params(stream.weight_params))
            attrs["streamnmf_version"] = __version__
            attrs["dtype"] = stream.dtype.name
            if getattr(stream, "noise_kind", None) is not None:
                attrs["noise_kind"] = stream.noise_kind
            if stream.random_state is not None:
                attrs["random_state"] = stream.random_state
            seed = stream._seed
            if not tuple(seed.spawn_key) and isinstance(seed.entropy, numbers.Integral):
                attrs["seed_entropy"] = str(int(seed.entropy))
            f.create_dataset("components", data=stream._components, **filters)

            weights_ds = None
            if with_weights:
                weights_ds = f.create_dataset(
                    "weights", shape=(n, k), dtype=stream.dtype,
                    chunks=(_chunk_rows(n, k * itemsize), k), **filters)
            if sparse:
                group = f.create_group(dataset)
                for key, value in (("shape", np.array([n, m], dtype=np.int64)),
                                   ("encoding-type", "csr_matrix"),
                                   ("encoding-version", "0.1.0"),
                                   ("h5sparse_format", "csr"),
                                   ("h5sparse_shape", np.array([n, m], dtype=np.int64))):
                    group.attrs[key] = value
                index_dtype = np.int32 if m <= np.iinfo(np.int32).max else np.int64
                values_ds = group.create_dataset(
                    "data", shape=(0,), maxshape=(None,), dtype=stream.dtype,
                    chunks=(max(1, _CHUNK_BYTES // itemsize),), **filters)
                indices_ds = group.create_dataset(
                    "indices", shape=(0,), maxshape=(None,), dtype=index_dtype,
                    chunks=(max(1, _CHUNK_BYTES // np.dtype(index_dtype).itemsize),),
                    **filters)
                indptr_ds = group.create_dataset(
                    "indptr", shape=(n + 1,), dtype=np.int64,
                    chunks=(min(n + 1, _CHUNK_BYTES // 8),), **filters)
                indptr_ds[0] = 0
                nnz = 0
            else:
                # uncompressed: one contiguous extent, so every block a reader takes is one
                # piece of the file (HDF5Source maps it instead of copying it)
                data_ds = f.create_dataset(
                    dataset, shape=(n, m), dtype=stream.dtype,
                    chunks=(rows_per_chunk, m) if compression else None, **filters)

            for start in range(0, n, block_size):
                stop = min(start + block_size, n)
                block, weights = stream.get_block(start, stop)
                if weights_ds is not None:
                    weights_ds[start:stop] = weights
                del weights
                if sparse:
                    # Flat positions of the non-zeros, row-major: one index array, not two.
                    flat = np.flatnonzero(block)
                    counts = np.count_nonzero(block, axis=1)
                    values = block.ravel()[flat]
                    cols = flat % m
                    del flat
                    grown = nnz + values.size
                    values_ds.resize((grown,))
                    indices_ds.resize((grown,))
                    values_ds[nnz:grown] = values
                    indices_ds[nnz:grown] = cols.astype(index_dtype, copy=False)
                    indptr_ds[start + 1:stop + 1] = nnz + np.cumsum(counts, dtype=np.int64)
                    nnz = grown
                else:
                    data_ds[start:stop] = block
                del block
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        _publish(tmp, path, overwrite)
        _fsync_directory(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _open_dataset_file(path):
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path!r}.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path!r} cannot be read as HDF5 ({exc}).") from exc
    if "components" not in f:
        f.close()
        raise ValueError(
            f"{path!r} has no 'components' dataset; it was not written by "
            f"streamnmf.datasets.write_hdf5 (root attribute format={HDF5_FORMAT!r})."
        )
    return f


def load_hdf5_truth(path):
    """The ground-truth components stored by :func:`write_hdf5`.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`write_hdf5`.

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
        The truth as rows (``A*.T``), float64.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not HDF5, or no ``components`` dataset in it.
    """
    with _open_dataset_file(path) as f:
        components = f["components"][()]
    if components.ndim != 2:
        raise ValueError(
            f"'components' in {os.fspath(path)!r} has shape {components.shape}; expected "
            f"(n_components, n_features)."
        )
    return components


def load_hdf5(path):
    """Read a whole file written by :func:`write_hdf5` into memory (for small data sets).

    Large files should be read block by block instead (for example with h5py slicing of the
    dense dataset, or of ``indptr`` and then ``data``/``indices`` for CSR).

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`write_hdf5`.

    Returns
    -------
    dataset : Dataset
        ``data``: ndarray of shape (n_samples, n_features), or a ``scipy.sparse.csr_matrix`` for
        the CSR layout; ``components``: ndarray of shape (n_components, n_features);
        ``weights``: ndarray of shape (n_samples, n_components), or None when not stored.
    attrs : dict
        The root attributes (``weight_params_json`` decoded into ``weight_params``).
    """
    import scipy.sparse as sp

    with _open_dataset_file(path) as f:
        attrs = {key: (value.item() if isinstance(value, np.generic) else value)
                 for key, value in f.attrs.items()}
        if "weight_params_json" in attrs:
            attrs["weight_params"] = json.loads(attrs.pop("weight_params_json"))
        name = attrs.get("data_path", "data")
        if name not in f:
            raise ValueError(f"{os.fspath(path)!r} has no data at {name!r}.")
        node = f[name]
        if attrs.get("layout") == "csr" or not hasattr(node, "shape"):
            shape = tuple(int(v) for v in node.attrs["shape"])
            data = sp.csr_matrix(
                (node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape)
        else:
            data = node[()]
        components = f["components"][()]
        weights = f["weights"][()] if "weights" in f else None
    return Dataset(data, components, weights), attrs
