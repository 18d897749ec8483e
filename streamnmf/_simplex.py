"""The built-in solver of the min-inf inverse: a dense dual simplex run on every row at once.

Row ``i`` of the inverse solves the basis-pursuit programme ``min ||b||_1 s.t. C b = e_i``
(``C`` of shape (n, m), rows of unit norm). Its dual is ``max u_i s.t. ||C^T u||_inf <= 1``:
all ``n`` programmes share one feasible set, and only their objectives differ. A basis is
``n`` features ``S`` with signs ``sigma``; ``Binv = C[:, S]^-1``, the primal basic solution is
``b_S = Binv[:, i]`` and the dual one ``u = Binv^T sigma`` with ``t = C^T u``. The basis is
optimal when ``sigma * b_S >= 0`` (primal feasible) and ``|t| <= 1`` (dual feasible).

Each programme starts from a dual-feasible basis, either the previous call's optimal basis
when it is still dual feasible for the new ``C`` (a fit's stages change ``C`` a little, and
the dual polytope moves less than the vertices' signs), or a *crash*: from ``u = 0`` it
climbs along ``e_i`` projected off the constraints met so far, adding one constraint per
step, and reaches a vertex after ``n`` steps. Then the dual simplex (dual steepest edge,
Harris' two-pass ratio test) restores primal feasibility.

Why every row at once: both phases need, per step, one vector of length ``m`` per programme
(``C^T d`` or the tableau row ``C^T Binv[r]``), an ``n x m`` matrix-vector product that is
memory bound. Stacking the active programmes' vectors makes it one GEMM per step; the
per-programme work left (the ratio test, ``O(m)``, and the rank-one update of ``Binv``,
``O(n^2)``) runs in parallel over the programmes (``prange``).

A programme that does not finish (degenerate cycling, a lost pivot) reports so, and the
caller solves that row with HiGHS instead; the answer is polished on its support by the
caller in either case (:func:`streamnmf._lp._polish`), so it does not depend on the path.
"""

import numba as nb
import numpy as np

from ._engine import single_threaded_blas

__all__ = ["dual_simplex_rows"]

#: reassociation lets LLVM vectorise the dot products (the result depends on the basis
#: found, not on round-off: the caller polishes it on its support); no assumptions about
#: NaN or infinity, which the checks below rely on
_FAST = {"reassoc", "contract", "nsz"}
#: a dual-feasible previous basis is restarted from when at most this fraction of its basic
#: values has the wrong sign: the dual simplex then needs about 2-3 pivots per wrong sign,
#: the crash ``n`` steps and about ``n / 4`` pivots (bench/lp_inverse.py's stages)
WARM_INFEASIBLE = 0.3
#: programme phases
CRASH, SIMPLEX, DONE, FAILED = 0, 1, 2, 3
#: a basic value below ``-PRIMAL_TOL * max|b_S|`` is infeasible
PRIMAL_TOL = 1e-11
#: Harris' tolerance on the dual constraints ``|t| <= 1``
DUAL_TOL = 1e-10
#: a tableau entry below ``PIVOT_TOL * max|row|`` is not a pivot candidate
PIVOT_TOL = 1e-9
#: ``Binv``, ``u`` and ``t`` are recomputed from ``S`` after this many pivots ...
REFACTOR_EVERY = 100
#: ... and before a programme ends, if it pivoted this many times since
CONFIRM_AFTER = 50


