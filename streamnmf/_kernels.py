"""Numba kernels: the per-sample inner loops of the decode / update engine.

Only ``@njit`` functions live here; the Python stage loop (``_engine.py``) calls them on row blocks.
Every kernel has a plain NumPy twin in ``tests/naive.py`` and the tests compare the two.

Layout (scikit-learn's, the paper's transposed):

* a block of samples ``Y`` is (n_samples, n_features): dense C-ordered rows, or CSR rows given as
  ``(data, indices, indptr)``;
* the working matrix ``C`` is (n_components, n_features), the paper's ``A`` transposed;
* codes ``Z`` are (n_samples, n_components), the paper's ``z`` (AND) or ``x`` (Purification) as
  rows. After thresholding most entries are zero, so the threshold kernels also return the
  support of every row as a CSR pattern ``(z_indptr, z_indices)``; the other kernels walk only
  that support, so their cost scales with ``nnz(z)`` rather than ``n_components``.

All kernels are ``nogil`` so a reader thread can fill the next block while they run, and
``cache=True`` so the compiled code survives between processes (see ``streamnmf.warmup``).
"""

import numba
import numpy as np

# No 'nnan'/'ninf': NaN checks must keep working. 'reassoc' and 'contract' let the compiler
# vectorise the row loops; results stay within a few ulps of the NumPy references.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: threshold kinds (the decoders of the two algorithms)
HARD = 0  # AND: phi_alpha(v) = v if v >= alpha else 0
SHIFTED_RELU = 1  # Purification: phi'_alpha(v) = max(v - alpha, 0)

_jit = dict(nogil=True, cache=True, fastmath=FASTMATH)


@numba.njit(**_jit)
def _code(v, alpha, kind):
    # phi_alpha(v), the code of one decoded value; 0.0 when it is thresholded away
    if kind == HARD:
        return v if v >= alpha else 0.0
    return v - alpha if v - alpha > 0.0 else 0.0


@numba.njit(**_jit)
def threshold_codes(V, alpha, kind, z_indptr, Z):
    """Threshold decoded values into codes and return the support of every row.

    Parameters
    ----------
    V : ndarray of shape (n_samples, n_components)
        Decoded values ``Y @ D``, in either memory order.
    alpha : float
        The stage's threshold.
    kind : int
        ``HARD`` (AND) or ``SHIFTED_RELU`` (Purification).
    z_indptr : ndarray of shape (n_samples + 1,), int64
        Filled with the CSR row pointers of the support.
    Z : ndarray of shape (n_samples, n_components)
        Output: the codes, C-ordered; may be ``V`` itself (thresholded in place).

    Returns
    -------
    z_indices : ndarray of shape (nnz,), int32
        Column indices of the non-zero codes, row after row.
    v_min : float
        The smallest decoded value before thresholding. The weights are non-negative, so a
        negative decoded value is pure decoding error: the adaptive schedule reads its size.
    """
    n_samples, n_components = V.shape
    z_indptr[0] = 0
    nnz = 0
    v_min = np.inf
    for i in range(n_samples):
        for k in range(n_components):
            v = V[i, k]
            v_min = min(v_min, v)
            z = _code(v, alpha, kind)
            Z[i, k] = z
            if z != 0.0:
                nnz += 1
        z_indptr[i + 1] = nnz
    z_indices = np.empty(nnz, dtype=np.int32)
    p = 0
    for i in range(n_samples):
        for k in range(n_components):
            if Z[i, k] != 0.0:
                z_indices[p] = k
                p += 1
    return z_indices, v_min


