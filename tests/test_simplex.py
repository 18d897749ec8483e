"""The built-in dual simplex of the min-inf inverse against its references: scipy's HiGHS
(``linprog``) for the programmes' optima, NumPy for the basis algebra."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linprog

from streamnmf import _lp
from streamnmf import _simplex as X
from streamnmf._lp import _min_inf, min_inf_inverse_rows
from streamnmf._simplex import dual_simplex_rows


def unit_rows(C):
    return np.ascontiguousarray(C / np.linalg.norm(C, axis=1)[:, None])


def linprog_value(Cn, i):
    """The optimum of ``min ||b||_1 s.t. Cn b = e_i`` by HiGHS (the reference)."""
    n, m = Cn.shape
    e = np.zeros(n)
    e[i] = 1.0
    res = linprog(np.ones(2 * m), A_eq=np.hstack([Cn, -Cn]), b_eq=e, method="highs-ds")
    assert res.status == 0
    return res.fun


def rows_of(S, b_S, m):
    B = np.zeros((S.shape[0], m))
    B[np.arange(S.shape[0])[:, None], S] = b_S
    return B


MATRICES = {
    "gaussian 20x90": lambda rng: rng.standard_normal((20, 90)),
    "non-negative 30x200": lambda rng: rng.random((30, 200)) ** 3,
    "one component": lambda rng: rng.random((1, 7)),
    "almost square 12x13": lambda rng: rng.standard_normal((12, 13)),
    "sparse non-negative 15x80": lambda rng: rng.random((15, 80)) * (rng.random((15, 80)) < 0.3)
    + 0.01 * np.eye(15, 80),
}


@pytest.mark.parametrize("kind", sorted(MATRICES))
def test_every_row_is_optimal_and_exact(kind):
    rng = np.random.default_rng(0)
    Cn = unit_rows(MATRICES[kind](rng))
    n, m = Cn.shape
    S, sigma, b_S, ok, stats = dual_simplex_rows(Cn)
    assert ok.all()
    B = rows_of(S, b_S, m)
    np.testing.assert_allclose(Cn @ B.T, np.eye(n), atol=1e-10)
    # the basis' signs are the solution's (primal feasibility of the split b = p - q)
    assert np.all(sigma * b_S >= -1e-12)
    for i in range(n):
        np.testing.assert_allclose(np.abs(B[i]).sum(), linprog_value(Cn, i), rtol=1e-9)
    # the dual certificate: u = C_S^-T sigma with |C^T u| <= 1 and u_i = ||b||_1
    for i in range(n):
        u = np.linalg.solve(Cn[:, S[i]].T, sigma[i])
        assert np.abs(Cn.T @ u).max() <= 1 + 1e-9
        np.testing.assert_allclose(u[i], np.abs(B[i]).sum(), rtol=1e-9)


def test_the_inverse_equals_the_highs_one_bit_for_bit():
    # every solver polishes on the support of the optimal vertex: unique optimum, same bits
    rng = np.random.default_rng(1)
    C = rng.random((25, 150))
    np.testing.assert_array_equal(min_inf_inverse_rows(C, solver="simplex"),
                                  min_inf_inverse_rows(C, solver="scipy"))


def test_ties_give_an_optimal_row():
    # two identical features: the optimum is not unique, any optimal row will do
    rng = np.random.default_rng(2)
    C = rng.random((6, 30))
    C[:, 7] = C[:, 3]
    D = min_inf_inverse_rows(C, solver="simplex")
    np.testing.assert_allclose(C @ D, np.eye(6), atol=1e-10)
    np.testing.assert_allclose(np.abs(D).sum(0), np.abs(min_inf_inverse_rows(C, solver="scipy"))
                               .sum(0), rtol=1e-9)


def test_restart_from_optimal_bases_needs_no_pivot():
    rng = np.random.default_rng(3)
    Cn = unit_rows(rng.random((10, 60)))
    S, sigma, b_S, ok, stats = dual_simplex_rows(Cn)
    assert not stats["warm"].any() and ok.all()
    hints = [(S[i], sigma[i]) for i in range(10)]
    S2, _, b_S2, ok2, stats2 = dual_simplex_rows(Cn, hints=hints)
    assert stats2["warm"].all() and ok2.all() and not stats2["iterations"].any()
    np.testing.assert_array_equal(S2, S)
    np.testing.assert_allclose(b_S2, b_S, rtol=1e-10, atol=1e-13)


def test_stale_and_foreign_bases_still_give_the_optimum():
    rng = np.random.default_rng(4)
    C = rng.random((10, 60))
    S, sigma, _, _, _ = dual_simplex_rows(unit_rows(C))
    hints = [(S[i], sigma[i]) for i in range(10)]
    for C2 in (C + 0.02 * rng.standard_normal(C.shape), rng.random((10, 60))):
        Cn2 = unit_rows(C2)
        S2, _, b_S2, ok, stats = dual_simplex_rows(Cn2, hints=hints)
        assert ok.all()
        B = rows_of(S2, b_S2, 60)
        np.testing.assert_allclose(Cn2 @ B.T, np.eye(10), atol=1e-10)
        for i in range(10):
            np.testing.assert_allclose(np.abs(B[i]).sum(), linprog_value(Cn2, i), rtol=1e-9)


def test_malformed_hints_are_ignored():
    rng = np.random.default_rng(5)
    Cn = unit_rows(rng.random((6, 40)))
    hints = [None, (np.arange(5), np.ones(5)), (np.arange(6) + 100, np.ones(6)),
             (np.zeros(6, int), np.ones(6)),  # a singular basis: six copies of one feature
             (np.arange(6), np.ones(6)), None]
    S, _, b_S, ok, stats = dual_simplex_rows(Cn, hints=hints)
    assert ok.all() and not stats["warm"][[0, 1, 2, 3, 5]].any()
    B = rows_of(S, b_S, 40)
    np.testing.assert_allclose(Cn @ B.T, np.eye(6), atol=1e-10)


def test_unfinished_rows_fall_back_to_highs(monkeypatch):
    rng = np.random.default_rng(6)
    C = rng.random((8, 50))
    expected = min_inf_inverse_rows(C, solver="scipy")
    real = _lp.dual_simplex_rows
    monkeypatch.setattr(_lp, "dual_simplex_rows",
                        lambda Cn, **kw: real(Cn, **dict(kw, max_iter=0)))
    _, ok, *_ = real(unit_rows(C), max_iter=0)[2:]
    assert not ok.all()  # the crash alone does not finish these programmes
    D, bases, solved = _min_inf(C, solver="simplex")
    np.testing.assert_array_equal(D, expected)
    assert solved == 8 and all(b is not None for b in bases)


def test_the_duals_are_feasible_vertices_with_the_primal_objective():
    rng = np.random.default_rng(13)
    Cn = unit_rows(rng.random((9, 80)))
    S, sigma, b_S, ok, stats = dual_simplex_rows(Cn)
    assert ok.all()
    for i in range(9):
        u = stats["duals"][i]
        np.testing.assert_allclose(Cn[:, S[i]].T @ u, sigma[i], atol=1e-12)  # on the basis
        assert np.abs(Cn.T @ u).max() <= 1 + 1e-9                           # dual feasible
        assert u[i] == pytest.approx(np.abs(b_S[i]).sum(), rel=1e-12)        # strong duality


def test_the_polish_gives_the_same_bits_on_any_number_of_threads(monkeypatch):
    rng = np.random.default_rng(14)
    Cn = unit_rows(rng.random((40, 200)))
    S, sigma, b_S, ok, _ = dual_simplex_rows(Cn)
    B = np.zeros((40, 200))
    B[np.arange(40)[:, None], S] = b_S
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(_lp, "_polish_threads", lambda count, n, t=threads: t)
        results.append(_lp._polish_rows(Cn, B, np.arange(40))[0])
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(Cn @ results[0].T, np.eye(40), atol=1e-12)


def _spy_on_simplex(monkeypatch):
    """Record the feature count of every call of the built-in simplex."""
    real, widths = _lp.dual_simplex_rows, []

    def spy(Cn, **kw):
        widths.append(Cn.shape[1])
        return real(Cn, **kw)

    monkeypatch.setattr(_lp, "dual_simplex_rows", spy)
    return widths


def test_a_call_after_a_stage_solves_on_the_previous_supports_and_equals_the_full_solve(
        monkeypatch):
    # a stage moves the components a little: the rows are solved on the union of the
    # previous supports, certified on every feature, and polish to the full solve's bits
    rng = np.random.default_rng(11)
    C0 = rng.random((12, 300))
    C1 = C0 * (1 + 0.05 * rng.uniform(-1, 1, C0.shape))
    _, bases, _ = _min_inf(C0, solver="simplex")
    union = np.unique(np.concatenate([b[0] for b in bases]))
    assert union.size <= _lp.RESTRICT_MAX_SHARE * C0.shape[1]
    widths = _spy_on_simplex(monkeypatch)
    D, _, _ = _min_inf(C1, bases, solver="simplex")
    assert widths[0] == union.size  # the first round ran on the previous supports
    np.testing.assert_array_equal(D, _min_inf(C1, solver="scipy")[0])
    np.testing.assert_array_equal(D, min_inf_inverse_rows(C1, solver="simplex"))


def test_rows_the_previous_supports_cannot_serve_are_solved_on_every_feature(monkeypatch):
    # bases of an unrelated matrix: their supports miss most rows' optimal features, the
    # certificate refuses those rows, the added features or the full solve give the optimum
    rng = np.random.default_rng(12)
    C = rng.random((10, 400))
    _, unrelated, _ = _min_inf(rng.random((10, 400)), solver="simplex")
    widths = _spy_on_simplex(monkeypatch)
    D, bases, solved = _min_inf(C, unrelated, solver="simplex")
    assert len(widths) >= 2 and widths[0] < 400
    np.testing.assert_array_equal(D, _min_inf(C, solver="scipy")[0])
    assert solved == 10 and all(b is not None for b in bases)


def test_a_rank_deficient_matrix_raises_for_the_infeasible_row():
    rng = np.random.default_rng(7)
    C = rng.random((5, 30))
    C[3] = C[1] + 0.5 * C[2]
    with pytest.raises(_lp.InverseError, match=r"row 1 of B .*rank 4 < 5"):
        min_inf_inverse_rows(C, solver="simplex")


# -- the basis algebra against NumPy --------------------------------------------------------------

def test_invert_against_numpy():
    rng = np.random.default_rng(8)
    for n in (1, 2, 7, 40):
        A = rng.standard_normal((n, n))
        out = A.copy()
        assert X._invert(out)
        np.testing.assert_allclose(out, np.linalg.inv(A), rtol=1e-9, atol=1e-10)
    # a zero pivot needs the row swap
    A = np.array([[0.0, 1.0], [1.0, 0.0]])
    out = A.copy()
    assert X._invert(out)
    np.testing.assert_array_equal(out, A)
    for singular in (np.zeros((3, 3)), np.ones((3, 3)), np.full((2, 2), np.nan)):
        assert not X._invert(singular.copy())


def test_refactor_against_numpy():
    rng = np.random.default_rng(9)
    Cn = unit_rows(rng.standard_normal((6, 20)))
    CT = np.ascontiguousarray(Cn.T)
    S = rng.choice(20, 6, replace=False).astype(np.int64)
    sigma = rng.choice([-1.0, 1.0], 6)
    Binv, u, t = np.empty((6, 6)), np.empty(6), np.empty(20)
    assert X._refactor(CT, S, sigma, Binv, u, t)
    ref = np.linalg.inv(Cn[:, S])
    np.testing.assert_allclose(Binv, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(u, ref.T @ sigma, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t, Cn.T @ (ref.T @ sigma), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t[S], sigma, atol=1e-12)
    S[1] = S[0]
    assert not X._refactor(CT, S, sigma, Binv, u, t)


def test_warmup_compiles_the_simplex():
    # in a fresh process; the entry points (the helpers are compiled into them)
    script = (
        "import streamnmf\n"
        "from streamnmf import _simplex as X\n"
        "streamnmf.warmup(dtypes=('float64',))\n"
        "print([n for n in ('_start', '_solve') if not getattr(X, n).signatures])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[-1] == "[]"
