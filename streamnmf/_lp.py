"""Purification's decoding inverse: the left inverse of the components with the smallest
infinity norm, one basis-pursuit linear programme per row (the built-in dual simplex of
:mod:`streamnmf._simplex`, or HiGHS), each polished on its support, so that a stage can
start from the previous stage's bases without changing the answer."""

import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.linalg
import scipy.sparse
from scipy.optimize import linprog

from ._config import LP_SOLVERS, get_config
from ._engine import single_threaded_blas
from ._simplex import dual_simplex_rows

try:  # optional (extra "lp"): the HiGHS API itself, which can hot-start from a basis
    import highspy
except ImportError:  # pragma: no cover - the scipy-only configuration
    highspy = None

__all__ = ["InverseError", "min_inf_inverse_rows"]

#: HiGHS tolerances for the basis-pursuit programmes (on rows scaled to unit l2 norm); the
#: solution is polished afterwards by an exact solve on its support.
LP_TOL = 1e-10
#: a reused basis is accepted when its dual certificate satisfies ``|C^T u| <= 1 + CERT_TOL``
CERT_TOL = 1e-9
#: HiGHS options of both solvers (``linprog(method="highs-ds")`` sets the same ones)
_HIGHS_OPTIONS = dict(
    output_flag=False, presolve="off", simplex_strategy=1,  # dual simplex
    primal_feasibility_tolerance=LP_TOL, dual_feasibility_tolerance=LP_TOL,
)


class InverseError(np.linalg.LinAlgError):
    """The decoding inverse could not be computed (a failed programme, a rank-deficient ``A``).

    A subclass of ``numpy.linalg.LinAlgError`` and therefore of ``ValueError``.
    """



