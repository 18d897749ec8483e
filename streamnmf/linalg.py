"""Dense linear algebra of the stage ends: left inverses of the components, non-negative
least squares on a stage's statistics."""

import numpy as np

from ._lp import InverseError, min_inf_inverse_rows

__all__ = ["min_inf_inverse", "nonnegative_least_squares", "InverseError"]


def min_inf_inverse(components):
    """The left inverse of the components with the smallest infinity norm (Purification's).

    ``B`` with ``B @ components.T = I`` minimising the largest l1 norm of a row of ``B``; the
    problem separates into one basis-pursuit linear programme per row (HiGHS), each polished
    on its support so that ``B @ components.T = I`` holds to round-off.

    Parameters
    ----------
    components : array-like of shape (n_components, n_features)
        Full row rank (``n_components <= n_features``).

    Returns
    -------
    B : ndarray of shape (n_components, n_features), float64

    Raises
    ------
    streamnmf.linalg.InverseError
        No left inverse exists (dependent or zero components, more components than features,
        non-finite entries), or a programme failed.
    """
    return np.ascontiguousarray(min_inf_inverse_rows(components).T)


def nonnegative_least_squares(S_zz, S_zy, start, max_sweeps=100, tol=1e-10):
    """``argmin_{C >= 0} ||Y - Z C||_F^2`` from the statistics ``S_zz = Z^T Z``, ``S_zy = Z^T Y``.

    Block coordinate descent over the rows of ``C`` (HALS, as online NMF solves its
    dictionary step): row ``i`` gets its exact minimiser given the others,
    ``c_i = max(0, c_i + (S_zy[i] - S_zz[i] C) / S_zz[i, i])``. Each sweep costs one
    ``(k x k) @ (k x m)`` product's worth of work, like the unconstrained solve; warm-started
    from a good matrix (the unconstrained solution clipped at zero, or the previous stage's),
    a few sweeps suffice. A row whose code was never non-zero (``S_zz[i, i] = 0``) keeps its
    start.

    Parameters
    ----------
    S_zz : ndarray of shape (n_components, n_components)
    S_zy : ndarray of shape (n_components, n_features)
    start : ndarray of shape (n_components, n_features)
        Non-negative start; not modified.
    max_sweeps : int, default=100
    tol : float, default=1e-10
        Stop when a sweep moves no entry by more than ``tol`` times the largest entry.

    Returns
    -------
    C : ndarray of shape (n_components, n_features), float64, non-negative
    sweeps : int
        Sweeps run.
    """
    from ._kernels import hals_rows  # numba: compiled on first use

    C = np.maximum(np.asarray(start, dtype=np.float64), 0.0)
    sweeps = hals_rows(np.ascontiguousarray(S_zz, dtype=np.float64),
                       np.ascontiguousarray(S_zy, dtype=np.float64), C, int(max_sweeps),
                       float(tol))
    return C, sweeps
