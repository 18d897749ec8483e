"""Validation and randomness shared by the data-set generators (one SeedSequence per
data set, one child per role and per chunk of rows)."""

import numbers

import numpy as np


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