def _check_components_for_inverse(C):
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2:
        raise ValueError(f"components must be 2-D (n_components, n_features), got {C.shape}.")
    n, m = C.shape
    if n > m:
        raise InverseError(
            f"no left inverse exists: {n} components in {m} features (the paper's A is "
            f"{m} x {n}, so B A = I needs n_components <= n_features). Use fewer components."
        )
    if not np.all(np.isfinite(C)):
        raise InverseError("the components contain NaN or infinity; no inverse to decode with.")
    norms = np.linalg.norm(C, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise InverseError(
            f"component {int(zero[0])} is all zeros, so A has rank < n_components and no left "
            "inverse exists. Re-initialise it or use fewer components."
        )
    return C, norms


def _numerical_rank(C):
    s = np.linalg.svd(C, compute_uv=False)
    return int(np.sum(s > max(C.shape) * np.finfo(np.float64).eps * s[0])) if s.size else 0


def _certify(Cn, i, basis, tol=CERT_TOL):
    """Reuse a previous optimal basis for row ``i`` if it is still optimal for ``Cn``.

    ``basis = (S, sigma)``: ``n`` feature indices and the signs of ``b`` on them. The basic
    solution ``b_S = Cn[:, S]^-1 e_i`` is optimal for ``min ||b||_1 s.t. Cn b = e_i`` when its
    signs agree with ``sigma`` (primal feasibility of the split ``b = p - q``) and the dual
    ``u = Cn[:, S]^-T sigma`` satisfies ``||Cn^T u||_inf <= 1`` (dual feasibility); both sides
    then have the value ``||b||_1 = u_i``, which certifies optimality. Returns ``b`` or None.
    """
    S, sigma = basis
    Cs = Cn[:, S]
    try:
        with warnings.catch_warnings():  # a singular basis is rejected below, not warned about
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            lu = scipy.linalg.lu_factor(Cs, check_finite=False)
    except (ValueError, np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return None
    e = np.zeros(Cn.shape[0])
    e[i] = 1.0
    with np.errstate(all="ignore"):
        b_S = scipy.linalg.lu_solve(lu, e, check_finite=False)
        u = scipy.linalg.lu_solve(lu, sigma, trans=1, check_finite=False)
        if not (np.all(np.isfinite(b_S)) and np.all(np.isfinite(u))):
            return None
        scale = np.abs(b_S).max()
        if np.any(sigma * b_S < -1e-12 * scale):
            return None
        if np.abs(Cn.T @ u).max() > 1.0 + tol:
            return None
        if abs(Cs @ b_S - e).max() > 1e-10:  # badly conditioned basis: solve the LP instead
            return None
    b = np.zeros(Cn.shape[1])
    b[S] = b_S
    return b


def _programme_failed(Cn, i, status, message):
    """The :class:`InverseError` of a failed programme for row ``i`` (with the rank hint)."""
    n = Cn.shape[0]
    rank = _numerical_rank(Cn)
    hint = (
        f" The components have numerical rank {rank} < {n}: they are linearly dependent, "
        "so no left inverse exists; use fewer components or a better initialisation."
        if rank < n else ""
    )
    return InverseError(
        f"min-inf inverse: the linear programme for row {i} of B (min ||b||_1 subject to "
        f"A^T b = e_{i}) failed with status {status}: {message}.{hint} "
        "inverse='pinv' (Moore-Penrose) avoids the linear programmes."
    )


def _polish(Cn, b, i):
    """:func:`_polish_rows` of one row: ``(b, basis)``."""
    B, bases = _polish_rows(Cn, b[None], np.array([i]))
    return B[0], bases[0]


#: systems of the polish per thread, at least (below, one thread: the pool costs more)
POLISH_ROWS_PER_THREAD = 16


def _polish_threads(count, n):
    """Threads for ``count`` LU solves of order ``n`` (numpy releases the GIL in them): as
    many as the simplex's ``prange`` (numba's thread count). Two halved the polish at
    150 x 1000 (40 to 22 ms)."""
    if n < 32:
        return 1
    return max(1, min(numba.get_num_threads(), count // POLISH_ROWS_PER_THREAD))


def _solve_supports(A, E, X, residual, part):
    """``X[q] = A[q]^-1 E[q]`` and its residual ``max |A[q] X[q] - E[q]|`` for ``q`` in
    ``part``, the stack at once or, if one support is singular, one by one (left NaN)."""
    if not part.size:
        return
    A_part = A[part]
    try:
        X[part] = np.linalg.solve(A_part, E[part, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        for q in part:
            try:
                X[q] = np.linalg.solve(A[q:q + 1], E[q:q + 1, :, None])[0, :, 0]
            except np.linalg.LinAlgError:
                pass
    with np.errstate(invalid="ignore"):
        residual[part] = np.abs(np.matmul(A_part, X[part, :, None])[:, :, 0]
                                - E[part]).max(axis=1)


def _polish_rows(Cn, B, rows):
    """Polish programmes' solutions (rows of ``B``, for rows ``rows`` of the inverse) by an
    exact solve on their supports.

    Row ``p``'s support ``S`` is where ``|B[p]|`` exceeds ``1e-13`` of its largest entry;
    ``Cn[:, S] b_S = e_i`` is solved by LU (``numpy.linalg.solve`` on the stack of square
    supports, one BLAS thread) or, for a smaller (degenerate) support or a singular one, by
    least squares. The solve is kept when it is exact and no larger in l1 norm (a solver's
    answer is exact only to its tolerance). The result depends on a row only through ``S``:
    solutions with the same support polish to the same floating-point numbers, whichever
    solver, start or certificate produced them.

    Returns the polished rows, shape (len(rows), m), and per row the basis ``(S, sigma)``
    when it is non-degenerate, else None.
    """
    L, n = len(rows), Cn.shape[0]
    out = np.array(B, dtype=np.float64)
    bases = [None] * L
    l1 = np.abs(out).sum(axis=1)
    tops = np.abs(out).max(axis=1, keepdims=True)
    supports = [np.flatnonzero(np.abs(out[p]) > 1e-13 * tops[p]) for p in range(L)]
    square = np.array([p for p in range(L) if supports[p].size == n], dtype=np.int64)
    rest = [p for p in range(L) if 0 < supports[p].size < n]
    if square.size:
        S = np.stack([supports[p] for p in square])
        # rows of C^T gathered (contiguous) and viewed transposed: the stack of Cn[:, S]
        A = np.ascontiguousarray(Cn.T)[S].transpose(0, 2, 1)
        E = np.zeros((square.size, n))
        E[np.arange(square.size), rows[square]] = 1.0
        X = np.full((square.size, n), np.nan)
        residual = np.full(square.size, np.inf)
        with single_threaded_blas():  # LU in one fixed order: the same bits every call
            parts = np.array_split(np.arange(square.size), _polish_threads(square.size, n))
            if len(parts) == 1:
                _solve_supports(A, E, X, residual, parts[0])
            else:  # each system alone on one BLAS thread: the same bits on any split
                with ThreadPoolExecutor(len(parts)) as pool:
                    list(pool.map(lambda part: _solve_supports(A, E, X, residual, part),
                                  parts))
        exact = (residual <= 1e-11) & (np.abs(X).sum(axis=1) <= l1[square] * (1 + 1e-8))
        for q in np.flatnonzero(~exact):  # singular: least squares may still be exact
            if not np.all(np.isfinite(X[q])):
                rest.append(int(square[q]))
        keep = square[exact]
        out[keep] = 0.0
        out[keep[:, None], S[exact]] = X[exact]
        for p in square:
            bases[p] = (supports[p], np.sign(out[p, supports[p]]))
    for p in rest:  # a degenerate vertex (fewer than n features) or a singular support
        S = supports[p]
        e = np.zeros(n)
        e[rows[p]] = 1.0
        b_S = np.linalg.lstsq(Cn[:, S], e, rcond=None)[0]
        if np.abs(Cn[:, S] @ b_S - e).max() <= 1e-11 and np.abs(b_S).sum() <= l1[p] * (1 + 1e-8):
            out[p] = 0.0
            out[p, S] = b_S
    return out, bases


def _solve_row(Cn, Aeq, i):
    """One basis-pursuit programme ``min ||b||_1 s.t. Cn b = e_i`` by HiGHS dual simplex.

    ``scipy.optimize.linprog``, from scratch. Returns ``b`` polished by :func:`_polish` and
    the basis ``(S, sigma)`` when it is non-degenerate.
    """
    n, m = Cn.shape
    e = np.zeros(n)
    e[i] = 1.0
    res = linprog(
        np.ones(2 * m), A_eq=Aeq, b_eq=e, bounds=(0, None), method="highs-ds",
        options=dict(presolve=False, primal_feasibility_tolerance=LP_TOL,
                     dual_feasibility_tolerance=LP_TOL),
    )
    if res.status != 0 or res.x is None:
        raise _programme_failed(Cn, i, res.status, res.message)
    x = res.x
    return _polish(Cn, x[:m] - x[m:], i)


# -- the highspy path: one HiGHS model per estimator, hot-started per row ---------------------

class _WarmStart:
    """What the next min-inf inverse may start from: the last call's optimal bases per row.

    Holds one HiGHS instance (its model is replaced by every call's programmes) and per row
    the optimal HiGHS basis (``setBasis`` hot-starts the dual simplex from it) and the
    certificate hint ``(S, sigma)`` of :func:`_certify` (the basic features and their signs,
    degenerate bases included). Only a speed-up: the inverse does not depend on it (see
    :func:`min_inf_inverse_rows`), so it is never checkpointed, and a copy (pickle, deepcopy,
    a Dask task) is empty and starts cold.

    ``stats`` describes the last call: per row ``"certified"`` (the previous basis was still
    optimal, no programme), ``"warm"`` or ``"cold"`` (a HiGHS solve from the previous basis
    or from scratch) or ``"scipy"`` (HiGHS failed twice; ``linprog`` decided), and the
    simplex iterations per row (0 where none ran).
    """

    def __init__(self):
        self.shape = None
        self.highs = None
        self.bases = []
        self.hints = []
        self.stats = None

    def __reduce__(self):
        return (_WarmStart, ())

    def reset(self, shape):
        self.shape = shape
        self.bases = [None] * shape[0]
        self.hints = [None] * shape[0]


def _highs():
    # highspy._core._Highs: the bare solver (highspy.Highs prints a banner on stdout once)
    core = getattr(highspy, "_core", None)
    h = getattr(core, "_Highs", highspy.Highs)()
    for key, value in _HIGHS_OPTIONS.items():
        h.setOptionValue(key, value)
    return h


def _highs_model(Cn):
    """``min 1^T (p, q) s.t. [Cn, -Cn] (p, q) = 0, p, q >= 0``; the RHS is set per row."""
    n, m = Cn.shape
    A = scipy.sparse.csc_array(np.hstack([Cn, -Cn]))  # as linprog passes it: no explicit zeros
    lp = highspy.HighsLp()
    lp.num_col_ = 2 * m
    lp.num_row_ = n
    lp.col_cost_ = np.ones(2 * m)
    lp.col_lower_ = np.zeros(2 * m)
    lp.col_upper_ = np.full(2 * m, highspy.kHighsInf)
    lp.row_lower_ = np.zeros(n)
    lp.row_upper_ = np.zeros(n)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    lp.a_matrix_.num_col_ = 2 * m
    lp.a_matrix_.num_row_ = n
    return lp


def _highs_solve(h, basis):
    """Run the loaded programme from ``basis`` (None: from scratch); a failed hot start is
    retried from scratch. Returns ``(x, how, iterations)``, ``x`` None if HiGHS failed."""
    optimal = highspy.HighsModelStatus.kOptimal
    how = "cold"
    if basis is not None:
        h.setBasis(basis)
        h.run()
        if h.getModelStatus() == optimal:
            how = "warm"
        else:
            basis = None
    if basis is None:
        h.clearSolver()
        h.run()
        if h.getModelStatus() != optimal:
            return None, how, 0
    iterations = max(int(h.getInfo().simplex_iteration_count), 0)
    return np.asarray(h.getSolution().col_value, dtype=np.float64), how, iterations


def _basic_columns(h, n, m):
    """The certificate hint ``(S, sigma)`` of HiGHS' optimal basis (degenerate or not), or
    None when a row is basic (or highspy < 1.8 cannot say)."""
    get = getattr(h, "getBasicVariables", None)
    if get is None:
        return None
    basic = np.asarray(get()[1])
    if basic.size != n or basic.min() < 0:  # negative: a row's slack
        return None
    return basic % m, np.where(basic < m, 1.0, -1.0)


def _min_inf_highspy(Cn, start):
    """Rows of the min-inf inverse of the row-normalised ``Cn`` (highspy, hot-started).

    Per row: the previous basis is certified (:func:`_certify`, no programme) if still
    optimal, else HiGHS runs from it (dual simplex), else from scratch, else ``linprog``
    (whose failure raises :class:`InverseError`). Every solution is polished by
    :func:`_polish`. Updates and returns ``start`` (a :class:`_WarmStart`).
    """
    n, m = Cn.shape
    if start.shape != (n, m):
        start.reset((n, m))
    h = None
    one = None  # the row whose right-hand side is 1 (the others are 0)
    B = np.empty((n, m))
    how, iterations = [], []
    for i in range(n):
        b = None
        if start.hints[i] is not None:
            b = _certify(Cn, i, start.hints[i], tol=LP_TOL)
        if b is not None:
            how.append("certified")
            iterations.append(0)
        else:
            if h is None:  # the first row that needs a programme loads this C
                if start.highs is None:
                    start.highs = _highs()
                h = start.highs
                h.passModel(_highs_model(Cn))
            if one is not None:
                h.changeRowBounds(one, 0.0, 0.0)
            h.changeRowBounds(i, 1.0, 1.0)
            one = i
            x, row_how, its = _highs_solve(h, start.bases[i])
            if x is None:  # HiGHS failed from scratch too: linprog decides, raises if it fails
                start.bases[i] = start.hints[i] = None
                b, start.hints[i] = _solve_row(Cn, np.hstack([Cn, -Cn]), i)
                B[i] = b
                how.append("scipy")
                iterations.append(0)
                continue
            how.append(row_how)
            iterations.append(its)
            b = x[:m] - x[m:]
            start.bases[i] = h.getBasis()
            start.hints[i] = _basic_columns(h, n, m)
        B[i], basis = _polish(Cn, b, i)
        if start.hints[i] is None and basis is not None:
            start.hints[i] = basis
    start.stats = dict(how=how, iterations=iterations)
    return B, sum(1 for k in how if k != "certified")


class _SimplexBases(list):
    """The built-in simplex's bases per row (``(S, sigma)`` or None), with what the next call
    needs to decide whether to try them: ``recheck_in``, the calls left before it does.

    A row restarts from its basis only when it is still dual feasible and near primal
    feasibility; checking costs about a tenth of the row's crash. Where the stages change
    ``C`` too much for that (a constant step: 3-15% of the rows restart), the checks are
    skipped for ``SKIP_CALLS`` calls after a call that restarted fewer than ``MIN_WARM``
    of its rows, then tried again.
    """

    MIN_WARM = 0.2
    SKIP_CALLS = 3
    recheck_in = 0


#: the rows are first solved on the union of the previous call's supports when it holds at
#: most this share of the features: a stage moves that union by 1-13 of its 430-440 features
#: (150 x 1000, constant step), and the programmes' products shrink with it
RESTRICT_MAX_SHARE = 0.75
#: rounds of the restricted solve (each adds the features the uncertified rows' duals
#: violate) before the rows left are solved on all the features
RESTRICT_ROUNDS = 2
#: a restricted row is optimal for the whole programme when its dual vertex meets every
#: constraint, ``|C^T u| <= 1``, within this
RESTRICT_CERT_TOL = 1e-9


def _support_union(bases, n, m):
    """The features of the bases' supports (sorted), or None without a full set of them."""
    if bases is None or len(bases) != n or any(b is None for b in bases):
        return None
    columns = np.unique(np.concatenate([np.asarray(b[0], dtype=np.int64) for b in bases]))
    if columns.size < n or columns[0] < 0 or columns[-1] >= m:
        return None
    return columns


def _local_hints(hints, rows, columns):
    """``hints`` of ``rows`` with their features renumbered within ``columns`` (None for a
    hint with a feature outside them)."""
    if hints is None:
        return None
    out = []
    for i in rows:
        h = hints[i]
        if h is None:
            out.append(None)
            continue
        inside = np.isin(h[0], columns).all()
        out.append((np.searchsorted(columns, h[0]), h[1]) if inside else None)
    return out


def _min_inf_simplex(Cn, bases):
    """Rows of the min-inf inverse of the row-normalised ``Cn`` by the built-in dual simplex.

    Every row starts from its previous basis in ``bases`` (a list of ``(S, sigma)`` or None)
    when that is still dual feasible, else from the crash (:mod:`streamnmf._simplex`). With
    the previous call's bases, the rows are first solved on the features of their supports
    only (``RESTRICT_MAX_SHARE``): a row's optimum there is the whole programme's when its
    dual vertex ``u`` meets every constraint, ``|Cn^T u| <= 1``; the features an uncertified
    row's dual violates are added and it is solved again (``RESTRICT_ROUNDS``), then on all
    the features. A row the simplex does not finish is solved by ``linprog`` (whose failure
    raises :class:`InverseError`). Every solution is polished by :func:`_polish_rows`, so it
    depends on its support only, whichever way it was found. Returns ``(B, bases, programmes
    solved)``; a row whose previous basis was still optimal (no pivot) does not count as
    solved.
    """
    n, m = Cn.shape
    previous = list(bases) if bases is not None and len(bases) == n else None
    recheck_in = getattr(bases, "recheck_in", 0)
    hints = None if recheck_in > 0 else previous
    S = np.zeros((n, n), np.int64)
    sigma = np.zeros((n, n))
    b_S = np.zeros((n, n))
    ok = np.zeros(n, np.bool_)
    warm = np.zeros(n, np.bool_)
    iterations = np.zeros(n, np.int64)

    def keep(rows, columns, result, take):
        S_r, sigma_r, b_r, ok_r, stats = result
        rows, take = rows[take], np.flatnonzero(take)
        S[rows] = S_r[take] if columns is None else columns[S_r[take]]
        sigma[rows], b_S[rows], ok[rows] = sigma_r[take], b_r[take], ok_r[take]
        warm[rows] |= stats["warm"][take]
        iterations[rows] += stats["iterations"][take]

    todo = np.arange(n)
    columns = _support_union(previous, n, m)
    if columns is not None and columns.size <= RESTRICT_MAX_SHARE * m:
        for _ in range(RESTRICT_ROUNDS):
            result = dual_simplex_rows(np.ascontiguousarray(Cn[:, columns]), rows=todo,
                                       hints=_local_hints(hints, todo, columns))
            ok_r, stats = result[3], result[4]
            violated = np.abs(stats["duals"] @ Cn) > 1.0 + RESTRICT_CERT_TOL
            certified = ok_r & ~violated.any(axis=1)
            keep(todo, columns, result, certified)
            added = np.flatnonzero(violated[~certified & ok_r].any(axis=0))
            todo = todo[~certified]
            if not todo.size or not added.size:
                break
            columns = np.union1d(columns, added)
    if todo.size:
        result = dual_simplex_rows(
            Cn, rows=todo, hints=None if hints is None else [hints[i] for i in todo])
        keep(todo, None, result, np.ones(todo.size, np.bool_))
    B = np.zeros((n, m))
    B[np.arange(n)[:, None], S] = b_S
    done = np.flatnonzero(ok)
    B[done], _ = _polish_rows(Cn, B[done], done)
    # the simplex's own bases, degenerate ones included, are the next call's hints
    found = _SimplexBases((S[i].copy(), sigma[i].copy()) if ok[i] else None for i in range(n))
    if recheck_in > 0:
        found.recheck_in = recheck_in - 1
    elif hints is not None and warm.mean() < _SimplexBases.MIN_WARM:
        found.recheck_in = _SimplexBases.SKIP_CALLS
    Aeq = None
    for i in np.flatnonzero(~ok):
        if Aeq is None:
            Aeq = np.hstack([Cn, -Cn])
        B[i], found[i] = _solve_row(Cn, Aeq, i)
    solved = int(np.sum(~(warm & (iterations == 0) & ok)))
    return B, found, solved


def min_inf_inverse_rows(C, *, bases=None, return_bases=False, solver=None):
    """Left inverse of ``A = C.T`` with the smallest infinity norm, as a decoding matrix.

    Finds ``B`` (n_components, n_features) with ``B A = I`` minimising ``||B||_inf``, the largest
    l1 norm of a row of ``B``. The problem separates by rows: row ``i`` is the basis-pursuit
    programme ``min ||b||_1 s.t. A^T b = e_i`` (``C b = e_i`` here). By default all rows are
    solved together by the built-in dual simplex (:mod:`streamnmf._simplex`: one GEMM per
    step for all rows, the per-row work in parallel); ``solver="highspy"`` or ``"scipy"``
    solve them one at a time with HiGHS. Each programme's solution is polished by an exact
    solve on its support, so ``C D = I`` holds to round-off. With ``n_components ==
    n_features`` the inverse is unique: ``inv(C)``.

    The programmes of successive calls (a fit's stages) differ little, so a call starts
    from the optimal bases of the previous one (``bases``). The built-in simplex restarts a
    row from its previous basis when that is still dual feasible for the new ``C`` and not
    too far from primal feasible (a basis feasible both ways is optimal: no pivot), else
    from its crash. The HiGHS paths certify a still-optimal basis (``_certify``: one ``n x
    n`` LU factorisation instead of a programme); with ``highspy`` (extra ``lp``) the other
    rows hot-start HiGHS' dual simplex from their previous basis; ``scipy.optimize.linprog``
    cannot, and solves them from scratch.

    **What the warm start and the solver may change.** Nothing, when a row's optimum is
    unique (the generic case; so in every stage of bench/lp_inverse.py): all paths --
    certified, warm, cold, built-in, ``highspy`` or ``linprog`` -- finish a row with the same
    solve on the support of the optimal vertex, so they return the same floating-point
    numbers, and a fit resumed from a checkpoint (which starts cold) equals the uninterrupted
    one bit for bit. When the optimum is not unique (ties, e.g. two identical features), the
    paths may return different optimal rows: equal in ``||b||_1`` to the solvers' tolerance
    (about 1e-9 relative on rows of unit norm) and with ``C @ D = I`` to round-off, but not
    equal entry by entry (and a resumed fit then differs from the uninterrupted one).

    Parameters
    ----------
    C : array-like of shape (n_components, n_features)
        The components as rows (the paper's ``A`` transposed); full row rank.
    bases : object or None
        What an earlier call returned with ``return_bases=True``: with ``highspy`` a
        ``_WarmStart`` (updated in place and returned), else a list of per-row bases
        ``(S, sigma)`` or None. Either kind is accepted by every solver.
    return_bases : bool
        Also return the bases found (for the next call).
    solver : {"auto", "simplex", "highspy", "scipy"} or None
        None: the configured one (``streamnmf.get_config()["lp_solver"]``); ``"auto"`` is
        ``"simplex"``.

    Returns
    -------
    D : ndarray of shape (n_features, n_components), float64
        ``D = B.T``: ``C @ D = I``, and a block of data decodes as ``Y @ D``.
    bases : ``_WarmStart`` or list, only if ``return_bases``

    Raises
    ------
    InverseError
        No left inverse exists (more components than features, a zero or dependent component,
        non-finite entries) or a programme failed; the message names the row and the status.
    """
    D, found, _ = _min_inf(C, bases, solver=solver)
    return (D, found) if return_bases else D


def _resolve_solver(solver):
    solver = get_config()["lp_solver"] if solver is None else solver
    if solver not in LP_SOLVERS:
        raise ValueError(f"LP solver {solver!r} is not supported; expected one of {LP_SOLVERS}.")
    if solver == "auto":
        return "simplex"
    if solver == "highspy" and highspy is None:
        raise ImportError("the LP solver 'highspy' needs the highspy package: "
                          "pip install highspy (or streamnmf[lp]).")
    return solver


def _min_inf(C, bases=None, solver=None):
    """:func:`min_inf_inverse_rows` returning ``(D, bases, programmes solved)``."""
    solver = _resolve_solver(solver)
    C, norms = _check_components_for_inverse(C)
    n, m = C.shape
    if n == m:
        try:
            D = scipy.linalg.inv(C, check_finite=False)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError) as exc:
            raise InverseError(
                f"min-inf inverse: the square components matrix is singular ({exc}); they are "
                "linearly dependent. Use fewer components or a better initialisation."
            ) from None
        if not np.all(np.isfinite(D)):
            raise InverseError("min-inf inverse: the square components matrix is singular.")
        return D, [None] * n, 0
    # Scaling row k of C by 1/s_k scales the solution of row i by s_i: normalise for the
    # solver's absolute tolerances, undo below.
    Cn = C / norms[:, None]
    if solver == "highspy":
        start = bases if isinstance(bases, _WarmStart) else _WarmStart()
        if not isinstance(bases, _WarmStart) and bases is not None and len(bases) == n:
            start.reset((n, m))  # (S, sigma) hints of the scipy path: certificates only
            start.hints = [h if h is not None and h[0].size == n and h[0].max() < m else None
                           for h in bases]
        B, solved = _min_inf_highspy(Cn, start)
        return np.ascontiguousarray((B / norms[:, None]).T), start, solved
    if isinstance(bases, _WarmStart):
        bases = bases.hints
    if solver == "simplex":
        B, found, solved = _min_inf_simplex(Cn, bases)
        return np.ascontiguousarray((B / norms[:, None]).T), found, solved
    Aeq = None
    solved = 0
    B = np.empty((n, m))
    found = [None] * n
    for i in range(n):
        b = None
        hint = bases[i] if bases is not None and i < len(bases) else None
        if hint is not None and hint[0].size == n and hint[0].max() < m:
            b = _certify(Cn, i, hint)
            if b is not None:
                b, _ = _polish(Cn, b, i)
                found[i] = hint
        if b is None:
            if Aeq is None:
                Aeq = np.hstack([Cn, -Cn])
            b, found[i] = _solve_row(Cn, Aeq, i)
            solved += 1
        B[i] = b / norms[i]
    return np.ascontiguousarray(B.T), found, solved
