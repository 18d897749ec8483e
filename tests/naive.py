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


def sgd_updates(Y, Z, C, eta, batch_size=1):
    """AND's Algorithm 1 sample by sample: ``A <- A + eta (y - A z) z^T`` (rows: C += eta z r^T).

    With ``batch_size > 1`` the terms of consecutive samples, computed with the matrix at the
    batch start, are averaged; a final partial batch is applied. Returns (C, sum of ||r||^2).
    """
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
            C += (eta / count * pending).astype(C.dtype)
            pending[:] = 0
            count = 0
    if count:
        C += (eta / count * pending).astype(C.dtype)
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