@numba.njit(**_jit)
def dense_decode_narrow(Y, D_T, alpha, kind, Z, z_indptr, z_indices):
    """Decode and threshold dense rows in one pass, for a decoding matrix with few columns.

    ``Z = phi_alpha(Y @ D_T.T)`` as ``Y @ D`` followed by ``threshold_codes``, but every decoded
    value is a dot product of two contiguous rows, thresholded at once. BLAS's GEMM is slow
    when ``D`` has only a few columns, and thresholding in a second pass adds to it; up to
    four components this is up to 4x faster (see ``_engine.NARROW_DECODE_COMPONENTS``).

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_features)
    D_T : ndarray of shape (n_components, n_features), C-ordered
        The stage's decoding matrix, transposed (rows of ``pinv(C).T``).
    alpha : float
    kind : int
        ``HARD`` or ``SHIFTED_RELU``.
    Z : ndarray of shape (n_samples, n_components)
        Output: the codes (the dtype of ``D_T``).
    z_indptr : ndarray of shape (n_samples + 1,), int64
        Output: the CSR row pointers of the support.
    z_indices : ndarray of shape (n_samples * n_components,), int32
        Output: the support's column indices, row after row, in its first ``nnz`` entries.

    Returns
    -------
    nnz : int
        Number of non-zero codes.
    v_min : float
        Smallest decoded value before thresholding (as ``threshold_codes``).
    """
    n_samples, n_features = Y.shape
    n_components = D_T.shape[0]
    z_indptr[0] = 0
    nnz = 0
    v_min = np.inf
    for i in range(n_samples):
        y = Y[i]
        for k in range(n_components):
            d = D_T[k]
            v = Z.dtype.type(0.0)
            for f in range(n_features):
                v += y[f] * d[f]
            v_min = min(v_min, v)
            z = _code(v, alpha, kind)
            Z[i, k] = z
            if z != 0.0:
                z_indices[nnz] = k
                nnz += 1
        z_indptr[i + 1] = nnz
    return nnz, v_min


@numba.njit(**_jit)
def row_max_sum(Z, z_indptr, z_indices):
    """``Z.max(axis=1).sum()`` from the support alone, in ``O(nnz)``.

    NumPy's reduction along rows of a few components costs more than the decode itself; the
    entries off the support are zeros, which count only in rows whose support is not full.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_components)
    z_indptr : ndarray of shape (n_samples + 1,), int64
    z_indices : ndarray of shape (nnz,), int32

    Returns
    -------
    float
    """
    n_samples, n_components = Z.shape
    total = 0.0
    for i in range(n_samples):
        lo, hi = z_indptr[i], z_indptr[i + 1]
        best = 0.0 if hi - lo < n_components else -np.inf
        for p in range(lo, hi):
            best = max(best, Z[i, z_indices[p]])
        total += best
    return total


@numba.njit(**_jit)
def csr_decode(data, indices, indptr, D, V):
    """Decode CSR rows: ``V = Y @ D`` in ``O(nnz(Y) n_components)``, independent of n_features.

    Parameters
    ----------
    data, indices, indptr : ndarrays
        CSR rows of ``Y``, (n_samples, n_features).
    D : ndarray of shape (n_features, n_components)
        The stage's decoding matrix (pinv of ``C``, i.e. the paper's ``P^T``).
    V : ndarray of shape (n_samples, n_components)
        Output, overwritten.
    """
    n_samples, n_components = V.shape
    for i in range(n_samples):
        for k in range(n_components):
            V[i, k] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            y = data[p]
            row = D[indices[p]]
            for k in range(n_components):
                V[i, k] += y * row[k]


@numba.njit(**_jit)
def _residual_dense(y, Z, i, z_indptr, z_indices, C, r):
    # r = y - C^T z over the support of z: O(n_features * nnz(z)).
    n_features = r.shape[0]
    for f in range(n_features):
        r[f] = y[f]
    for p in range(z_indptr[i], z_indptr[i + 1]):
        k = z_indices[p]
        zk = Z[i, k]
        ck = C[k]
        for f in range(n_features):
            r[f] -= zk * ck[f]


@numba.njit(**_jit)
def _residual_csr(data, indices, indptr, Z, i, z_indptr, z_indices, C, r):
    n_features = r.shape[0]
    for f in range(n_features):
        r[f] = 0.0
    for p in range(z_indptr[i], z_indptr[i + 1]):
        k = z_indices[p]
        zk = Z[i, k]
        ck = C[k]
        for f in range(n_features):
            r[f] -= zk * ck[f]
    for p in range(indptr[i], indptr[i + 1]):
        r[indices[p]] += data[p]


