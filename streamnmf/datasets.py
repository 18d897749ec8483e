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

Randomness. ``random_state`` seeds one :class:`numpy.random.SeedSequence`; the components, the
CTM prior, the weights and the noise each come from their own child sequence, and the samples
are generated in fixed chunks of ``CHUNK_SIZE`` rows, each chunk from its own child. So the
data for a seed do not depend on how they are read: any block size, any order, any subset of
rows (:meth:`DatasetStream.get_block`) give the same numbers, and a smaller ``n_samples`` gives
a prefix of a larger one. Changing ``noise`` rescales the same noise draw.
"""

import numbers
from collections import namedtuple

import numpy as np

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
        self.components = self._components.astype(self.dtype, copy=False)
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
        self._cache = (index, data, weights)
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