@nb.njit(cache=True, fastmath=_FAST)
def _invert(A):
    """``A`` replaced by ``A^-1``: Gauss-Jordan in place with partial pivoting; False if
    ``A`` is singular to working precision. (Not LAPACK: its calls from the ``prange``
    threads would serialise.)"""
    n = A.shape[0]
    top = np.abs(A).max()
    if not np.isfinite(top) or top == 0.0:
        return False
    swaps = np.empty(n, np.int64)
    row = np.empty(n)
    for c in range(n):
        piv = c
        for j in range(c + 1, n):
            if abs(A[j, c]) > abs(A[piv, c]):
                piv = j
        if abs(A[piv, c]) <= 1e-13 * top:
            return False
        swaps[c] = piv
        if piv != c:
            for a in range(n):
                A[c, a], A[piv, a] = A[piv, a], A[c, a]
        d = 1.0 / A[c, c]
        A[c, c] = 1.0
        for a in range(n):
            row[a] = A[c, a] * d
            A[c, a] = row[a]
        for j in range(n):
            f = A[j, c]
            if j != c and f != 0.0:
                A[j, c] = 0.0
                for a in range(n):
                    A[j, a] -= f * row[a]
    for c in range(n - 1, -1, -1):  # the row swaps of A are column swaps of its inverse
        piv = swaps[c]
        if piv != c:
            for j in range(n):
                A[j, c], A[j, piv] = A[j, piv], A[j, c]
    return True


@nb.njit(cache=True, fastmath=_FAST)
def _refactor(CT, S, sigma, Binv, u, t):
    """``Binv = C[:, S]^-1``, ``u = Binv^T sigma``, ``t = C^T u`` from scratch; False if
    the basis is singular."""
    m, n = CT.shape
    for j in range(n):
        for a in range(n):
            Binv[a, j] = CT[S[j], a]
    if not _invert(Binv):
        return False
    for a in range(n):
        s = 0.0
        for j in range(n):
            s += Binv[j, a] * sigma[j]
        u[a] = s
    for l in range(m):
        s = 0.0
        for a in range(n):
            s += CT[l, a] * u[a]
        t[l] = s
    return True


@nb.njit(cache=True, fastmath=_FAST)
def _leaving(Binv, sigma, i):
    """The infeasible basic position with the largest dual steepest-edge score, or -1."""
    n = Binv.shape[0]
    scale = 0.0
    for j in range(n):
        scale = max(scale, abs(Binv[j, i]))
    r = -1
    best = 0.0
    for j in range(n):
        x = sigma[j] * Binv[j, i]
        if x < -PRIMAL_TOL * scale:
            w2 = 0.0
            for a in range(n):
                w2 += Binv[j, a] * Binv[j, a]
            score = x * x / w2
            if score > best:
                best = score
                r = j
    return r


@nb.njit(cache=True, fastmath=_FAST)
def _crash_direction(Q, step, i, d):
    """``e`` projected off the first ``step`` rows of ``Q`` (orthonormal), for ``e = e_i`` or,
    when that projection vanishes, the next coordinate whose projection does not."""
    n = Q.shape[1]
    for tries in range(n):
        e = (i + tries) % n
        for a in range(n):
            d[a] = 0.0
        d[e] = 1.0
        for q in range(step):
            c = Q[q, e]
            for a in range(n):
                d[a] -= c * Q[q, a]
        nd = 0.0
        for a in range(n):
            nd += d[a] * d[a]
        nd = np.sqrt(nd)
        if nd > 1e-8:
            for a in range(n):
                d[a] /= nd
            return True
    return False


@nb.njit(cache=True, fastmath=_FAST)
def _prepare(CT, p, i, phase, steps, leaving, S, sigma, Binv, t, dirs, w, since):
    """Programme ``p``'s vector for the next product (``w``), or a change of its phase.

    Crash: the climbing direction. Simplex: the row of ``Binv`` of the leaving position
    (kept in ``leaving``); a primal-feasible basis that has been updated many times since
    its last factorisation is refactored and rechecked before the programme is done."""
    n = Binv.shape[1]
    if phase[p] == CRASH:
        # d = e_i projected off the constraints met (kept up to date by _apply); Binv[p]
        # holds their orthonormalised normals during the crash
        d = dirs[p]
        nd = np.sqrt(np.dot(d, d))
        if nd <= 1e-8 and not _crash_direction(Binv[p], steps[p], i, d):
            phase[p] = FAILED
            return
        nd = np.sqrt(np.dot(d, d))
        for a in range(n):
            w[a] = d[a] / nd
        return
    r = _leaving(Binv[p], sigma[p], i)
    if r < 0 and since[p] >= CONFIRM_AFTER:
        u = np.empty(n)
        if not _refactor(CT, S[p], sigma[p], Binv[p], u, t[p]):
            phase[p] = FAILED
            return
        since[p] = 0
        r = _leaving(Binv[p], sigma[p], i)
    if r < 0:
        phase[p] = DONE
        return
    leaving[p] = r
    for a in range(n):
        w[a] = Binv[p, r, a]