@numba.njit(**_jit)
def _squared_norm(r):
    # a loop, not np.dot: numba's np.dot calls BLAS, whose per-call cost was a fifth of the
    # whole per-sample update at 100 features (bench/speed.py, part sgd)
    total = 0.0
    for f in range(r.shape[0]):
        total += r[f] * r[f]
    return total


@numba.njit(**_jit)
def _sgd_step(Z, i, z_indptr, z_indices, r, C, eta, nonnegative):
    # Batch size 1 (the paper's Algorithm 1): C_S += eta z_S r^T straight into the working
    # matrix, skipping the pending-gradient buffer (one pass over the support rows, not three).
    # nonnegative: the projected step, max(C_S + eta z_S r^T, 0).
    n_features = r.shape[0]
    for p in range(z_indptr[i], z_indptr[i + 1]):
        k = z_indices[p]
        step = eta * Z[i, k]
        ck = C[k]
        for f in range(n_features):
            value = ck[f] + step * r[f]
            ck[f] = 0.0 if nonnegative and value < 0.0 else value


@numba.njit(**_jit)
def _sgd_apply(Z, i, z_indptr, z_indices, r, G, touched, n_touched):
    # Accumulate z r^T into the pending batch gradient G, remembering which rows it touched.
    n_features = r.shape[0]
    for p in range(z_indptr[i], z_indptr[i + 1]):
        k = z_indices[p]
        if not touched[k]:
            touched[k] = True
            n_touched[0] += 1
            G[k, :] = 0.0
        zk = Z[i, k]
        gk = G[k]
        for f in range(n_features):
            gk[f] += zk * r[f]


@numba.njit(**_jit)
def _sgd_flush(C, G, touched, step, nonnegative):
    # C[k] += step * G[k] for the touched rows (projected on C >= 0 when nonnegative), then
    # clear the batch.
    n_components, n_features = C.shape
    for k in range(n_components):
        if touched[k]:
            ck = C[k]
            gk = G[k]
            for f in range(n_features):
                value = ck[f] + step * gk[f]
                ck[f] = 0.0 if nonnegative and value < 0.0 else value
            touched[k] = False


@numba.njit(**_jit)
def _sgd_sample(Z, i, z_indptr, z_indices, r, C, eta, batch_size, G, touched, n_touched,
                batch_state, nonnegative):
    """Sample ``i``'s update from its residual ``r``, shared by the dense and CSR drivers:
    a step at once (``batch_size`` 1) or a term of the batch's gradient, flushed when full."""
    batch_state[1] += _squared_norm(r)
    if batch_size == 1:
        _sgd_step(Z, i, z_indptr, z_indices, r, C, eta, nonnegative)
        return
    _sgd_apply(Z, i, z_indptr, z_indices, r, G, touched, n_touched)
    batch_state[0] += 1.0
    if batch_state[0] >= batch_size:
        _sgd_flush(C, G, touched, eta / batch_state[0], nonnegative)
        batch_state[0] = 0.0


@numba.njit(**_jit)
def sgd_update_dense(Y, Z, z_indptr, z_indices, C, eta, batch_size, G, touched, batch_state,
                     nonnegative):
    """AND's per-sample update, ``A <- A + eta (y - A z) z^T``, on dense rows.

    With ``batch_size == 1`` this is the paper's Algorithm 1 sample by sample; with ``b > 1`` the
    rank-one terms of ``b`` consecutive samples are averaged and applied together. Only rows of
    ``C`` in the support of ``z`` are read or written: ``O(n_features * nnz(z))`` per sample.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_features)
    Z, z_indptr, z_indices : codes and their support, from ``threshold_codes``.
    C : ndarray of shape (n_components, n_features)
        Working matrix, updated in place.
    eta : float
        Step size per sample.
    batch_size : int
    G : ndarray of shape (n_components, n_features)
        Scratch for the pending batch gradient (its touched rows persist between calls).
    touched : ndarray of shape (n_components,), bool
        Rows of ``G`` holding pending terms.
    batch_state : ndarray of shape (2,), float64
        ``[samples pending in the batch, running sum of squared residuals]``; persists between
        calls so a batch may span blocks.
    nonnegative : bool
        Project every update on ``C >= 0`` (the rows it wrote).
    """
    n_samples, n_features = Y.shape
    r = np.empty(n_features, dtype=C.dtype)
    n_touched = np.zeros(1, dtype=np.int64)
    for i in range(n_samples):
        _residual_dense(Y[i], Z, i, z_indptr, z_indices, C, r)
        _sgd_sample(Z, i, z_indptr, z_indices, r, C, eta, batch_size, G, touched, n_touched,
                    batch_state, nonnegative)


