"""Purification: the min-inf inverse, the decode, the pair identity, recovery and the API."""

import itertools
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

import streamnmf
from streamnmf import _engine
from streamnmf import _kernels as K
from streamnmf import _lp
from streamnmf._purification import (
    InverseError,
    Purification,
    PurificationRule,
    _min_inf,
    balancing_scale,
    min_inf_inverse_rows,
    pair_moment,
)
from streamnmf.metrics import log_total_correlation_error

import naive


# -- data --------------------------------

def truth(m, n, rng):
    """``A*`` (m x n) with non-negative entries and unit l1 columns, as rows (n x m)."""
    A = rng.random((m, n))
    return (A / A.sum(axis=0)).T.copy()


def binary_weights(N, n, s, rng):
    """(A2'): independent ``x_i = 1`` with probability ``s / n``."""
    return (rng.random((N, n)) < s / n).astype(np.float64)


def product_design(n, q):
    """Every binary pattern, the one with k ones repeated ``(q-1)^(n-k)`` times.

    The rows are exactly the distribution of independent ``x_i`` with ``P(x_i = 1) = 1/q``:
    the empirical cross-covariances are exactly zero (an exact "population" batch).
    """
    rows = [p for p in itertools.product((0, 1), repeat=n) for _ in range((q - 1) ** (n - sum(p)))]
    return np.array(rows, dtype=np.float64)


def warm_start(C_true, ell, rng):
    """(A3) with ``N(0) = 0``: ``A0 = A* (I + E)``, E off-diagonal with ``||E||_s = ell``."""
    n = C_true.shape[0]
    E = rng.uniform(-1, 1, (n, n))
    np.fill_diagonal(E, 0)
    E *= ell / max(np.abs(E).sum(axis=0).max(), np.abs(E).sum(axis=1).max())
    return ((np.eye(n) + E).T @ C_true).copy()  # rows of A*(I + E)


# -- the decoding inverse ------------------------------------------------------------------------

@pytest.fixture(params=["simplex", "scipy", "highspy"])
def lp_solver(request):
    """Run a test with each LP solver: the built-in simplex and scipy's linprog always,
    highspy where installed."""
    if request.param == "highspy":
        pytest.importorskip("highspy")
    with streamnmf.config_context(lp_solver=request.param):
        yield request.param


def drifting_components(n, m, steps, size, rng):
    """``steps`` + 1 component matrices, each a relative ``size`` away from the last."""
    C = rng.random((n, m))
    out = [C]
    for _ in range(steps):
        step = rng.standard_normal((n, m))
        out.append(out[-1] + size * np.linalg.norm(out[-1]) / np.linalg.norm(step) * step)
    return out


@pytest.mark.usefixtures("lp_solver")
@pytest.mark.parametrize("shape", [(6, 20), (12, 40), (5, 5)])
def test_min_inf_inverse_is_a_left_inverse_no_larger_than_pinv(shape):
    rng = np.random.default_rng(1)
    C = rng.standard_normal(shape)
    D = min_inf_inverse_rows(C)
    assert D.shape == shape[::-1]
    np.testing.assert_allclose(C @ D, np.eye(shape[0]), atol=1e-9)
    inf_norm = np.abs(D).sum(axis=0).max()  # ||B||_inf, B = D.T
    assert inf_norm <= np.abs(_engine.pinv_rows(C)).sum(axis=0).max() * (1 + 1e-9)


@pytest.mark.usefixtures("lp_solver")
def test_min_inf_inverse_is_optimal_by_the_dual_reference():
    rng = np.random.default_rng(2)
    C = rng.random((7, 30))
    D = min_inf_inverse_rows(C)
    _, values = naive.min_inf_left_inverse(C.T)  # the dual programmes: max u_i, |A u| <= 1
    np.testing.assert_allclose(np.abs(D).sum(axis=0), values, rtol=1e-9)
    # and strictly better than the Moore-Penrose inverse on non-negative data
    assert np.abs(D).sum(axis=0).max() < np.abs(np.linalg.pinv(C)).sum(axis=0).max()


