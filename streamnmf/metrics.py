"""Recovery error of learned components against the ground truth (the AND paper's measure).

The AND paper (Li and Liang, ICML 2017, section 7, "Evaluation criterion") scores a
learned feature matrix ``A`` (m x D) against the truth ``A*`` (m x n) column by column:

    eps_i(A, A*) = min_{j, s} || A*_i - s A_j ||^2,     total = sum_i eps_i,

with every column first scaled to unit l2 norm. Here, as everywhere in the library, components
are ROWS: ``components`` is ``A.T`` of shape (n_components, n_features) and ``true_components``
is ``A*.T``; the paper's m is ``n_features``, its D (or n) is ``n_components``.

For unit vectors ``min_s ||t - s c||^2 = 1 - cos^2(t, c)``. That closed form is useless near
exact recovery: ``cos^2`` rounds to 1 once the error drops below float64's epsilon (2.2e-16),
while the paper's figures follow the error down to ``exp(-40)`` = 4e-18 and beyond. This module
therefore picks the best learned row by ``|cos|`` but reports the RESIDUAL
``||t - s c||^2`` with the least-squares scale ``s = (t . c) / (c . c)``, which stays accurate
down to about 1e-32 per row.

The best-row error lets several true rows be covered by the same learned row, so a learned set
with duplicates and junk rows can still look good; :func:`matched_correlation_error` also
reports a one-to-one (Hungarian) assignment so that it cannot.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

__all__ = [
    "per_component_error",
    "total_correlation_error",
    "log_total_correlation_error",
    "matched_correlation_error",
    "match_components",
]

_MATCHINGS = ("best", "one-to-one")


def _check_components(array, name):
    """A finite float64 2-D copy of ``array``; errors say what was expected and how to fix it."""
    if sp.issparse(array):
        # Components are n_components x n_features: small enough to densify, and the Gram
        # matrix and residuals below are dense anyway.
        array = array.toarray()
    try:
        array = np.asarray(array)
    except Exception as exc:  # ragged lists and other non-array input
        raise ValueError(
            f"{name} must be an array of shape (n_components, n_features); it could not be "
            f"converted to a numpy array ({exc})."
        ) from None
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must hold real numbers, got dtype {array.dtype}. Convert it with "
            f"np.asarray({name}, dtype=float)."
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_components, n_features), got "
            f"{array.ndim}-D shape {array.shape}. Pass a single component as "
            f"{name}.reshape(1, -1)."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one component and one feature, got shape "
            f"{array.shape}."
        )
    # Compute in float64 whatever came in: float32 round-off (6e-8) would swamp the errors
    # this module exists to resolve.
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or infinity; the error is only defined for finite "
            f"components. Check the solver's output (e.g. with np.isfinite)."
        )
    return array


def _unit_rows(array):
    """Rows scaled to unit l2 norm (zero rows stay zero) and a mask of the zero rows."""
    # Scale by the largest entry first so that squaring cannot overflow (1e200) or underflow
    # (1e-200); the result is then normalised exactly as for moderate inputs.
    peak = np.max(np.abs(array), axis=1, keepdims=True)
    zero = peak[:, 0] == 0
    peak[zero] = 1.0
    scaled = array / peak
    norms = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))[:, None]
    norms[zero] = 1.0
    return scaled / norms, zero


def _prepare(components, true_components):
    learned = _check_components(components, "components")
    truth = _check_components(true_components, "true_components")
    if learned.shape[1] != truth.shape[1]:
        raise ValueError(
            f"components has {learned.shape[1]} features (columns) but true_components has "
            f"{truth.shape[1]}; both must be (n_components, n_features) with the same "
            f"n_features. A matrix in the paper's layout (n_features, n_components) must be "
            f"transposed with .T first."
        )
    truth, zero_truth = _unit_rows(truth)
    if np.any(zero_truth):
        bad = np.flatnonzero(zero_truth)
        raise ValueError(
            f"true_components has all-zero rows {bad[:10].tolist()}"
            f"{' ...' if bad.size > 10 else ''}; a zero ground-truth component has no "
            f"direction to recover. Drop those rows before scoring."
        )
    learned, _ = _unit_rows(learned)
    # cos(t_i, c_j) for unit rows; a zero learned row has cosine 0 with everything.
    gram = truth @ learned.T
    return learned, truth, gram


def _residual_errors(truth_rows, learned_rows):
    """``min_s ||t - s c||^2 / ||t||^2`` row by row (rows paired), in the accurate form.

    The scale is the least-squares one, ``s = (t . c) / (c . c)``, so the result does not rely
    on ``c`` being exactly unit (normalisation leaves an ulp) and is exactly 1 for ``c = 0``.
    """
    cc = np.einsum("ij,ij->i", learned_rows, learned_rows)
    tc = np.einsum("ij,ij->i", truth_rows, learned_rows)
    tt = np.einsum("ij,ij->i", truth_rows, truth_rows)
    scale = np.divide(tc, cc, out=np.zeros_like(tc), where=cc > 0)
    residual = truth_rows - scale[:, None] * learned_rows
    errors = np.einsum("ij,ij->i", residual, residual) / tt
    # Round-off can push a worthless match a hair above 1; the error of the best scale s = 0
    # is exactly 1, so clip there.
    return np.minimum(errors, 1.0)


def per_component_error(components, true_components, *, matching="best"):
    """Correlation error of every true component: the AND paper's ``eps_i(A, A*)``.

    For true row ``t_i`` and learned rows ``c_j``, all scaled to unit l2 norm::

        error_i = min_j min_s ||t_i - s c_j||^2 = 1 - max_j cos^2(t_i, c_j)

    The sign and scale of a learned row do not matter, nor does the order of the learned rows.
    The learned row is chosen by the largest ``|cos|`` (a Gram matrix); among learned rows whose
    ``|cos|`` ties with the largest to within round-off, the one with the smallest residual is
    kept. The error is reported in the residual form ``||t_i - s c_j||^2`` with the
    least-squares ``s``, not as ``1 - cos^2``, which rounds to 0 for any error below about
    1e-16; the residual form resolves errors down to about 1e-32.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        The learned components as rows (the paper's ``A`` transposed, ``A.T``: D x m). Any real
        dtype; computed in float64. Scipy sparse input is densified. A zero row matches
        nothing (its cosine with every true row is 0).
    true_components : array-like of shape (n_true_components, n_features)
        The ground truth as rows (``A*.T``: n x m). ``n_true_components`` may differ from
        ``n_components``. Zero rows are rejected.
    matching : {"best", "one-to-one"}, default="best"
        ``"best"``: each true row takes its best learned row, as in the paper; several true rows
        may share one. ``"one-to-one"``: a Hungarian assignment maximising the summed
        ``cos^2`` (see :func:`match_components`); a true row left without a learned row (when
        there are fewer learned rows than true ones) gets error 1 and index -1.

    Returns
    -------
    errors : ndarray of shape (n_true_components,)
        ``error_i`` in [0, 1] for every true row.
    best_index : ndarray of int of shape (n_true_components,)
        The learned row each true row was matched to (-1 for an unmatched row under
        ``matching="one-to-one"``).

    Raises
    ------
    ValueError
        If an input is not 2-D, is empty or non-finite, the two n_features differ, a true row
        is zero, or ``matching`` is unknown.
    """
    if matching not in _MATCHINGS:
        raise ValueError(f"matching must be one of {_MATCHINGS}, got {matching!r}.")
    learned, truth, gram = _prepare(components, true_components)
    if matching == "one-to-one":
        return _matched_errors(learned, truth, gram)

    abs_gram = np.abs(gram)
    best_index = np.argmax(abs_gram, axis=1)
    errors = _residual_errors(truth, learned[best_index])

    # |cos| has an absolute round-off of a few ulps times sqrt(n_features), so learned rows
    # that are all within ~1e-16 of a true row tie on |cos|; then argmax picks one at random
    # and its residual need not be the smallest. Recompute the residual for every tied
    # candidate. Ties are rare (duplicated or collapsed learned rows), so this loop is short.
    tolerance = 64 * np.finfo(np.float64).eps * np.sqrt(truth.shape[1])
    near_best = abs_gram >= abs_gram.max(axis=1, keepdims=True) - tolerance
    for i in np.flatnonzero(near_best.sum(axis=1) > 1):
        candidates = np.flatnonzero(near_best[i])
        candidate_errors = _residual_errors(
            np.broadcast_to(truth[i], (candidates.size, truth.shape[1])), learned[candidates]
        )
        k = np.argmin(candidate_errors)
        errors[i] = candidate_errors[k]
        best_index[i] = candidates[k]
    return errors, best_index


def total_correlation_error(components, true_components):
    """The AND paper's total correlation error ``eps(A, A*) = sum_i eps_i(A, A*)``.

    The sum of :func:`per_component_error` over the true rows, in ``[0, n_true_components]``.
    Several true rows may be covered by the same learned row; see
    :func:`matched_correlation_error` for the one-to-one version.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        The learned components as rows (``A.T``).
    true_components : array-like of shape (n_true_components, n_features)
        The ground truth as rows (``A*.T``).

    Returns
    -------
    error : float
        The total correlation error; about 1e-30 for recovery to float64 round-off.
    """
    errors, _ = per_component_error(components, true_components)
    return float(np.sum(errors))


def log_total_correlation_error(components, true_components):
    """Natural log of :func:`total_correlation_error`, the quantity the AND figures plot.

    The paper's figures show ``log(error)`` against running time; AND reaches about -40 on its
    data. Because the error is computed in residual form, values below -37 (where
    ``1 - cos^2`` would already be 0) are resolved, down to about -69 per component.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        The learned components as rows (``A.T``).
    true_components : array-like of shape (n_true_components, n_features)
        The ground truth as rows (``A*.T``).

    Returns
    -------
    log_error : float
        ``log(total_correlation_error)``; ``-inf`` when the error is exactly 0 (for example
        when the learned rows are the true rows themselves).
    """
    error = total_correlation_error(components, true_components)
    # An exact 0 is a legitimate result (identical rows); say -inf without a numpy warning.
    return float(np.log(error)) if error > 0 else float("-inf")


def _assignment(gram):
    # Maximise sum cos^2 (equivalently minimise sum (1 - cos^2)): the sign of a learned row is
    # arbitrary, so cos and -cos must score the same. Rectangular costs are fine: the smaller
    # side is matched completely.
    return linear_sum_assignment(gram**2, maximize=True)


def _matched_errors(learned, truth, gram):
    true_index, learned_index = _assignment(gram)
    # Unmatched true rows (fewer learned rows than true ones) count as error 1: nothing in the
    # learned set was spent on them.
    errors = np.ones(truth.shape[0])
    index = np.full(truth.shape[0], -1, dtype=np.intp)
    errors[true_index] = _residual_errors(truth[true_index], learned[learned_index])
    index[true_index] = learned_index
    return errors, index


def match_components(components, true_components):
    """One-to-one assignment of learned rows to true rows (Hungarian algorithm).

    Solves ``max sum_i cos^2(t_i, c_{pi(i)})`` over injective maps ``pi`` with
    :func:`scipy.optimize.linear_sum_assignment`, i.e. minimises ``sum_i (1 - cos^2)``.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        The learned components as rows (``A.T``).
    true_components : array-like of shape (n_true_components, n_features)
        The ground truth as rows (``A*.T``).

    Returns
    -------
    true_index : ndarray of int of shape (n_matched,)
        Indices of the matched true rows, increasing; ``n_matched`` is
        ``min(n_components, n_true_components)``.
    learned_index : ndarray of int of shape (n_matched,)
        ``learned_index[k]`` is the learned row assigned to true row ``true_index[k]``; so
        ``components[learned_index]`` lines up with ``true_components[true_index]``.
    """
    _, _, gram = _prepare(components, true_components)
    return _assignment(gram)


def matched_correlation_error(components, true_components):
    """Total correlation error under a one-to-one matching of learned to true rows.

    Like :func:`total_correlation_error`, but every learned row may cover at most one true row
    (the assignment of :func:`match_components`); each true row left unmatched, when there are
    fewer learned rows than true ones, counts 1. It is never below the total correlation error
    and it exposes a learned set that covers several true rows with one row and wastes the
    others (duplicates, junk rows). When ALL learned rows are equal both measures agree.
    Per-row values: ``per_component_error(..., matching="one-to-one")``.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        The learned components as rows (``A.T``).
    true_components : array-like of shape (n_true_components, n_features)
        The ground truth as rows (``A*.T``).

    Returns
    -------
    error : float
        In ``[0, n_true_components]``.
    """
    errors, _ = per_component_error(components, true_components, matching="one-to-one")
    return float(np.sum(errors))