@numba.njit(**_jit)
def sgd_update_csr(data, indices, indptr, Z, z_indptr, z_indices, C, eta, batch_size, G,
                   touched, batch_state, nonnegative):
    """``sgd_update_dense`` for CSR rows (``O(n_features nnz(z) + nnz(y))`` per sample)."""
    n_samples = Z.shape[0]
    n_features = C.shape[1]
    r = np.empty(n_features, dtype=C.dtype)
    n_touched = np.zeros(1, dtype=np.int64)
    for i in range(n_samples):
        _residual_csr(data, indices, indptr, Z, i, z_indptr, z_indices, C, r)
        _sgd_sample(Z, i, z_indptr, z_indices, r, C, eta, batch_size, G, touched, n_touched,
                    batch_state, nonnegative)


@numba.njit(**_jit)
def _gram_update(Z, i, z_indptr, z_indices, S_zz, sum_z):
    for p in range(z_indptr[i], z_indptr[i + 1]):
        k = z_indices[p]
        zk = Z[i, k]
        sum_z[k] += zk
        for q in range(z_indptr[i], z_indptr[i + 1]):
            S_zz[k, z_indices[q]] += zk * Z[i, z_indices[q]]


@numba.njit(**_jit)
def accumulate_stats_dense(Y, Z, z_indptr, z_indices, S_zy, S_zz, sum_z):
    """Add a block's ``Z^T Y`` and ``Z^T Z`` (and ``sum z``) walking only the support of ``z``.

    ``O(n_features nnz(z) + nnz(z)^2)`` per sample; the stage loop uses BLAS instead when the codes
    are dense.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_features)
    Z, z_indptr, z_indices : codes and their support.
    S_zy : ndarray of shape (n_components, n_features)
        The paper's ``S_yz`` transposed, accumulated in place.
    S_zz : ndarray of shape (n_components, n_components)
    sum_z : ndarray of shape (n_components,)
    """
    n_samples, n_features = Y.shape
    for i in range(n_samples):
        y = Y[i]
        for p in range(z_indptr[i], z_indptr[i + 1]):
            k = z_indices[p]
            zk = Z[i, k]
            sk = S_zy[k]
            for f in range(n_features):
                sk[f] += zk * y[f]
        _gram_update(Z, i, z_indptr, z_indices, S_zz, sum_z)


@numba.njit(**_jit)
def accumulate_stats_csr(data, indices, indptr, Z, z_indptr, z_indices, S_zy, S_zz, sum_z):
    """``accumulate_stats_dense`` for CSR rows: ``O(nnz(y) nnz(z))`` per sample, independent of
    n_features."""
    n_samples = Z.shape[0]
    for i in range(n_samples):
        for p in range(z_indptr[i], z_indptr[i + 1]):
            k = z_indices[p]
            zk = Z[i, k]
            sk = S_zy[k]
            for q in range(indptr[i], indptr[i + 1]):
                sk[indices[q]] += zk * data[q]
        _gram_update(Z, i, z_indptr, z_indices, S_zz, sum_z)