@nb.njit(cache=True, fastmath=_FAST)
def _apply(CT, p, g, phase, steps, leaving, S, sigma, Binv, t, dirs, flags, since,
           iterations, max_iter):
    """Programme ``p``'s crash step or dual simplex pivot, given ``g = C^T w`` of its ``w``."""
    m, n = CT.shape
    tp = t[p]
    if phase[p] == CRASH:
        # ratio test on the constraints not yet met: the first one the ray hits
        step = steps[p]
        gmax = 0.0
        for l in range(m):
            gmax = max(gmax, abs(g[l]))
        best = -1
        bestr = np.inf
        for l in range(m):
            if flags[p, l] or abs(g[l]) <= PIVOT_TOL * gmax:
                continue
            s = 1.0 if g[l] > 0 else -1.0
            ratio = max((1.0 - s * tp[l]) / abs(g[l]), 0.0)
            if ratio < bestr:
                bestr = ratio
                best = l
        if best < 0:
            phase[p] = FAILED
            return
        s = 1.0 if g[best] > 0 else -1.0
        for l in range(m):
            tp[l] += bestr * g[l]
        flags[p, best] = True
        S[p, step] = best
        sigma[p, step] = s
        Q = Binv[p]
        if not _orthonormalise(Q, step, CT[best]):
            phase[p] = FAILED
            return
        c = 0.0
        for a in range(n):
            c += Q[step, a] * dirs[p, a]
        for a in range(n):  # the direction, projected off the new normal too
            dirs[p, a] -= c * Q[step, a]
        steps[p] = step + 1
        if step + 1 == n:
            u = np.empty(n)
            if _refactor(CT, S[p], sigma[p], Binv[p], u, tp):
                phase[p] = SIMPLEX
                since[p] = 0
            else:
                phase[p] = FAILED
        return
    # a dual simplex pivot: basic position r leaves (to zero)
    if iterations[p] >= max_iter:
        phase[p] = FAILED
        return
    r = leaving[p]
    sr = sigma[p, r]
    gmax = 0.0
    for l in range(m):
        gmax = max(gmax, abs(g[l]))
    # Harris: the largest step that keeps every dual constraint within DUAL_TOL ...
    thmax = np.inf
    for l in range(m):
        if abs(g[l]) <= PIVOT_TOL * gmax:
            continue
        s = -1.0 if sr * g[l] > 0 else 1.0
        ratio = (1.0 - s * tp[l] + DUAL_TOL) / abs(g[l])
        if ratio < thmax:
            thmax = ratio
    if thmax == np.inf:
        phase[p] = FAILED  # primal infeasible: C cannot have full row rank
        return
    # ... and, among the constraints reached by then, the largest pivot
    enter = -1
    bestg = 0.0
    for l in range(m):
        if abs(g[l]) <= PIVOT_TOL * gmax:
            continue
        s = -1.0 if sr * g[l] > 0 else 1.0
        if (1.0 - s * tp[l]) / abs(g[l]) <= thmax and abs(g[l]) > bestg:
            bestg = abs(g[l])
            enter = l
    s_in = -1.0 if sr * g[enter] > 0 else 1.0
    theta = max((1.0 - s_in * tp[enter]) / abs(g[enter]), 0.0)
    f = theta * sr
    for l in range(m):
        tp[l] -= f * g[l]
    # Binv of the basis with column r replaced by c_enter (one elimination step)
    B = Binv[p]
    v = np.empty(n)
    for j in range(n):
        s = 0.0
        for a in range(n):
            s += B[j, a] * CT[enter, a]
        v[j] = s
    piv = v[r]
    if abs(piv) < 1e-12:
        phase[p] = FAILED
        return
    row = B[r] / piv  # a copy: the updates below must not alias it
    B[r] = row
    for j in range(n):
        if j != r and v[j] != 0.0:
            vj = v[j]
            for a in range(n):
                B[j, a] -= vj * row[a]
    S[p, r] = enter
    sigma[p, r] = s_in
    iterations[p] += 1
    since[p] += 1
    if since[p] >= REFACTOR_EVERY:
        u = np.empty(n)
        if _refactor(CT, S[p], sigma[p], Binv[p], u, tp):
            since[p] = 0
        else:
            phase[p] = FAILED


