"""Data-driven starts over the leading rows: the successive projection algorithm (SPA) and
the non-negative double SVD (NNDSVDa)."""

import numbers

import numpy as np
import scipy.sparse as sp

from ._engine import single_threaded_blas

__all__ = ["check_random_state", "nndsvda_init", "spa_init"]


def check_random_state(random_state):
    """A ``np.random.Generator`` from None, an int, or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    raise ValueError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}."
    )


def spa_init(Y, n_components, rng):
    """Start rows from "pure" samples by the successive projection algorithm (SPA).

    The AND paper suggests initialising with data points that contain one major feature. SPA
    picks them greedily: the sample with the largest norm (after scaling every sample to unit
    l1 norm when the data are non-negative; signed rows are taken as they are), then the one
    with the largest norm after projecting out the picked ones, and so on; under
    separability these are the purest samples. The greedy picks run on the scaled rows'
    coordinates in their leading ``n_components``-dimensional right singular subspace
    (:func:`leading_subspace_coordinates`, randomized) and the start rows are the picked
    rows of ``Y`` as they are: on exact low-rank data (the papers' models) the projection is
    lossless and the picks are those of the raw rows; on real data it drops the noise
    outside that subspace, in which short documents and outlying images would otherwise
    have the largest norms (on text, 10-30% fewer stages to the stopping rule). The cost is
    O(n_components * nnz) for the projection (6 products with the rows) and
    O(n_components^2 * n_samples) for the picks. Rows SPA cannot fill (fewer samples or a
    smaller rank than ``n_components``) are random convex combinations of samples.

    Parameters
    ----------
    Y : {ndarray, csr_matrix} of shape (n_samples, n_features)
    n_components : int
    rng : numpy Generator

    Returns
    -------
    C0 : ndarray of shape (n_components, n_features), float64
    """
    sparse = sp.issparse(Y)
    Y = sp.csr_matrix(Y, dtype=np.float64) if sparse else np.asarray(Y, dtype=np.float64)
    l1 = np.asarray(abs(Y).sum(axis=1)).ravel()
    values = Y.data if sparse else Y
    if values.size and values.min() < 0:
        # Signed data: l1 scaling is the simplex geometry of non-negative data only. Signed
        # parts cancel in a mixture, so a mixture's l2 / l1 ratio exceeds a pure sample's and
        # the scaled rows would favour mixtures; SPA on the raw rows assumes weights that sum
        # to at most one, as the papers' signed model does
        scale = (l1 > 0).astype(np.float64)
    else:
        scale = np.divide(1.0, l1, out=np.zeros_like(l1), where=l1 > 0)
    R = sp.diags(scale) @ Y if sparse else Y * scale[:, None]
    if n_components < min(R.shape):
        R = leading_subspace_coordinates(R, n_components, rng)
    # matrix-vector products, one a pick: a second BLAS thread gains little there and on a
    # busy machine its spinning made the start 4x slower (0.8 s against 0.18 s, 2000 x 1000)
    with single_threaded_blas():
        picked = _spa_picks(R, n_components)
    return _start_rows(Y, l1, picked, n_components, rng)


def leading_subspace_coordinates(R, rank, rng, n_oversamples=10, n_power_iter=2):
    """The rows of R in the basis of R's leading right singular subspace, randomized.

    ``R @ V.T`` for the top ``rank`` right singular vectors ``V`` (Halko, Martinsson & Tropp
    2011, a range finder with power iterations), without forming V: with ``B = Q.T @ R`` and
    ``B @ B.T = U diag(s**2) U.T`` the coordinates are ``Q @ U * s``. Row norms and inner
    products in the subspace are those of the projected rows, so SPA on them picks the rows
    purest after the noise outside the leading subspace is dropped; on exact rank-``rank``
    data the projection is lossless and the picks are those of the raw rows.

    Parameters
    ----------
    R : {ndarray, csr_matrix} of shape (n_samples, n_features)
    rank : int
        Below ``min(n_samples, n_features)``.
    rng : numpy Generator
    n_oversamples, n_power_iter : int

    Returns
    -------
    coordinates : ndarray of shape (n_samples, rank), float64
    """
    width = min(rank + n_oversamples, min(R.shape))
    Q = R @ rng.standard_normal((R.shape[1], width))
    for _ in range(n_power_iter):
        # subspace iteration on R R^T, re-orthonormalised every step (the powers would
        # otherwise bury all but the top direction in round-off); only the (n_samples, width)
        # side is orthonormalised: the (n_features, width) one too would double the start's
        # peak memory on wide vocabularies
        Q = np.asarray(R @ np.asarray(R.T @ _orthonormal_columns(Q, passes=1)))
    Q = _orthonormal_columns(Q)
    W = np.asarray(R.T @ Q)  # B.T, (n_features, width)
    eigenvalues, U = np.linalg.eigh(W.T @ W)
    top = np.argsort(eigenvalues)[::-1][:rank]
    coordinates = np.zeros((R.shape[0], rank))
    coordinates[:, :len(top)] = (Q @ U[:, top]) * np.sqrt(np.maximum(eigenvalues[top], 0.0))
    return coordinates


def _orthonormal_columns(X, passes=2):
    """An orthonormal basis of the numerical range of X's columns, by the Gram matrix.

    SVQB (Stathopoulos & Wu 2002): from ``X^T X = V diag(lam) V^T``, ``X V lam^-1/2``
    over the eigenvalues above round-off. Two GEMMs of X's size a pass, where a
    Householder QR, which forms Q explicitly, costs about 5x a pass (16 384 x 110, one
    thread: 0.11 s against 0.02 s); null directions (rows of exactly low rank) are dropped
    instead of breaking a Cholesky factorization.

    Parameters
    ----------
    X : ndarray of shape (n_rows, width)
    passes : int, default=2
        The second pass makes the columns orthogonal to round-off; a power iteration's
        intermediate basis needs only the first.

    Returns
    -------
    Q : ndarray of shape (n_rows, rank_of_X)
        Orthonormal columns spanning X's numerical range (no columns if X is zero).
    """
    for _ in range(passes):
        eigenvalues, V = np.linalg.eigh(X.T @ X)
        keep = eigenvalues > 1e-12 * max(eigenvalues.max(initial=0.0), 0.0)
        if not keep.any():
            return X[:, :0]
        X = X @ (V[:, keep] / np.sqrt(eigenvalues[keep]))
    return X


def _spa_picks(R, n_components):
    sparse = sp.issparse(R)
    n_samples, n_features = R.shape
    norms = np.asarray(R.multiply(R).sum(axis=1)).ravel() if sparse else np.einsum(
        "ij,ij->i", R, R)
    projected = np.zeros(n_samples)  # squared norm of every row's part in the picked span
    # the orthonormal basis grows in place: stacking copied it once per pick (quadratic)
    basis_rows = np.zeros((n_components, n_features))
    basis = basis_rows[:0]
    picked = []
    top = norms.max() if n_samples else 0.0
    while len(picked) < n_components:
        residual = norms - projected
        residual[picked] = -np.inf
        j = int(np.argmax(residual)) if n_samples else 0
        if not n_samples or residual[j] <= 1e-12 * top:
            break
        v = (R[j].toarray().ravel() if sparse else R[j].copy())
        for _ in range(2):  # Gram-Schmidt twice: orthogonal to round-off
            v -= basis.T @ (basis @ v)
        length = np.linalg.norm(v)
        if length <= 1e-9 * np.sqrt(norms[j]):
            break
        basis_rows[len(picked)] = v / length
        basis = basis_rows[:len(picked) + 1]
        projected += np.square(R @ basis[-1])
        picked.append(j)
    return picked


def _start_rows(Y, l1, picked, n_components, rng):
    """The picked rows of Y, and random convex combinations of rows for the rest."""
    sparse = sp.issparse(Y)
    n_samples, n_features = Y.shape
    C0 = np.empty((n_components, n_features))
    for i, j in enumerate(picked):
        C0[i] = Y[j].toarray().ravel() if sparse else Y[j]
    missing = n_components - len(picked)
    if missing:
        if n_samples == 0 or not (l1 > 0).any():
            C0[len(picked):] = rng.uniform(0.0, 1.0, (missing, n_features))
        else:
            weights = rng.dirichlet(np.ones(n_samples), size=missing)
            mean_abs = float(abs(Y).sum()) / (n_samples * n_features)
            C0[len(picked):] = np.asarray(weights @ Y) + 1e-3 * rng.standard_normal(
                (missing, n_features)) * (mean_abs + 1e-12)
    return C0


def nndsvda_init(Y, n_components, rng):
    """Start rows from the non-negative double SVD of the rows (NNDSVDa).

    Boutsidis & Gallopoulos (2008), as scikit-learn's ``NMF(init="nndsvda")`` computes it:
    the leading singular triplet as it is, and for each further one the non-negative or the
    non-positive parts of its singular vectors, whichever carry more of it; entries below
    ``1e-6`` are replaced by the mean of ``Y``. It suits data far from separability (text),
    where SPA picks outlying rows. The truncated SVD is randomized (``O(n_components nnz)``
    a power iteration, ``randomized_svd``).

    Parameters
    ----------
    Y : {ndarray, csr_matrix} of shape (n_samples, n_features), non-negative
    n_components : int
        At most ``min(n_samples, n_features)``.
    rng : numpy Generator
        Seeds the randomized SVD.

    Returns
    -------
    C0 : ndarray of shape (n_components, n_features), float64, positive
    """
    from sklearn.utils.extmath import randomized_svd

    sparse = sp.issparse(Y)
    Y = sp.csr_matrix(Y, dtype=np.float64) if sparse else np.asarray(Y, dtype=np.float64)
    n_samples, n_features = Y.shape
    values = Y.data if sparse else Y
    if values.size and values.min() < 0:
        raise ValueError(
            f"init='nndsvda' needs non-negative rows; the rows the start reads hold "
            f"{values.min():.3g}. Use init='spa' (or 'random') for signed data."
        )
    if n_components > min(n_samples, n_features):
        raise ValueError(
            f"init='nndsvda' needs n_components <= min(n_samples, n_features) of the rows the "
            f"start reads, got {n_components} components and {n_samples} x {n_features} rows. "
            "Lower n_components, or use init='spa'."
        )
    mean = float(values.sum()) / (n_samples * n_features)
    if not mean > 0:
        raise ValueError("init='nndsvda': the rows the start reads are all zero; use "
                         "init='spa' or an init array.")
    U, S, V = randomized_svd(Y, n_components, random_state=int(rng.integers(2**31 - 1)))
    C0 = np.zeros((n_components, n_features))
    C0[0] = np.sqrt(S[0]) * np.abs(V[0])
    for j in range(1, n_components):
        x, y = U[:, j], V[j]
        parts = [(np.maximum(x, 0), np.maximum(y, 0)), (np.maximum(-x, 0), np.maximum(-y, 0))]
        norms = [(np.linalg.norm(a), np.linalg.norm(b)) for a, b in parts]
        side = 0 if norms[0][0] * norms[0][1] > norms[1][0] * norms[1][1] else 1
        x_norm, y_norm = norms[side]
        if x_norm * y_norm > 0:
            C0[j] = np.sqrt(S[j] * x_norm * y_norm) * parts[side][1] / y_norm
    C0[C0 < 1e-6] = mean
    return C0
