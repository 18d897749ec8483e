"""Purification (Li, Liang and Risteski, NIPS 2016, Algorithm 1).

Iterations ``t = 0, 1, ...`` each take a fresh batch ``y_1 .. y_N`` and

* decode ``x = phi_alpha(B y)`` with the shifted ReLU ``phi_alpha(v) = max(v - alpha, 0)`` and
  ``B`` the left inverse of ``A`` (``B A = I``) with the smallest ``||B||_inf`` (largest row l1
  norm): :func:`min_inf_inverse_rows`;
* update ``A <- (1 - eta) A + r eta E_hat[(y - y')(x - x')^T]`` with ``y, y'`` independent uniform
  draws from the batch: :func:`pair_moment` computes the expectation in one pass from the
  stage statistics, :class:`PurificationRule` applies it.

Layout (as everywhere in the library): rows. ``C = A.T`` is (n_components, n_features), the
decoding matrix ``D = B.T`` is (n_features, n_components), so a block decodes as ``Y @ D`` and
``B A = I`` reads ``C D = I``. An iteration of the paper is a stage of the engine.
"""

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
from scipy.optimize import linprog

try:  # optional (extra "lp"): the HiGHS API itself, which can hot-start from a basis
    import highspy
except ImportError:  # pragma: no cover - the scipy-only configuration
    highspy = None

from . import _engine
from . import _kernels as K
from ._base import StreamingNMFBase, _check_number
from ._engine import Rule

#: what ``components`` takes (as AND's)
COMPONENTS = ("auto", "nonnegative", "signed")

__all__ = [
    "InverseError",
    "min_inf_inverse_rows",
    "pair_moment",
    "balancing_scale",
    "PurificationRule",
    "Purification",
]

INVERSES = ("min-inf", "pinv")
STEP_DECAYS = ("sqrt",)

#: HiGHS tolerances for the basis-pursuit programmes (on rows scaled to unit l2 norm); the
#: solution is polished afterwards by an exact solve on its support.
LP_TOL = 1e-10
#: a reused basis is accepted when its dual certificate satisfies ``|C^T u| <= 1 + CERT_TOL``
CERT_TOL = 1e-9
#: Solver of the min-inf programmes: ``"auto"`` (``highspy`` when it is importable, else
#: ``scipy.optimize.linprog``), ``"highspy"`` or ``"scipy"``. Both run HiGHS' dual simplex
#: with the same options; only ``highspy`` can hot-start a programme from the previous stage's
#: basis. The results agree (see :func:`min_inf_inverse_rows`); tests switch this.
LP_SOLVER = "auto"
LP_SOLVERS = ("auto", "highspy", "scipy")
#: HiGHS options of both solvers (``linprog(method="highs-ds")`` sets the same ones)
_HIGHS_OPTIONS = dict(
    output_flag=False, presolve="off", simplex_strategy=1,  # dual simplex
    primal_feasibility_tolerance=LP_TOL, dual_feasibility_tolerance=LP_TOL,
)


class InverseError(np.linalg.LinAlgError):
    """The decoding inverse could not be computed (a failed programme, a rank-deficient ``A``).

    A subclass of ``numpy.linalg.LinAlgError`` and therefore of ``ValueError``.
    """


# --------------------------------------------------------------------------------------------
# the decoding inverse
# --------------------------------------------------------------------------------------------

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
    """Polish a programme's solution ``b`` by an exact solve on its support.

    Returns the polished ``b`` (a least-squares solve of ``Cn[:, S] b_S = e_i`` on the support
    ``S``, kept when it is exact and no larger in l1 norm; the solver's answer is exact only
    to its tolerance) and the basis ``(S, sigma)`` when it is non-degenerate. The result
    depends on ``b`` only through ``S``: solutions with the same support polish to the same
    floating-point numbers, whichever solver, start or certificate produced them.
    """
    n, m = Cn.shape
    e = np.zeros(n)
    e[i] = 1.0
    top = np.abs(b).max()
    S = np.flatnonzero(np.abs(b) > 1e-13 * top)
    basis = None
    if S.size <= n:
        b_S = np.linalg.lstsq(Cn[:, S], e, rcond=None)[0]
        if np.abs(Cn[:, S] @ b_S - e).max() <= 1e-11 and (
            np.abs(b_S).sum() <= np.abs(b).sum() * (1 + 1e-8)
        ):
            b = np.zeros(m)
            b[S] = b_S
        if S.size == n:
            basis = (S, np.sign(b[S]))
    return b, basis


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


