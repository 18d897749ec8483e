"""The Purification paper's model (Li, Liang and Risteski, NeurIPS 2016, section 3)."""

import numpy as np

from ._random import (
    CHUNK_SIZE, _KEY_COMPONENTS, _KEY_NOISE, _KEY_PRIOR, _KEY_WEIGHTS, _check_dtype,
    _check_int, _check_real, _child_rng, _int_seed, _seed_sequence,
)
from .streams import Dataset, DatasetStream
from .topics import make_topic_components


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
