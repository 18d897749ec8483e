"""Plain NumPy twins of the Numba kernels and of the papers' algorithms, written for clarity.

Every kernel in ``streamnmf._kernels`` is compared against one of these in ``test_kernels.py``.
Shapes follow the library: samples and components are rows.
"""

import numpy as np
import scipy.sparse as sp


def dense(Y):
    return Y.toarray() if sp.issparse(Y) else np.asarray(Y)


def threshold(V, alpha, kind):
    """``phi_alpha`` row-wise: kind 0 hard (AND), kind 1 shifted ReLU (Purification)."""
    V = np.asarray(V)
    if kind == 0:
        return np.where(V >= alpha, V, 0).astype(V.dtype)
    return np.maximum(V - alpha, 0).astype(V.dtype)


def decode(Y, D, alpha, kind):
    """``Z = phi_alpha(Y @ D)``."""
    return threshold(dense(Y) @ D, alpha, kind)


def support(Z):
    """CSR pattern (indptr, indices) of the non-zeros of every row."""
    indptr = np.concatenate([[0], np.cumsum((Z != 0).sum(axis=1))])
    indices = np.concatenate([np.flatnonzero(row) for row in Z] or [np.zeros(0, int)])
    return indptr, indices


def sgd_updates(Y, Z, C, eta, batch_size=1, nonnegative=False):
    """AND's Algorithm 1 sample by sample: ``A <- A + eta (y - A z) z^T`` (rows: C += eta z r^T).

    With ``batch_size > 1`` the terms of consecutive samples, computed with the matrix at the
    batch start, are averaged; a final partial batch is applied. ``nonnegative``: every update
    is followed by ``max(C, 0)`` (for a non-negative ``C``, the projection of the rows written).
    Returns (C, sum of ||r||^2).
    """
    project = (lambda M: np.maximum(M, 0)) if nonnegative else (lambda M: M)
    Y = dense(Y)
    C = C.copy()
    pending = np.zeros_like(C, dtype=np.float64)
    count = 0
    total = 0.0
    for y, z in zip(Y, Z):
        r = y - z @ C
        total += float(r @ r)
        pending += np.outer(z, r)
        count += 1
        if count == batch_size:
            C = project(C + (eta / count * pending).astype(C.dtype))
            pending[:] = 0
            count = 0
    if count:
        C = project(C + (eta / count * pending).astype(C.dtype))
    return C, total


def stats(Y, Z):
    """(Z^T Y, Z^T Z, Z.sum(0)) in float64."""
    Y = dense(Y).astype(np.float64)
    Z = Z.astype(np.float64)
    return Z.T @ Y, Z.T @ Z, Z.sum(axis=0)


def and_algorithm1(Y, C0, alphas, stage_length, eta):
    """The AND paper's Algorithm 1 transcribed literally (paper's column layout inside).

    For each stage j: P = pinv(A^(0)); for each sample: z = phi_alpha_j(P y);
    A <- A + eta (y - A z) z^T. Returns the components as rows.
    """
    A = C0.T.astype(np.float64).copy()
    Y = dense(Y)
    t = 0
    for alpha in alphas:
        P = np.linalg.pinv(A)
        for _ in range(stage_length):
            y = Y[t % Y.shape[0]]
            t += 1
            v = P @ y
            z = np.where(v >= alpha, v, 0)
            A = A + eta * np.outer(y - A @ z, z)
    return A.T


def and_full_batch(Y, C0, alphas, n_inner, eta_paper):
    """The paper's experiments (public reference code): per stage, Z = phi(pinv(A) Y) once, then
    ``A <- A + eta_p (Y Z^T - A Z Z^T)`` n_inner times, on sums (columns layout inside)."""
    A = C0.T.astype(np.float64).copy()
    Ycols = dense(Y).T
    for alpha in alphas:
        Z = np.linalg.pinv(A) @ Ycols
        Z = np.where(Z >= alpha, Z, 0)
        for _ in range(n_inner):
            A = A + eta_paper * (Ycols @ Z.T - A @ Z @ Z.T)
    return A.T


# -- Purification (Li, Liang and Risteski, NIPS 2016), paper's column layout ------------------