@nb.njit(parallel=True, cache=True, fastmath=_FAST)
def _solve(Cn, CT, rows, n_chunks, phase, steps, leaving, S, sigma, Binv, t, dirs, flags,
           since, iterations, max_iter):
    """Run every programme to the end; returns the stacked products per chunk.

    The programmes are dealt to ``n_chunks`` chunks (``p = c, c + n_chunks, ...``), one per
    ``prange`` iteration; a chunk steps its unfinished programmes together, with one GEMM
    for their vectors per step (BLAS must run single-threaded here)."""
    L = rows.shape[0]
    n = CT.shape[1]
    products = np.zeros(n_chunks, np.int64)
    for c in nb.prange(n_chunks):
        mine = np.arange(c, L, n_chunks)
        W = np.empty((mine.size, n))
        G = np.empty((mine.size, CT.shape[0]))  # reused: a fresh one per step would be mapped
        act = np.empty(mine.size, np.int64)
        while True:
            k = 0
            for q in range(mine.size):
                p = mine[q]
                if phase[p] == CRASH or phase[p] == SIMPLEX:
                    _prepare(CT, p, rows[p], phase, steps, leaving, S, sigma, Binv, t, dirs,
                             W[k], since)
                    if phase[p] == CRASH or phase[p] == SIMPLEX:
                        act[k] = p
                        k += 1
            if k == 0:
                break
            np.dot(W[:k], Cn, G[:k])
            for q in range(k):
                _apply(CT, act[q], G[q], phase, steps, leaving, S, sigma, Binv, t, dirs,
                       flags, since, iterations, max_iter)
            products[c] += 1
    return products


@nb.njit(cache=True, fastmath=_FAST)
def _orthonormalise(Q, step, v):
    """Gram-Schmidt ``v`` against the first ``step`` rows of ``Q`` into row ``step``, a second
    pass only where the first lost more than half the norm ("twice is enough": one pass is
    orthogonal to round-off unless it cancels); False if ``v`` is (numerically) in their
    span."""
    n = Q.shape[1]
    before = 0.0
    for a in range(n):
        Q[step, a] = v[a]
        before += v[a] * v[a]
    nq = 0.0
    for _ in range(2):
        for j in range(step):
            c = 0.0
            for a in range(n):
                c += Q[j, a] * Q[step, a]
            for a in range(n):
                Q[step, a] -= c * Q[j, a]
        nq = 0.0
        for a in range(n):
            nq += Q[step, a] * Q[step, a]
        if nq > 0.25 * before:
            break
        before = nq
    nq = np.sqrt(nq)
    if nq < 1e-10:
        return False
    for a in range(n):
        Q[step, a] /= nq
    return True


@nb.njit(parallel=True, cache=True, fastmath=_FAST)
def _start(CT, rows, has_hint, phase, S, sigma, Binv, t):
    """Per programme: its previous basis (in ``S``, ``sigma``) if that is still dual
    feasible and at most ``WARM_INFEASIBLE * n`` of its basic values have the wrong sign,
    else the crash from ``u = 0``. (Starting the crash at the previous vertex with its
    wrong-signed constraints released was tried: the vertex it reaches needs 4-5x the
    pivots of the crash's from ``u = 0``.)"""
    m, n = CT.shape
    for p in nb.prange(rows.shape[0]):
        if has_hint[p]:
            u = np.empty(n)
            if _refactor(CT, S[p], sigma[p], Binv[p], u, t[p]):
                worst = 0.0
                for l in range(m):
                    worst = max(worst, abs(t[p, l]))
                wrong = 0
                for j in range(n):
                    if sigma[p, j] * Binv[p, j, rows[p]] < 0.0:
                        wrong += 1
                if worst <= 1.0 + DUAL_TOL and wrong <= WARM_INFEASIBLE * n:
                    phase[p] = SIMPLEX
                    continue
        phase[p] = CRASH
        for l in range(m):
            t[p, l] = 0.0