@numba.njit(**_jit)
def nnls_codes(B, G, Z, max_sweeps, tol):
    """Non-negative least-squares codes by coordinate descent, row by row, in place.

    Row ``i`` solves ``min_{z >= 0} ||y_i - z C||^2``, which with ``G = C C^T`` and
    ``b_i = C y_i`` is ``min z G z^T - 2 z b_i``. Each sweep sets every coordinate to its exact
    minimiser given the others, ``z_a = max(0, z_a - g_a / G_aa)`` with the gradient
    ``g = z G - b`` kept up to date (``O(n_components)`` per change). A row stops when a sweep
    moves no coordinate by more than ``tol`` times its largest code, or after ``max_sweeps``.
    The work does not depend on the number of features: ``B`` is one product of the block
    with ``C^T`` (dense or CSR, outside the kernel).

    Parameters
    ----------
    B : ndarray of shape (n_samples, n_components)
        ``Y @ C.T``.
    G : ndarray of shape (n_components, n_components)
        ``C @ C.T``.
    Z : ndarray of shape (n_samples, n_components)
        Start (non-negative; e.g. the thresholded decode), overwritten with the codes.
    max_sweeps : int
    tol : float

    Returns
    -------
    sweeps : int
        The most sweeps a row needed.
    """
    n_samples, k = B.shape
    grad = np.empty(k, dtype=np.float64)
    most = 0
    for i in range(n_samples):
        z = Z[i]
        for a in range(k):
            total = -np.float64(B[i, a])
            for c in range(k):
                total += np.float64(z[c]) * G[c, a]
            grad[a] = total
        sweep = 0
        while sweep < max_sweeps:
            sweep += 1
            largest = 0.0
            z_max = 0.0
            for a in range(k):
                g_aa = G[a, a]
                if g_aa <= 0.0:
                    continue
                old = np.float64(z[a])
                new = old - grad[a] / g_aa
                if new < 0.0:
                    new = 0.0
                delta = new - old
                if delta != 0.0:
                    z[a] = new
                    for c in range(k):
                        grad[c] += delta * G[a, c]
                    if abs(delta) > largest:
                        largest = abs(delta)
                if new > z_max:
                    z_max = new
            if largest <= tol * z_max:
                break
        if sweep > most:
            most = sweep
    return most


#: rows of ``hals_rows`` whose products with C are one GEMM
HALS_BLOCK = 16


@numba.njit(**_jit)
def hals_rows(S_zz, S_zy, C, max_sweeps, tol):
    """Non-negative least squares for a matrix from its normal equations, in place (HALS).

    Minimises ``tr(C^T S_zz C) - 2 tr(C^T S_zy)`` over ``C >= 0`` by exact minimisation over
    one row at a time, ``c_i = max(0, c_i + (S_zy[i] - S_zz[i] C) / S_zz[i, i])``; a row with
    ``S_zz[i, i] <= 0`` (never decoded) is left as it is. Stops when a sweep moves no entry by
    more than ``tol`` times the largest entry, or after ``max_sweeps``.

    Parameters
    ----------
    S_zz : ndarray of shape (n_components, n_components), float64
    S_zy : ndarray of shape (n_components, n_features), float64
    C : ndarray of shape (n_components, n_features), float64
        Non-negative start; overwritten with the solution.
    max_sweeps : int
    tol : float

    Returns
    -------
    sweeps : int
    """
    k, m = C.shape
    # Blocked Gauss-Seidel: the products of a block of HALS_BLOCK rows with C are one GEMM
    # before the block's updates, then each row adds the changes of the block's rows above it
    # (the exact HALS order, with the work in BLAS-3 instead of one GEMV a row, each re-reading
    # all of C)
    delta = np.empty((min(HALS_BLOCK, k), m), dtype=np.float64)
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        moved = 0.0
        largest = 0.0
        for i0 in range(0, k, HALS_BLOCK):
            i1 = min(i0 + HALS_BLOCK, k)
            products = np.dot(S_zz[i0:i1], C)
            for i in range(i0, i1):
                product = products[i - i0]
                for j in range(i0, i):
                    s = S_zz[i, j]
                    if s != 0.0:
                        dj = delta[j - i0]
                        for f in range(m):
                            product[f] += s * dj[f]
                d = S_zz[i, i]
                di = delta[i - i0]
                if d <= 0.0:
                    di[:] = 0.0
                    continue
                ci = C[i]
                gradient = S_zy[i]
                for f in range(m):
                    new = ci[f] + (gradient[f] - product[f]) / d
                    if new < 0.0:
                        new = 0.0
                    change = new - ci[f]
                    di[f] = change
                    if abs(change) > moved:
                        moved = abs(change)
                    if new > largest:
                        largest = new
                    ci[f] = new
        if moved <= tol * largest:
            break
    return sweeps