def min_inf_inverse_rows(C, *, bases=None, return_bases=False, solver=None):
    """Left inverse of ``A = C.T`` with the smallest infinity norm, as a decoding matrix.

    Finds ``B`` (n_components, n_features) with ``B A = I`` minimising ``||B||_inf``, the largest
    l1 norm of a row of ``B``. The problem separates by rows: row ``i`` is the basis-pursuit
    programme ``min ||b||_1 s.t. A^T b = e_i`` (``C b = e_i`` here), solved as a linear
    programme over ``b = p - q, p, q >= 0`` with HiGHS (``scipy.optimize.linprog``). Each
    programme's solution is polished by an exact solve on its support, so ``C D = I`` holds to
    round-off. With ``n_components == n_features`` the inverse is unique: ``inv(C)``.

    The programmes of successive calls (a fit's stages) differ little, so a call starts
    from the optimal bases of the previous one (``bases``): a basis that is still primal and
    dual feasible for the new ``C`` is optimal (a certificate, see ``_certify``) and costs
    one ``n x n`` LU factorisation instead of a programme. With ``highspy`` installed (extra
    ``lp``) the other rows hot-start HiGHS' dual simplex from their previous basis (one HiGHS
    model per ``bases`` object, its matrix replaced per call, its right-hand side per row);
    ``scipy.optimize.linprog`` cannot, and solves them from scratch.

    **What the warm start may change.** Nothing, when a row's optimum is unique (the generic
    case; so in every stage of bench/lp_inverse.py): all paths -- certified, hot-started,
    cold, ``highspy`` or ``linprog`` -- finish a row with the same least-squares solve on the
    support of the optimal vertex, so they return the same floating-point numbers, and a fit
    resumed from a checkpoint (which starts cold) equals the uninterrupted one bit for bit.
    When the optimum is not unique (ties, e.g. two identical features), the paths may return
    different optimal rows: equal in ``||b||_1`` to the solver's tolerance (``LP_TOL`` on
    rows of unit norm, about 1e-9 relative) and with ``C @ D = I`` to round-off, but not
    equal entry by entry (and a resumed fit then differs from the uninterrupted one).

    Parameters
    ----------
    C : array-like of shape (n_components, n_features)
        The components as rows (the paper's ``A`` transposed); full row rank.
    bases : object or None
        What an earlier call returned with ``return_bases=True``: with ``highspy`` a
        ``_WarmStart`` (updated in place and returned), else a list of per-row bases
        ``(S, sigma)`` or None. Either kind is accepted by either solver.
    return_bases : bool
        Also return the bases found (for the next call).
    solver : {"auto", "highspy", "scipy"} or None
        None: the module's ``LP_SOLVER`` (``"auto"``: ``highspy`` when importable).

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
    solver = LP_SOLVER if solver is None else solver
    if solver not in LP_SOLVERS:
        raise ValueError(f"LP solver {solver!r} is not supported; expected one of {LP_SOLVERS}.")
    if solver == "auto":
        return "highspy" if highspy is not None else "scipy"
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
                found[i] = hint
        if b is None:
            if Aeq is None:
                Aeq = np.hstack([Cn, -Cn])
            b, found[i] = _solve_row(Cn, Aeq, i)
            solved += 1
        B[i] = b / norms[i]
    return np.ascontiguousarray(B.T), found, solved


# --------------------------------------------------------------------------------------------
# the update
# --------------------------------------------------------------------------------------------

def pair_moment(stats):
    """``E_hat[(x - x')(y - y')^T]`` over independent uniform draws from the stage's batch.

    With ``y, y'`` drawn independently and uniformly from the ``N`` samples (all ``N^2``
    ordered pairs, ``i == j`` included, each with weight ``1 / N^2``)::

        1/N^2 sum_{i,j} (x_i - x_j)(y_i - y_j)^T = 2 (1/N sum_i x_i y_i^T - xbar ybar^T)

    twice the empirical (biased, ``1/N``) cross-covariance, from ``S_zy``, ``sum_z``, ``sum_y``
    and ``count`` in one pass. The pairs ``i == j`` contribute zero, so the average over the
    ``N (N - 1)`` pairs with ``i != j`` is ``N / (N - 1)`` times this (twice the unbiased
    covariance); with the default ``r`` the choice cancels.

    Parameters
    ----------
    stats : StageStats
        Accumulated with ``sum_y`` (``Rule.needs_sum_y``).

    Returns
    -------
    M : ndarray of shape (n_components, n_features), float64
        The paper's ``E_hat[(y - y')(x - x')^T]`` (m x n) transposed.
    """
    N = stats.count
    if N == 0:
        return np.zeros_like(stats.S_zy)
    mean_z = stats.sum_z / N
    mean_y = stats.sum_y / N
    return 2.0 * (stats.S_zy / N - np.outer(mean_z, mean_y))


class PurificationRule(Rule):
    """Purification's decode (shifted ReLU, min-inf or pinv inverse) and stage update.

    ``end_stage`` returns ``C <- (1 - eta_t) C + eta_t diag(r) M`` with ``M = pair_moment``.

    ``r=None`` ("auto"): per component ``r_i = 1 / (M D)_ii``. Since ``B A = I``,
    ``(B M^T)_ii = 2 cov(v_i, x_i)`` with ``v = B y`` the decoded values before the ReLU, so the
    update's coefficient along its own column, in the basis of the current ``A``, is exactly 1:
    ``B A_new = (1 - eta) I + eta diag(r) B M^T`` has unit diagonal and the columns keep their
    size; only the mixing with the other columns changes. At the truth with exact data,
    ``v = x*`` and ``M_i = 2 sum_k cov(x_i, x*_k) A*_k``; independence of the weights makes the
    terms ``k != i`` vanish, so ``A*`` (at any column scale) is a fixed point for every ``alpha``
    (up to the sampling noise of the cross-covariances, ``O(1/sqrt(N))``). A component whose
    codes are constant over the stage (never decoded) has no information and is kept as is.
    A float ``r`` is the paper's scalar scaling factor, applied as written.

    ``cov(v_i, phi(v_i)) >= var(phi(v_i)) >= 0`` for the 1-Lipschitz non-decreasing ReLU, so
    ``r_i`` is positive whenever the codes vary.

    Parameters
    ----------
    inverse : {"min-inf", "pinv"}
    eta : float
    r : float or None
    step_decay : None, float or "sqrt"
        None: ``eta_t = eta``; a float ``t0``: ``eta / (1 + t / t0)``; ``"sqrt"``:
        ``eta / sqrt(1 + t)``; ``t`` counts the updates made (the rule's state).
    balance_scale : ndarray or None
        The balancing scale of ``Purification(balance=True)``, kept here so that a checkpoint
        of the rule's state restores it.
    cache : dict or None
        Shared between the rules of one estimator: the last ``(C, D)`` and the LP bases, so a
        stage's inverse is computed once (the engine asks at the stage start, ``end_stage`` and
        ``transform`` ask again for the same ``C``).
    """

    kind = K.SHIFTED_RELU
    per_sample = False
    needs_sum_y = True

    def __init__(self, inverse="min-inf", eta=0.5, r=None, step_decay=None, balance_scale=None,
                 cache=None, nonnegative=False):
        self.nonnegative = nonnegative
        self.inverse = inverse
        self.eta = float(eta)
        self.r = r
        self.step_decay = step_decay
        self.balance_scale = balance_scale
        self.cache = {} if cache is None else cache
        self.t = 0

    # -- decode -------------------------------------------------------------------------------
    def _inverse64(self, C):
        cache = self.cache
        C64 = np.asarray(C, dtype=np.float64)
        hit = cache.get("D")
        if (hit is not None and cache.get("inverse") == self.inverse
                and cache["C"].shape == C64.shape and np.array_equal(cache["C"], C64)):
            return hit
        if self.inverse == "pinv":
            D = _engine.pinv_rows(C64)
        else:
            D, bases, solved = _min_inf(C64, cache.get("bases"))
            cache["bases"] = bases
            cache["programmes"] = cache.get("programmes", 0) + solved
            cache["inverses"] = cache.get("inverses", 0) + 1
        cache.update(C=C64.copy(), D=D, inverse=self.inverse)
        return D

    def decoding_matrix(self, C):
        D = self._inverse64(C)
        return np.ascontiguousarray(D, dtype=np.asarray(C).dtype)

    # -- update -------------------------------------------------------------------------------
    def step(self, t):
        """The step ``eta_t`` of update ``t`` (0-based)."""
        if self.step_decay is None:
            return self.eta
        if self.step_decay == "sqrt":
            return self.eta / np.sqrt(1.0 + t)
        return self.eta / (1.0 + t / float(self.step_decay))

    def scales(self, C, stats, M):
        """Per-component ``r`` (ndarray) and the mask of components left unchanged."""
        n = C.shape[0]
        if self.r is not None:
            return np.full(n, float(self.r)), np.zeros(n, dtype=bool)
        N = max(stats.count, 1)
        second = np.diag(stats.S_zz) / N
        var_x = second - (stats.sum_z / N) ** 2
        D = self._inverse64(C)
        g = np.einsum("if,fi->i", M, D)  # (B M^T)_ii = 2 cov(v_i, x_i)
        dead = ~((var_x > 1e-12 * second) & (g > 0) & np.isfinite(g))
        r = np.zeros(n)
        r[~dead] = 1.0 / g[~dead]
        return r, dead

    def end_stage(self, C, stats):
        C = np.asarray(C, dtype=np.float64)
        M = pair_moment(stats)
        r, dead = self.scales(C, stats, M)
        eta = self.step(self.t)
        C_new = (1.0 - eta) * C + eta * (r[:, None] * M)
        C_new[dead] = C[dead]
        if self.nonnegative:  # the projection on C >= 0 moves no farther from a non-negative A*
            np.maximum(C_new, 0.0, out=C_new)
        self.t += 1
        return C_new

    # -- checkpoints --------------------------------------------------------------------------
    def state(self):
        scale = np.zeros(0) if self.balance_scale is None else self.balance_scale
        return np.concatenate([[float(self.t)], scale])

    def set_state(self, values):
        values = np.asarray(values, dtype=np.float64)
        self.t = int(values[0])
        self.balance_scale = values[1:].copy() if values.size > 1 else None


# --------------------------------------------------------------------------------------------
# balancing (section 6, "more general proportions")
# --------------------------------------------------------------------------------------------

def balancing_scale(Y, C0, D0):
    """The diagonal ``D`` of section 6 from a block of data and the start matrix.

    The theorems need ``max_i E[x_i^2] <= 2 min_i E[x_i^2]``. Instead of ``Y = A* X`` one may
    solve ``Y = [A* D][D^-1 X]`` with a positive diagonal ``D`` that makes the second moments of
    ``D^-1 x`` comparable. ``E[x_i^2]`` is estimated from the start's decodings
    ``max(B0 y, 0)`` (ReLU without offset, so the estimate scales exactly with the columns and
    one pass suffices) and ``d_i = sqrt(m2_i / g)`` with ``g`` the geometric mean of the
    positive ``m2_i``: afterwards every estimated second moment equals ``g`` (the paper's
    factor 2 is met with room for the estimate's error) and ``prod d_i = 1``. Components never
    decoded get ``d_i = 1``. The appendix's own procedure is not in the text we have; this is
    the section's idea with the moments estimated from the warm start.

    Returns
    -------
    d : ndarray of shape (n_components,), float64
        Row ``i`` of the balanced start is ``d_i C0[i]`` (column ``i`` of ``A0 D``).
    """
    Yd = Y.toarray() if hasattr(Y, "toarray") else np.asarray(Y)
    V = np.asarray(Yd, dtype=np.float64) @ D0
    m2 = np.mean(np.maximum(V, 0.0) ** 2, axis=0)
    positive = m2 > 0
    d = np.ones(C0.shape[0])
    if positive.any():
        g = np.exp(np.mean(np.log(m2[positive])))
        d[positive] = np.sqrt(m2[positive] / g)
    return d


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------

class Purification(StreamingNMFBase):
    """Purification: alternating ReLU decoding and covariance updates with provable recovery.

    Every iteration (a stage) decodes a batch with the shifted ReLU,
    ``x = max(B y - alpha, 0)``, where ``B`` is the left inverse of ``A`` (``B A = I``) with the
    smallest ``||B||_inf``, and moves the features along the batch's pair moment:
    ``A <- (1 - eta) A + r eta E_hat[(y - y')(x - x')^T]`` (Li, Liang and Risteski, NIPS 2016,
    Algorithm 1). From a warm start it recovers ``A*`` needing only linearly independent
    features, and tolerates adversarial noise as large as the signal. The features may be
    signed; the weights are non-negative.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components (the paper's ``n``). None: ``n_features``. At most
        ``n_features`` (a left inverse must exist).
    components : {"signed", "nonnegative", "auto"}, default="signed"
        ``"signed"``: the paper's update as written. ``"nonnegative"``: every update is
        projected on ``C >= 0`` (in Frobenius norm the projection moves no farther from a
        non-negative ``A*``), for users who need non-negative parts; on the paper's data it
        recovers less well (README example: ln error -4.0 instead of -4.4), hence not the
        default. ``"auto"``: non-negative when every value of the rows the start reads is
        ``>= 0``. Kept in ``nonnegative_``.
    alpha : float, default=0.1
        The ReLU offset ``alpha`` (constant over the iterations, as in the paper), in the
        units of the codes. With the default ``r`` the codes keep the scale of ``init``.
    eta : float, default=0.5
        Step size ``eta`` in (0, 1].
    r : float or None, default=None
        The paper's scaling factor ``r``. None: per component, the scale that keeps every
        column's size steady, ``r_i = 1 / (2 cov(v_i, x_i))`` with ``v = B y`` (see
        :class:`PurificationRule`); it makes the truth a fixed point for any ``alpha``. A float:
        the paper's scalar, used as given.
    batch_size : int or None, default=None
        Samples per iteration (the paper's ``N``). None: one pass over the data per iteration
        in ``fit``; one call per iteration in ``partial_fit``.
    n_iter : int, default=100
        Most iterations ``fit`` runs (the paper's ``T``).
    inverse : {"min-inf", "pinv"}, default="min-inf"
        ``"min-inf"``: the paper's minimum-``||B||_inf`` left inverse, one basis-pursuit linear
        programme per component (HiGHS), computed once per iteration; a programme whose
        previous basis is still optimal is skipped, and with ``highspy`` installed (extra
        ``lp``) the others hot-start from it (see :func:`min_inf_inverse_rows`; the result
        does not depend on it). ``"pinv"``: the Moore-Penrose inverse
        (cheaper; measured on (A2') data with anchor words it was within 0.12 of the
        min-inf inverse under adversarial noise and markedly better under unbiased noise,
        where the min-inf rows concentrate on few features: see bench/purification.py).
    step_decay : None, float or "sqrt", default=None
        None: constant ``eta`` (the paper). A float ``t0 > 0``: ``eta_t = eta / (1 + t / t0)``,
        which averages the sampling noise of the batches away on long streams (the error
        then keeps falling as the samples seen grow instead of stalling at a floor set by
        ``batch_size``). ``"sqrt"``: ``eta_t = eta / sqrt(1 + t)``.
    balance : bool, default=False
        Section 6's preprocessing for unequal proportions: rescale the start's columns so the
        second moments of the weights agree (estimated on the leading rows), solve, and undo
        the scaling in ``components_`` and ``transform`` (see :func:`balancing_scale`).
    init : {"spa", "random"} or ndarray of shape (n_components, n_features), default="spa"
        Start matrix (the paper's ``A(0)`` transposed); the theory needs a warm start.
    tol : float or None, default=None
        Stop when the relative change of the components over an iteration is at most ``tol``.
        None: ``10 * eps`` of the dtype.
    n_iter_no_change : int or None, default=10
        Stop when the change has not reached a new minimum for this many iterations. None:
        never.
    random_state : int, Generator or None, default=None
        Seeds the init.
    callback : callable or None, default=None
        ``callback(estimator, row)`` after every iteration, with ``estimator.components_`` a
        copy of the working matrix; return True to stop.
    verbose : int, default=0
        Print one line per iteration.
    checkpoint : str, PathLike or None, default=None
        File for the state of the fit, written at every iteration's end and every
        ``checkpoint_every``; ``fit(X, resume=True)`` continues from it (see
        :class:`~streamnmf.AND`). The iteration counter of ``step_decay`` and the balancing
        scale are part of the state.
    checkpoint_every : float or int, default=60.0
        A float: seconds between checkpoints within an iteration; an int: samples.
    client : dask.distributed.Client or None, default=None
        Run every iteration as one map-reduce on a Dask cluster (docs/distributed.md).
    blas_threads : "auto", int or None, default="auto"
        BLAS threads of the fit's products. ``"auto"``: as many as the cores that other
        processes leave free, re-decided every half second (all of them on an idle machine;
        spinning BLAS threads on busy cores slow a fit several-fold); an int: that many (fix it
        where two runs must agree bit for bit, a product split over fewer threads rounds
        differently); None: leave the BLAS library as configured.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned features as rows (the paper's ``A`` transposed); recovery is up to the
        scale of every row.
    alpha_ : float
    n_stages_ : int
        Iterations run.
    n_features_in_ : int
    history_ : dict of ndarray
        Per iteration, as in :class:`~streamnmf.AND`.
    balance_scale_ : ndarray of shape (n_components,)
        The balancing ``D`` (ones without ``balance``).

    Notes
    -----
    Paper to API: ``y`` is a row of X, ``A`` is ``components_.T``, ``x`` is a row of
    ``transform(X)``, ``A^dagger`` is ``_D.T``, an iteration ``t`` is a stage.

    The update moves along sample cross-covariances; those of independent weights are zero
    only in expectation, so with ``N`` samples per iteration and a constant step the iterates
    fluctuate around the truth: measured on (A2') binary weights, the total correlation error
    levels off near ``c n^2 eta / ((2 - eta) N)`` with ``c`` about 0.4 depending on ``A*``
    (ln -4.3 on a uniform random ``A*`` and -3.6 on topic components for ``n = 30``, ``N = 32000``,
    ``eta = 1``). Iterating ``fit`` over one fixed data set converges to that data set's fixed
    point, not to ``A*``. On a stream, ``step_decay`` averages the batches and the error keeps
    falling like ``1 / samples seen``, whatever the batch size.
    """

    def __init__(self, n_components=None, *, components="signed", alpha=0.1, eta=0.5, r=None,
                 batch_size=None,
                 n_iter=100, inverse="min-inf", step_decay=None, balance=False, init="spa",
                 tol=None, n_iter_no_change=10, random_state=None, callback=None, verbose=0,
                 checkpoint=None, checkpoint_every=60.0, client=None,
                 blas_threads="auto"):
        self.n_components = n_components
        self.components = components
        self.alpha = alpha
        self.eta = eta
        self.r = r
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.inverse = inverse
        self.step_decay = step_decay
        self.balance = balance
        self.init = init
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.callback = callback
        self.verbose = verbose
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.client = client
        self.blas_threads = blas_threads

    # -- hooks --------------------------------------------------------------------------------
    def _validate_algorithm_params(self):
        if self.components not in COMPONENTS:
            raise ValueError(
                f"components={self.components!r} is not supported; expected one of "
                f"{COMPONENTS}."
            )
        _check_number("alpha", self.alpha, low=0)
        _check_number("eta", self.eta, low=0, high=1, low_open=True)
        _check_number("r", self.r, low=0, low_open=True, allow_none=True)
        _check_number("batch_size", self.batch_size, low=1, integer=True, allow_none=True)
        _check_number("n_iter", self.n_iter, low=1, integer=True)
        if not isinstance(self.inverse, str) or self.inverse not in INVERSES:
            raise ValueError(
                f"inverse={self.inverse!r} is not supported; expected one of {INVERSES}."
            )
        decay = self.step_decay
        if isinstance(decay, str):
            if decay not in STEP_DECAYS:
                raise ValueError(
                    f"step_decay={decay!r} is not supported; expected None, a number t0 > 0 "
                    "(eta / (1 + t / t0)) or 'sqrt' (eta / sqrt(1 + t))."
                )
        elif decay is not None:
            _check_number("step_decay", decay, low=0, low_open=True)
        if not isinstance(self.balance, (bool, np.bool_)):
            raise ValueError(f"balance must be True or False, got {self.balance!r}.")
        _check_number("verbose", self.verbose, low=0, integer=True)

    def _loop_settings(self):
        return dict(
            thresholds=float(self.alpha), n_stages=self.n_iter, stage_length=self.batch_size,
            batch_size=1, sgd_eta=None,
        )

    def _cache(self):
        cache = self.__dict__.get("_inverse_cache")
        if cache is None:
            cache = self._inverse_cache = {}
        return cache

    def _make_rule(self):
        return PurificationRule(
            inverse=self.inverse, eta=self.eta, r=self.r, step_decay=self.step_decay,
            balance_scale=self.__dict__.get("_balance_start"), cache=self._cache(),
            nonnegative=bool(self.__dict__.get("nonnegative_",
                                               self.components == "nonnegative")),
        )

    def _initial_components(self, leading, n_features, dtype, rng):
        C0 = super()._initial_components(leading, n_features, dtype, rng)
        self._balance_start = None
        if not self.balance:
            return C0
        rule = PurificationRule(inverse=self.inverse, cache=self._cache())
        D0 = rule._inverse64(C0)
        d = balancing_scale(leading, C0, D0)
        self._balance_start = d
        C_bal = np.array(C0 * d[:, None].astype(C0.dtype), order="C")
        # The inverse commutes with the scaling of the rows (each row's programme scales):
        # seed the cache so the balanced start needs no second round of programmes.
        cache = self._cache()
        cache.update(C=C_bal.astype(np.float64), D=D0 / d[None, :], inverse=self.inverse)
        return C_bal

    def _finish(self):
        super()._finish()
        d = self._loop.rule.balance_scale
        self._balanced = d is not None
        if d is None:
            self.balance_scale_ = np.ones(self.components_.shape[0])
            return
        # Undo the balancing: the loop solved for A* D, report A* (the decoding matrix stays
        # the balanced one; transform multiplies the codes back by d).
        self.balance_scale_ = np.asarray(d, dtype=np.float64).copy()
        self.components_ = self.components_ / d[:, None].astype(self.components_.dtype)

    def transform(self, X):
        """Decode X: ``x = max(B y - alpha, 0)`` with the fitted components.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            The weights (the paper's ``x``), same dtype as X. With ``balance=True`` they are
            the balanced problem's codes times ``balance_scale_``.
        """
        Z = super().transform(X)
        if self._balanced:
            Z *= self.balance_scale_.astype(Z.dtype)[None, :]
        return Z