def min_inf_left_inverse(A):
    """``B`` (n x m) with ``B A = I`` and minimum ``||B||_inf``, through the DUAL programmes.

    Row i: ``min ||b||_1 s.t. A^T b = e_i`` has the dual ``max u_i s.t. ||A u||_inf <= 1``
    (the library solves the primal). The primal row is read off the dual's multipliers.
    Returns (B, values) with ``values[i]`` the optimal ``||b_i||_1``.
    """
    from scipy.optimize import linprog

    m, n = A.shape
    B = np.empty((n, m))
    values = np.empty(n)
    G = np.vstack([A, -A])  # A u <= 1 and -A u <= 1
    for i in range(n):
        c = np.zeros(n)
        c[i] = -1.0
        res = linprog(c, A_ub=G, b_ub=np.ones(2 * m), bounds=(None, None), method="highs")
        assert res.status == 0, res.message
        lam = -res.ineqlin.marginals  # >= 0, one per inequality
        B[i] = lam[:m] - lam[m:]
        values[i] = -res.fun
    return B, values


def pair_average(Y, X):
    """``E_hat[(y - y')(x - x')^T]`` over all N^2 ordered pairs of rows, literally (m x n)."""
    Y = dense(Y).astype(np.float64)
    X = np.asarray(X, dtype=np.float64)
    N = Y.shape[0]
    total = np.zeros((Y.shape[1], X.shape[1]))
    for j in range(N):
        for k in range(N):
            total += np.outer(Y[j] - Y[k], X[j] - X[k])
    return total / N**2


def purification_algorithm1(batches, A0, alpha, eta, r=None, inverse="min-inf"):
    """The Purification paper's Algorithm 1 transcribed literally (columns layout inside).

    For each batch: B = min-inf left inverse of A (or pinv); x = max(B y - alpha, 0);
    M = E_hat over all ordered pairs of (y - y')(x - x')^T; A <- (1 - eta) A + r eta M, with
    ``r=None`` meaning the library's default, per column ``r_i = 1 / (B M)_ii``. Returns
    the components as rows.
    """
    A = np.asarray(A0, dtype=np.float64).copy()
    for Yb in batches:
        Yb = dense(Yb).astype(np.float64)
        B = min_inf_left_inverse(A)[0] if inverse == "min-inf" else np.linalg.pinv(A)
        X = np.maximum(Yb @ B.T - alpha, 0)
        M = pair_average(Yb, X)
        if r is None:
            scale = 1.0 / np.diag(B @ M)
        else:
            scale = np.full(A.shape[1], float(r))
        A = (1 - eta) * A + eta * M * scale[None, :]
    return A.T


def nnls_rows(Y, C):
    """Non-negative least-squares codes of every row of Y on the rows of C (SciPy's NNLS)."""
    import scipy.optimize

    Y = dense(Y).astype(np.float64)
    return np.array([scipy.optimize.nnls(C.T.astype(np.float64), y)[0] for y in Y]).reshape(
        Y.shape[0], C.shape[0])


def nonnegative_least_squares(S_zz, S_zy):
    """``argmin_{C >= 0} tr(C^T S_zz C) - 2 tr(C^T S_zy)`` column by column with SciPy's NNLS
    (through the Cholesky factor: ``||L^T c - L^-1 s||^2`` has the same minimiser)."""
    import scipy.optimize

    L = np.linalg.cholesky(S_zz)
    rhs = np.linalg.solve(L, S_zy)
    return np.column_stack([scipy.optimize.nnls(L.T, rhs[:, j])[0]
                            for j in range(S_zy.shape[1])])


def hals_sweep(S_zz, S_zy, C):
    """One sweep of row-wise exact minimisation of ``tr(C^T S_zz C) - 2 tr(C^T S_zy)`` on
    ``C >= 0`` (rows with ``S_zz[i, i] = 0`` kept)."""
    C = C.astype(np.float64).copy()
    for i in range(C.shape[0]):
        if S_zz[i, i] > 0:
            C[i] = np.maximum(C[i] + (S_zy[i] - S_zz[i] @ C) / S_zz[i, i], 0)
    return C