@pytest.mark.usefixtures("lp_solver")
def test_min_inf_inverse_of_a_square_matrix_is_its_inverse():
    rng = np.random.default_rng(3)
    C = rng.random((8, 8)) + np.eye(8)
    np.testing.assert_allclose(min_inf_inverse_rows(C), np.linalg.inv(C), rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("lp_solver")
def test_min_inf_inverse_scales_with_the_rows():
    # used by balance=True: scaling component i by d_i scales column i of D by 1 / d_i
    rng = np.random.default_rng(4)
    C = rng.random((5, 25))
    d = rng.uniform(0.2, 5, 5)
    np.testing.assert_allclose(min_inf_inverse_rows(d[:, None] * C),
                               min_inf_inverse_rows(C) / d, rtol=1e-8, atol=1e-12)


@pytest.mark.usefixtures("lp_solver")
def test_reused_bases_are_certified_or_replaced():
    rng = np.random.default_rng(5)
    C = rng.random((10, 60))
    D, bases, solved = _min_inf(C)
    assert solved == 10
    C2 = C + 1e-6 * rng.standard_normal(C.shape)  # a small step: the bases stay optimal
    D2, _, solved2 = _min_inf(C2, bases)
    fresh = min_inf_inverse_rows(C2)
    assert solved2 < 10
    np.testing.assert_allclose(C2 @ D2, np.eye(10), atol=1e-12)
    np.testing.assert_allclose(np.abs(D2).sum(0), np.abs(fresh).sum(0), rtol=1e-9)
    # wrong hints (another matrix's bases) are rejected or still optimal, never wrong
    C3 = rng.random((10, 60))
    D3, _, _ = _min_inf(C3, bases)
    np.testing.assert_allclose(C3 @ D3, np.eye(10), atol=1e-9)
    np.testing.assert_allclose(np.abs(D3).sum(0), np.abs(min_inf_inverse_rows(C3)).sum(0),
                               rtol=1e-9)


@pytest.mark.usefixtures("lp_solver")
def test_failed_programme_names_the_row_and_the_fix():
    rng = np.random.default_rng(6)
    C = rng.random((5, 30))
    C[3] = C[1] + 0.5 * C[2]  # rank 4: no left inverse
    with pytest.raises(InverseError, match=r"row 1 of B .* status 2.*infeasible.*rank 4 < 5.*"
                                           r"inverse='pinv'"):
        min_inf_inverse_rows(C)
    with pytest.raises(ValueError, match="rank"):  # InverseError is a ValueError
        min_inf_inverse_rows(C)


@pytest.mark.usefixtures("lp_solver")
def test_warm_started_inverse_equals_the_cold_scipy_one():
    pytest.importorskip("highspy")
    rng = np.random.default_rng(20)
    n, m = 12, 60
    # stages of a slowly changing C: tiny steps (the bases stay optimal: certified), then
    # steps large enough that the hot-started dual simplex has to pivot
    Cs = drifting_components(n, m, 3, 1e-7, rng)
    Cs += drifting_components(n, m, 5, 0.02, np.random.default_rng(21))
    start, kinds, iterations = None, set(), 0
    for k, C in enumerate(Cs):
        D, start, _ = _min_inf(C, start, solver="highspy")
        kinds.update(start.stats["how"])
        if k > 0:
            iterations += sum(start.stats["iterations"])
        cold, _, solved = _min_inf(C, None, solver="scipy")
        assert solved == n
        np.testing.assert_allclose(np.abs(D).sum(axis=0), np.abs(cold).sum(axis=0), rtol=1e-9)
        np.testing.assert_allclose(C @ D, np.eye(n), atol=1e-9)
        # unique optima here: the same vertex, polished by the same solve, bit for bit
        np.testing.assert_array_equal(D, cold)
    assert {"cold", "certified", "warm"} <= kinds, kinds
    assert iterations > 0
    # the state only speeds things up: a copy (pickle, checkpoint-less resume) starts cold
    copy = pickle.loads(pickle.dumps(start))
    assert copy.shape is None and copy.highs is None
    D2, copy, _ = _min_inf(Cs[-1], copy, solver="highspy")
    assert set(copy.stats["how"]) == {"cold"}
    np.testing.assert_array_equal(D2, D)


def test_tied_optima_may_differ_in_vertex_never_in_value():
    # identical features make the optimum non-unique: a warm start may end at another optimal
    # vertex than a cold solve (measured with highspy 1.16: 2 of these 12 draws), never at a
    # worse one
    pytest.importorskip("highspy")
    rng = np.random.default_rng(0)
    for _ in range(12):
        C = rng.random((6, 30))
        C2 = C + 0.02 * C.mean() * rng.standard_normal(C.shape)
        for M in (C, C2):
            M[:, 1], M[:, 5], M[:, 7] = M[:, 0], M[:, 4], M[:, 6]
        _, start, _ = _min_inf(C, solver="highspy")
        D, start, _ = _min_inf(C2, start, solver="highspy")
        cold = _min_inf(C2, solver="scipy")[0]
        np.testing.assert_allclose(np.abs(D).sum(axis=0), np.abs(cold).sum(axis=0), rtol=1e-9)
        np.testing.assert_allclose(C2 @ D, np.eye(6), atol=1e-9)


def test_highspy_warm_start_of_a_new_shape_or_foreign_bases():
    pytest.importorskip("highspy")
    rng = np.random.default_rng(22)
    C = rng.random((8, 40))
    _, start, _ = _min_inf(C, solver="highspy")
    other = rng.random((5, 30))  # another shape: the state is reset, not misused
    D, start, solved = _min_inf(other, start, solver="highspy")
    assert solved == 5 and start.shape == (5, 30)
    np.testing.assert_array_equal(D, _min_inf(other, solver="scipy")[0])
    # the scipy path's (S, sigma) bases serve the highspy path as certificates and back
    _, bases, _ = _min_inf(C, solver="scipy")
    D, start, solved = _min_inf(C, bases, solver="highspy")
    assert solved == 0 and set(start.stats["how"]) == {"certified"}
    D_back, _, solved = _min_inf(C, start, solver="scipy")
    assert solved == 0
    np.testing.assert_allclose(D_back, D, rtol=1e-9, atol=1e-12)


def test_highspy_failed_programme_after_a_warm_start_raises():
    pytest.importorskip("highspy")
    rng = np.random.default_rng(6)
    C = rng.random((5, 30))
    _, start, _ = _min_inf(C, solver="highspy")
    bad = C.copy()
    bad[3] = bad[1] + 0.5 * bad[2]  # rank 4: the warm-started programme and its retry fail
    with pytest.raises(InverseError, match=r"row 1 of B .* status 2.*infeasible.*rank 4 < 5.*"
                                           r"inverse='pinv'"):
        _min_inf(bad, start, solver="highspy")
    # the state survives a failure: the next valid C is solved (and equals the cold one)
    D, start, _ = _min_inf(C, start, solver="highspy")
    np.testing.assert_array_equal(D, _min_inf(C, solver="scipy")[0])


def test_lp_solver_switch(monkeypatch):
    C = np.random.default_rng(23).random((4, 12))
    with pytest.raises(ValueError, match="LP solver 'glpk' is not supported"):
        _min_inf(C, solver="glpk")
    monkeypatch.setattr(_lp, "highspy", None)  # as if it were not installed
    _, bases, _ = _min_inf(C)  # "auto" is the built-in simplex: its bases are a list
    assert isinstance(bases, list)
    with pytest.raises(ImportError, match=r"pip install highspy \(or streamnmf\[lp\]\)"):
        _min_inf(C, solver="highspy")


def test_fits_with_and_without_highspy_agree():
    pytest.importorskip("highspy")
    rng = np.random.default_rng(24)
    C_true = truth(40, 8, rng)
    Y = binary_weights(3000, 8, 2, rng) @ C_true
    kw = dict(init=warm_start(C_true, 0.2, rng), stage_length=500, n_stages=8,
              n_iter_no_change=None)
    fits = {}
    for solver in ("scipy", "highspy"):
        with streamnmf.config_context(lp_solver=solver):
            fits[solver] = Purification(8, **kw).fit(Y)
    assert fits["highspy"]._inverse_cache["bases"].stats is not None  # the warm path ran
    np.testing.assert_allclose(fits["highspy"].components_, fits["scipy"].components_,
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fits["highspy"]._D, fits["scipy"]._D, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("C, match", [
    (np.ones((4, 3)), "4 components in 3 features"),
    (np.vstack([np.ones(5), np.zeros(5)]), "component 1 is all zeros"),
    (np.array([[1.0, np.nan, 0.0]]), "NaN or infinity"),
    (np.array([[1.0, 2.0], [2.0, 4.0]]), "singular"),
])
def test_impossible_inverses_raise(C, match):
    with pytest.raises(InverseError, match=match):
        min_inf_inverse_rows(C)


@pytest.mark.usefixtures("lp_solver")
def test_estimator_reports_a_rank_deficient_start():
    rng = np.random.default_rng(7)
    Y = rng.random((50, 20))
    init = rng.random((4, 20))
    init[2] = init[0]
    with pytest.raises(InverseError, match=r"row 0 of B .* status 2"):
        Purification(4, init=init).fit(Y)
    Purification(4, init=init, inverse="pinv", n_stages=2).fit(Y)  # pinv does not fail


# -- decode and update ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transform_is_the_shifted_relu_of_the_min_inf_inverse(dtype):
    rng = np.random.default_rng(8)
    C = truth(30, 6, rng)
    Y = (binary_weights(200, 6, 2, rng) @ C).astype(dtype)
    est = Purification(6, thresholds=0.15, init=C, n_stages=2).fit(Y)
    D = min_inf_inverse_rows(est.components_.astype(np.float64))
    expected = naive.decode(Y.astype(np.float64), D, 0.15, 1)  # max(Y @ D - alpha, 0)
    Z = est.transform(Y)
    assert Z.dtype == dtype
    np.testing.assert_allclose(Z, expected, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    # the engine's kernel itself
    Z2 = _engine.decode(Y, D.astype(dtype), 0.15, K.SHIFTED_RELU)[0]
    np.testing.assert_allclose(Z2, expected, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_pair_moment_is_the_average_over_all_ordered_pairs(layout):
    rng = np.random.default_rng(9)
    Y = rng.standard_normal((9, 7))
    D = rng.standard_normal((7, 3))
    Yin = sp.csr_matrix(Y) if layout == "csr" else Y
    stats = _engine.block_stats(Yin, D, 0.2, K.SHIFTED_RELU, with_sum_y=True)
    X = naive.decode(Y, D, 0.2, 1)
    explicit = naive.pair_average(Y, X)  # (1/N^2) sum_{j,k} (y_j - y_k)(x_j - x_k)^T
    M = pair_moment(stats)
    np.testing.assert_allclose(M.T, explicit, rtol=1e-12, atol=1e-13)
    # the pairs j == k contribute nothing: over the N(N-1) pairs j != k it is N/(N-1) times
    N = Y.shape[0]
    no_diagonal = explicit * N**2 / (N * (N - 1))
    np.testing.assert_allclose(M.T * N / (N - 1), no_diagonal, rtol=1e-12, atol=1e-13)
    # and it is twice the biased cross-covariance
    np.testing.assert_allclose(M, 2 * (X - X.mean(0)).T @ (Y - Y.mean(0)) / N, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3])
def test_truth_is_a_fixed_point_of_the_update(alpha):
    # An exact population batch: the cross-covariances of independent weights vanish exactly.
    rng = np.random.default_rng(10)
    X = product_design(5, 3)
    C = truth(20, 5, rng)
    Y = X @ C
    rule = PurificationRule(eta=0.7)
    stats = _engine.block_stats(Y, rule.decoding_matrix(C), alpha, rule.kind, with_sum_y=True)
    np.testing.assert_allclose(rule.end_stage(C, stats), C, rtol=1e-12, atol=1e-14)
    # with the paper's scalar r the truth stays the truth up to the scale of the columns
    rule = PurificationRule(eta=0.7, r=2.0)
    C_new = rule.end_stage(C, stats)
    assert log_total_correlation_error(C_new, C) < -60


def test_one_iteration_matches_the_literal_algorithm():
    rng = np.random.default_rng(11)
    C_true = truth(15, 4, rng)
    C0 = warm_start(C_true, 0.2, rng)
    batches = [binary_weights(40, 4, 1.5, rng) @ C_true for _ in range(3)]
    for r, inverse in [(None, "min-inf"), (1.5, "min-inf"), (None, "pinv")]:
        est = Purification(4, thresholds=0.1, learning_rate=0.6, r=r, inverse=inverse, init=C0)
        for Yb in batches:
            est.partial_fit(Yb)
        expected = naive.purification_algorithm1(batches, C0.T, 0.1, 0.6, r=r, inverse=inverse)
        np.testing.assert_allclose(est.components_, expected, rtol=1e-8, atol=1e-10)


def test_step_decay_and_rule_state():
    rule = PurificationRule(eta=0.8, step_decay=4.0)
    assert [rule.step(t) for t in (0, 4, 12)] == pytest.approx([0.8, 0.4, 0.2])
    assert PurificationRule(eta=0.8, step_decay="sqrt").step(3) == pytest.approx(0.4)
    assert PurificationRule(eta=0.8).step(100) == 0.8
    rule.t = 7
    rule.balance_scale = np.array([1.0, 2.0])
    other = PurificationRule()
    other.set_state(rule.state())
    assert other.t == 7
    np.testing.assert_array_equal(other.balance_scale, [1.0, 2.0])
    assert PurificationRule().state().tolist() == [0.0]


# -- recovery ------------------------------------------------------------------------------------

def test_exact_population_converges_to_round_off():
    rng = np.random.default_rng(12)
    C_true = truth(30, 6, rng)
    Y = product_design(6, 3) @ C_true
    C0 = warm_start(C_true, 0.3, rng)
    est = Purification(6, thresholds=0.1, learning_rate=1.0, init=C0, n_stages=30,
                       n_iter_no_change=None)
    est.fit(Y)
    assert log_total_correlation_error(C0, C_true) > -5
    assert log_total_correlation_error(est.components_, C_true) < -40


def test_recovery_from_the_papers_warm_start_on_a2_prime():
    # (A2') m=60, n=15, s=2, exact data, (A3) with l = 1/10, fresh batches; the decaying step
    # averages the batches' sampling noise so the error keeps falling with the samples seen.
    rng = np.random.default_rng(13)
    m, n, s = 60, 15, 2
    C_true = truth(m, n, rng)
    C0 = warm_start(C_true, 0.1, rng)
    start = log_total_correlation_error(C0, C_true)
    est = Purification(n, thresholds=0.1, learning_rate=1.0, step_decay=2.0, init=C0)
    errors = []
    for _ in range(24):
        est.partial_fit(binary_weights(10000, n, s, rng) @ C_true)
        errors.append(log_total_correlation_error(est.components_, C_true))
    # measured: start -5.6, after 240k samples about -8.2 (the error falls like 1 / samples)
    assert errors[-1] < start - 2.0, (start, errors)
    assert errors[-1] < errors[5] - 1.0, errors
    # the columns keep their size (default r): the codes of a pure sample stay near 1 - alpha
    Z = est.transform(C_true)
    np.testing.assert_allclose(np.diag(Z), 0.9, atol=0.05)


def test_balance_recovers_unequal_proportions():
    rng = np.random.default_rng(14)
    m, n = 40, 6
    C_true = truth(m, n, rng)
    p = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])  # E[x_i^2] spans a factor 10
    C0 = warm_start(C_true, 0.1, rng)
    Y = (rng.random((20000, n)) < p).astype(float) @ C_true
    d = balancing_scale(Y[:5000], C0, min_inf_inverse_rows(C0))
    assert np.prod(d) == pytest.approx(1.0)
    np.testing.assert_allclose(d**2 / (p / np.exp(np.mean(np.log(p)))), 1, rtol=0.25)
    est = Purification(n, thresholds=0.1, learning_rate=0.5, r=4.0, balance=True, init=C0,
                       n_stages=10, stage_length=10000, step_decay=2.0,
                       n_iter_no_change=None).fit(Y)
    np.testing.assert_allclose(est.balance_scale_**2 / (p / np.exp(np.mean(np.log(p)))), 1,
                               rtol=0.25)  # estimated on fit's first block
    assert log_total_correlation_error(est.components_, C_true) < \
        log_total_correlation_error(C0, C_true) - 1
    # undone: the components are back on the start's scale, the codes on the weights' scale
    scale = np.linalg.norm(est.components_, axis=1) / np.linalg.norm(C0, axis=1)
    assert np.all((scale > 0.5) & (scale < 2))
    Z = est.transform(Y[:100])
    balanced = _engine.decode(Y[:100], est._D, est.alpha_, K.SHIFTED_RELU)[0]
    np.testing.assert_allclose(Z, balanced * est.balance_scale_, rtol=1e-12)
    np.testing.assert_allclose(est.inverse_transform(Z),
                               balanced @ (est.components_ * est.balance_scale_[:, None]),
                               rtol=1e-10, atol=1e-12)


# -- the estimator API ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_partial_fit_transform_shapes_and_dtypes(dtype):
    rng = np.random.default_rng(15)
    C_true = truth(25, 5, rng)
    Y = (binary_weights(300, 5, 2, rng) @ C_true).astype(dtype)
    est = Purification(5, n_stages=4, stage_length=100, random_state=0).fit(Y)
    assert est.components_.shape == (5, 25) and est.components_.dtype == dtype
    assert est.transform(Y).shape == (300, 5) and est.transform(Y).dtype == dtype
    assert est.fit_transform(Y).dtype == dtype
    assert est.n_stages_ == 4 and est.history_["n_samples"].tolist() == [100] * 4
    assert np.all(est.transform(Y) >= 0)
    stream = Purification(5, random_state=0)
    for block in np.array_split(Y, 3):
        stream.partial_fit(block)
    assert stream.n_stages_ == 3 and stream.components_.dtype == dtype
    assert stream.transform(sp.csr_matrix(Y)).shape == (300, 5)
    np.testing.assert_allclose(stream.transform(sp.csr_matrix(Y)), stream.transform(Y),
                               rtol=1e-5, atol=1e-6)
    assert est.get_feature_names_out().tolist() == [f"purification{i}" for i in range(5)]


def test_pinv_option_and_default_components():
    rng = np.random.default_rng(16)
    Y = binary_weights(200, 4, 1, rng) @ truth(4, 4, rng)
    est = Purification(inverse="pinv", n_stages=3).fit(Y)
    assert est.components_.shape == (4, 4)
    np.testing.assert_allclose(est.components_ @ est._D, np.eye(4), atol=1e-9)


def test_inverse_is_computed_once_per_iteration():
    rng = np.random.default_rng(17)
    C_true = truth(30, 5, rng)
    Y = binary_weights(400, 5, 2, rng) @ C_true
    est = Purification(5, init=warm_start(C_true, 0.1, rng), n_stages=6, stage_length=100,
                       n_iter_no_change=None).fit(Y)
    # one inverse per stage start (7 starts) -- end_stage and transform hit the cache
    assert est._inverse_cache["inverses"] == est.n_stages_ + 1


@pytest.mark.parametrize("params, match", [
    (dict(thresholds=-0.1), r"'thresholds' parameter of Purification must be .* Got -0.1"),
    (dict(thresholds="big"), r"'thresholds' parameter .* Got 'big'"),
    (dict(learning_rate=0), r"'learning_rate' parameter .* range \(0.0, 1.0\]. Got 0 instead"),
    (dict(learning_rate=1.5), r"'learning_rate' parameter .* Got 1.5"),
    (dict(r=0.0), r"'r' parameter .* range \(0.0, inf\) or None"),
    (dict(r=np.inf), r"'r' parameter .* Got inf"),
    (dict(stage_length=0), r"'stage_length' parameter .* int in the range \[1, inf\) or None"),
    (dict(stage_length=2.5), r"'stage_length' parameter .* Got 2.5"),
    (dict(n_stages=0), r"'n_stages' parameter .* int in the range \[1, inf\)"),
    (dict(inverse="lstsq"), r"'inverse' parameter .* among \{'min-inf', 'pinv'\}|"
                            r"'inverse' parameter .* among \{'pinv', 'min-inf'\}"),
    (dict(step_decay="log"), r"'step_decay' parameter .* Got 'log'"),
    (dict(step_decay=-1.0), r"'step_decay' parameter .* Got -1.0"),
    (dict(balance="yes"), r"'balance' parameter .* instance of 'bool'"),
    (dict(verbose=-1), r"'verbose' parameter"),
    (dict(init="nndsvd"), r"'init' parameter .* Got 'nndsvd'"),
    (dict(init=np.ones((2, 3))), r"init: expected an array of shape"),
    (dict(n_components=0), r"'n_components' parameter .* Got 0"),
    (dict(n_components=9), "n_components=9 is larger than n_features=8"),
    (dict(tol=-1.0), r"'tol' parameter"),
    (dict(n_iter_no_change=0), r"'n_iter_no_change' parameter"),
    (dict(callback=3), r"'callback' parameter .* a callable or None"),
    (dict(checkpoint=3), r"'checkpoint' parameter .* Got 3"),
])
def test_bad_parameters_raise(params, match):
    Y = np.random.default_rng(18).random((20, 8))
    with pytest.raises(ValueError, match=match):
        Purification(**params).fit(Y)


@parametrize_with_checks([Purification(n_stages=5), Purification(n_components=2, n_stages=5)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_every_parameter_has_a_constraint():
    check_param_validation("Purification", Purification(2, n_stages=2, random_state=0))


def test_checkpoint_resume_restores_the_step_counter_and_the_balance(tmp_path, lp_solver):
    pytest.importorskip("h5py")
    rng = np.random.default_rng(19)
    C = truth(30, 5, rng)
    Y = binary_weights(2000, 5, 2, rng) @ C
    kw = dict(init=warm_start(C, 0.1, rng), stage_length=500, step_decay=2.0, balance=True,
              n_iter_no_change=None)
    full = Purification(5, n_stages=8, **kw).fit(Y)
    path = str(tmp_path / "purification.h5")
    Purification(5, n_stages=4, checkpoint=path, **kw).fit(Y)
    resumed = Purification(5, n_stages=8, checkpoint=path, **kw).fit(Y, resume=True)
    assert resumed._loop.rule.t == 8
    np.testing.assert_array_equal(resumed.balance_scale_, full.balance_scale_)
    np.testing.assert_allclose(resumed.components_, full.components_, rtol=1e-12, atol=1e-14)
    if lp_solver in ("highspy", "simplex"):
        # the resumed fit starts cold (no previous bases, all the features): the same
        # vertices, polished to the same bits
        np.testing.assert_array_equal(resumed.components_, full.components_)


def test_a_resumed_fit_solved_on_previous_supports_equals_the_uninterrupted_one(
        tmp_path, monkeypatch):
    # the uninterrupted fit solves its stages' programmes on the previous supports (at most
    # n^2 = 400 of the 600 features); the resumed one starts without bases, on every
    # feature: the same bits
    from streamnmf import _lp

    real, widths = _lp.dual_simplex_rows, []

    def spy(Cn, **kw):
        widths.append(Cn.shape[1])
        return real(Cn, **kw)

    monkeypatch.setattr(_lp, "dual_simplex_rows", spy)
    rng = np.random.default_rng(19)
    C = truth(600, 20, rng)
    Y = binary_weights(4000, 20, 2, rng) @ C
    kw = dict(init=warm_start(C, 0.1, rng), stage_length=500, step_decay=2.0,
              n_iter_no_change=None)
    full = Purification(20, n_stages=8, **kw).fit(Y)
    assert min(widths) < 600
    path = tmp_path / "purification.h5"
    Purification(20, n_stages=4, checkpoint=path, **kw).fit(Y)
    resumed = Purification(20, n_stages=8, checkpoint=path, **kw).fit(Y, resume=True)
    np.testing.assert_array_equal(resumed.components_, full.components_)


def test_public_min_inf_inverse_is_an_optimal_left_inverse():
    from streamnmf.linalg import min_inf_inverse

    rng = np.random.default_rng(3)
    C = rng.standard_normal((5, 30))
    B = min_inf_inverse(C)
    assert B.shape == (5, 30)
    np.testing.assert_allclose(B @ C.T, np.eye(5), atol=1e-9)
    _, optimal = naive.min_inf_left_inverse(C.T)  # the optimal l1 norm of every row (dual LPs)
    np.testing.assert_allclose(np.abs(B).sum(axis=1), optimal, rtol=1e-6)
    assert np.abs(B).sum(axis=1).max() <= np.abs(np.linalg.pinv(C).T).sum(axis=1).max()


def test_nonnegative_purification_projects_its_updates_and_keeps_the_recovery():
    from streamnmf.datasets import make_init, make_purification_data
    from streamnmf.metrics import log_total_correlation_error

    data, truth, _ = make_purification_data(40_000, n_components=6, n_features=30,
                                            weights="a2'", sparsity=2, random_state=0)
    init = make_init(truth, in_span=0.5, random_state=1)
    kwargs = dict(init=init, stage_length=10_000, n_stages=12, inverse="pinv")
    projected = Purification(6, components="auto", **kwargs).fit(data)  # non-negative data
    signed = Purification(6, **kwargs).fit(data)  # the default: the paper's update
    assert projected.nonnegative_ and not signed.nonnegative_
    assert (projected.components_ >= 0).all() and (signed.components_ < 0).any()
    errors = [log_total_correlation_error(m.components_, truth) for m in (projected, signed)]
    assert errors[0] < -5 and errors[1] < -5  # both recover; the paper's update a little better
    with pytest.raises(ValueError, match=r"'components' parameter .* Got 'both'"):
        Purification(6, components="both").fit(data)