def dual_simplex_rows(Cn, rows=None, hints=None, max_iter=None):
    """Optimal bases of ``min ||b||_1 s.t. Cn b = e_i`` for the rows ``i`` in ``rows``.

    Parameters
    ----------
    Cn : ndarray of shape (n, m), float64
        Full row rank, rows of unit l2 norm (the solver's tolerances are absolute).
    rows : ndarray of int or None
        The programmes to solve (default: all ``n``).
    hints : list or None
        Per row of ``rows``, a previous basis ``(S, sigma)`` (``n`` feature indices and signs)
        to start from when it is still dual feasible, or None.
    max_iter : int or None
        Dual simplex pivots per programme before it is given up (default ``50 * n + 1000``).

    Returns
    -------
    S : ndarray of shape (len(rows), n), int64
        The optimal basis of each programme (meaningless where ``ok`` is False).
    sigma : ndarray of shape (len(rows), n), float64
        The signs of ``b`` on ``S``.
    b_S : ndarray of shape (len(rows), n), float64
        ``b`` on ``S`` (``Binv[:, i]``, before any polishing).
    ok : ndarray of shape (len(rows),), bool
        Whether the programme finished at an optimal basis.
    stats : dict
        ``warm`` (bool per programme: the dual simplex restarted from its hint),
        ``iterations`` (dual simplex pivots per programme), ``steps`` (stacked products,
        crash included) and ``duals`` (shape (len(rows), n): each programme's dual vertex
        ``u = Binv^T sigma``, from its last factorisation and updates).
    """
    Cn = np.ascontiguousarray(Cn, dtype=np.float64)
    n, m = Cn.shape
    CT = np.ascontiguousarray(Cn.T)
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    L = rows.size
    max_iter = 50 * n + 1000 if max_iter is None else int(max_iter)
    S = np.zeros((L, n), np.int64)
    sigma = np.zeros((L, n))
    has_hint = np.zeros(L, np.bool_)
    if hints is not None:
        for p, h in enumerate(hints):
            if (h is not None and len(h[0]) == n and len(h[1]) == n
                    and 0 <= np.min(h[0]) and np.max(h[0]) < m):
                S[p], sigma[p], has_hint[p] = h[0], h[1], True
    Binv = np.empty((L, n, n))
    t = np.empty((L, m))
    phase = np.empty(L, np.int8)
    since = np.zeros(L, np.int64)
    steps = np.zeros(L, np.int64)  # of the crash
    leaving = np.zeros(L, np.int64)  # the simplex's leaving position
    iterations = np.zeros(L, np.int64)
    flags = np.zeros((L, m), np.bool_)  # the constraints the crash has met
    dirs = np.zeros((L, n))  # the crash's directions: e_i to start with
    dirs[np.arange(L), rows] = 1.0
    _start(CT, rows, has_hint, phase, S, sigma, Binv, t)
    warm = phase == SIMPLEX
    # BLAS single-threaded: the threads are the chunks'
    n_chunks = max(1, min(L, nb.get_num_threads()))
    with single_threaded_blas():
        products = _solve(Cn, CT, rows, n_chunks, phase, steps, leaving, S, sigma, Binv, t,
                          dirs, flags, since, iterations, max_iter)
    ok = phase == DONE
    b_S = Binv[np.arange(L), :, rows] if L else np.empty((0, n))
    duals = np.einsum("pja,pj->pa", Binv, sigma) if L else np.empty((0, n))
    return S, sigma, b_S, ok, dict(warm=warm, iterations=iterations, duals=duals,
                                   steps=int(products.max()) if L else 0)
