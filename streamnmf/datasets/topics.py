"""Topic matrices and weight distributions of the AND paper's data sets."""

import numpy as np

from ._random import (
    WEIGHT_KINDS, _WEIGHT_PARAMS, _check_int, _check_random_state, _check_real, _softmax,
)


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
