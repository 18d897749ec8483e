"""Every Numba kernel against its NumPy twin in ``naive.py``, on seeded inputs and edge cases."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from streamnmf import _engine
from streamnmf import _kernels as K

import naive

RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def make(rng, n_samples, n_features, n_components, dtype, density=1.0):
    Y = rng.standard_normal((n_samples, n_features))
    if density < 1:
        Y[rng.random(Y.shape) > density] = 0
    Y[1] = 0  # an all-zero sample
    D = rng.standard_normal((n_features, n_components)) / np.sqrt(n_features)
    C = rng.standard_normal((n_components, n_features))
    return Y.astype(dtype), D.astype(dtype), C.astype(dtype)


def as_input(Y, layout):
    return sp.csr_matrix(Y) if layout == "csr" else Y


def codes(Y, D, alpha, kind):
    return _engine.decode(Y, D, alpha, kind)[:3]


@pytest.fixture(params=["narrow", "gemm", "gemm-fortran"])
def dense_decoder(request, monkeypatch):
    """Every decoder of dense rows: the fused narrow kernel, and GEMM + ``threshold_codes``
    with the product in C order or (float64) in Fortran order."""
    narrow = 10**9 if request.param == "narrow" else 0
    fortran = 0 if request.param == "gemm-fortran" else 10**9
    monkeypatch.setattr(_engine, "NARROW_DECODE_COMPONENTS", narrow)
    monkeypatch.setattr(_engine, "FORTRAN_GEMM_MIN_FEATURES", fortran)
    return request.param


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("kind", [K.HARD, K.SHIFTED_RELU])
def test_decode_matches_reference(dtype, layout, kind, dense_decoder):
    rng = np.random.default_rng(0)
    Y, D, _ = make(rng, 40, 30, 8, dtype, density=0.3 if layout == "csr" else 1.0)
    alpha = 0.2
    Z, indptr, indices = codes(as_input(Y, layout), D, alpha, kind)
    expected = naive.decode(Y, D, alpha, kind)
    assert Z.dtype == dtype
    np.testing.assert_allclose(Z, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
    ref_indptr, ref_indices = naive.support(expected)
    np.testing.assert_array_equal(indptr, ref_indptr)
    np.testing.assert_array_equal(indices, ref_indices)
    assert not Z[1].any() and indptr[2] == indptr[1]  # the all-zero sample has empty support


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", [K.HARD, K.SHIFTED_RELU])
def test_narrow_decode_kernel_matches_reference(dtype, kind):
    # the fused kernel itself, on shapes around the engine's switch, a zero-row block and a
    # block where every code is below the threshold
    rng = np.random.default_rng(11)
    for n_samples, n_features, n_components, alpha in [(33, 50, 1, 0.1), (20, 7, 16, 0.2),
                                                        (0, 5, 3, 0.1), (9, 12, 4, 1e9)]:
        Y, D, _ = make(rng, max(n_samples, 2), n_features, n_components, dtype)
        Y = Y[:n_samples]
        Z = np.full((n_samples, n_components), np.nan, dtype=dtype)  # every entry written
        indptr = np.empty(n_samples + 1, dtype=np.int64)
        indices = np.empty(n_samples * n_components, dtype=np.int32)
        nnz, v_min = K.dense_decode_narrow(Y, np.ascontiguousarray(D.T), dtype(alpha), kind,
                                           Z, indptr, indices)
        expected = naive.decode(Y, D, alpha, kind)
        np.testing.assert_allclose(Z, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
        ref_indptr, ref_indices = naive.support(expected)
        np.testing.assert_array_equal(indptr, ref_indptr)
        np.testing.assert_array_equal(indices[:nnz], ref_indices)
        assert v_min == pytest.approx((Y @ D).min() if n_samples else np.inf,
                                      rel=RTOL[dtype])


def test_narrow_decode_keeps_alpha_exactly_hit():
    # a decoded value equal to alpha is kept by the hard threshold and dropped by the shifted
    # ReLU, as in threshold_codes (D = identity: the decoded values are the samples)
    Y = np.array([[0.25, 0.2499999, 0.5, -1.0, 0.0]])
    D_T = np.eye(5)
    for kind, want, support in [(K.HARD, [0.25, 0, 0.5, 0, 0], [0, 2]),
                                (K.SHIFTED_RELU, [0, 0, 0.25, 0, 0], [2])]:
        Z, indptr, indices = np.empty((1, 5)), np.empty(2, np.int64), np.empty(5, np.int32)
        nnz, v_min = K.dense_decode_narrow(Y, D_T, 0.25, kind, Z, indptr, indices)
        np.testing.assert_array_equal(Z[0], want)
        np.testing.assert_array_equal(indices[:nnz], support)
        assert v_min == -1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_max_sum_matches_numpy(dtype, dense_decoder):
    # alpha < 0 keeps negative codes: a row whose support is full has a negative maximum,
    # one with a dropped entry has maximum >= 0 (its zeros); alpha huge: every row empty
    rng = np.random.default_rng(12)
    Y, D, _ = make(rng, 60, 15, 3, dtype)
    for alpha in (-0.5, -0.1, 0.0, 0.2, 1e9):
        Z, indptr, indices = codes(Y, D, alpha, K.HARD)
        assert K.row_max_sum(Z, indptr, indices) == pytest.approx(
            float(Z.max(axis=1).sum()), rel=RTOL[dtype], abs=RTOL[dtype])
    assert K.row_max_sum(Z[:0], indptr[:1], indices[:0]) == 0.0


@pytest.mark.parametrize("kind", [K.HARD, K.SHIFTED_RELU])
def test_threshold_codes_from_a_fortran_ordered_product(kind):
    # the decoded values in Fortran order, the codes written to a separate C-ordered array:
    # the same codes, support and minimum as thresholding a C-ordered copy in place
    rng = np.random.default_rng(13)
    V = np.asfortranarray(rng.standard_normal((37, 9)))
    V[4] = 0.0  # a sample with empty support
    V[5, 2] = 0.3  # alpha exactly hit
    C_order = np.ascontiguousarray(V)
    ip_in_place, ip = np.empty(38, np.int64), np.empty(38, np.int64)
    idx_in_place, v_min_in_place = K.threshold_codes(C_order, 0.3, kind, ip_in_place, C_order)
    Z = np.full((37, 9), np.nan)
    idx, v_min = K.threshold_codes(V, 0.3, kind, ip, Z)
    np.testing.assert_array_equal(Z, C_order)
    np.testing.assert_array_equal(Z, naive.threshold(np.asarray(V), 0.3, kind))
    np.testing.assert_array_equal(ip, ip_in_place)
    np.testing.assert_array_equal(idx, idx_in_place)
    assert v_min == v_min_in_place == V.min()
    assert Z.flags.c_contiguous and V.flags.f_contiguous


def test_hard_threshold_keeps_alpha_exactly_hit_and_shifted_relu_drops_it():
    V = np.array([[0.25, 0.2499999, 0.5, -1.0, 0.0]])
    Z = V.copy()
    indptr = np.empty(2, dtype=np.int64)
    idx, v_min = K.threshold_codes(Z, 0.25, K.HARD, indptr, Z)
    assert v_min == -1.0
    np.testing.assert_array_equal(Z, [[0.25, 0, 0.5, 0, 0]])
    np.testing.assert_array_equal(idx, [0, 2])
    Z = V.copy()
    idx, _ = K.threshold_codes(Z, 0.25, K.SHIFTED_RELU, indptr, Z)
    np.testing.assert_array_equal(Z, [[0, 0, 0.25, 0, 0]])
    np.testing.assert_array_equal(idx, [2])


def test_empty_support_everywhere(dense_decoder):
    rng = np.random.default_rng(1)
    Y, D, C = make(rng, 10, 12, 4, np.float64)
    Z, indptr, indices = codes(Y, D, 1e9, K.HARD)
    assert indices.size == 0 and not Z.any()
    G, touched, state = np.zeros_like(C), np.zeros(4, bool), np.zeros(2)
    C_before = C.copy()
    K.sgd_update_dense(Y, Z, indptr, indices, C, 0.1, 1, G, touched, state, False)
    np.testing.assert_array_equal(C, C_before)
    np.testing.assert_allclose(state[1], (Y**2).sum())  # residual = y when z = 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("batch_size", [1, 3, 7])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_sgd_update_matches_reference(dtype, layout, batch_size, nonnegative, dense_decoder):
    rng = np.random.default_rng(2)
    Y, D, C = make(rng, 25, 20, 6, dtype, density=0.4 if layout == "csr" else 1.0)
    if nonnegative:  # a projected fit's matrix is non-negative; a large step makes it clip
        C = np.abs(C)
    Z, indptr, indices = codes(as_input(Y, layout), D, 0.1, K.HARD)
    eta = 0.5 if nonnegative else 0.05
    expected, total = naive.sgd_updates(Y, Z, C, eta, batch_size, nonnegative)
    if nonnegative:
        assert (expected == 0).any()  # the projection was exercised
    G, touched, state = np.zeros_like(C), np.zeros(C.shape[0], bool), np.zeros(2)
    Yin = as_input(Y, layout)
    if layout == "csr":
        K.sgd_update_csr(Yin.data, Yin.indices, Yin.indptr, Z, indptr, indices, C, dtype(eta),
                         batch_size, G, touched, state, nonnegative)
    else:
        K.sgd_update_dense(Yin, Z, indptr, indices, C, dtype(eta), batch_size, G, touched, state,
                           nonnegative)
    if state[0]:  # the engine applies a final partial batch at the stage end
        K._sgd_flush(C, G, touched, dtype(eta / state[0]), nonnegative)
    np.testing.assert_allclose(C, expected, rtol=10 * RTOL[dtype], atol=10 * RTOL[dtype])
    np.testing.assert_allclose(state[1], total, rtol=10 * RTOL[dtype])


def test_sgd_batch_spans_blocks():
    # A batch that starts in one block and ends in the next equals the same batch in one block.
    rng = np.random.default_rng(3)
    Y, D, C = make(rng, 12, 10, 5, np.float64)
    Z, indptr, indices = codes(Y, D, 0.05, K.HARD)
    one = C.copy()
    G, touched, state = np.zeros_like(C), np.zeros(5, bool), np.zeros(2)
    K.sgd_update_dense(Y, Z, indptr, indices, one, 0.1, 4, G, touched, state, False)
    two = C.copy()
    G, touched, state = np.zeros_like(C), np.zeros(5, bool), np.zeros(2)
    for rows in (slice(0, 5), slice(5, 12)):
        Zb, ib, jb = codes(Y[rows], D, 0.05, K.HARD)
        K.sgd_update_dense(Y[rows], Zb, ib, jb, two, 0.1, 4, G, touched, state, False)
    np.testing.assert_allclose(two, one, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_accumulate_stats_matches_reference(dtype, layout):
    rng = np.random.default_rng(4)
    Y, D, C = make(rng, 30, 25, 7, dtype, density=0.3 if layout == "csr" else 1.0)
    Yin = as_input(Y, layout)
    Z, indptr, indices = codes(Yin, D, 0.3, K.HARD)
    S_zy, S_zz, sum_z = np.zeros((7, 25)), np.zeros((7, 7)), np.zeros(7)
    if layout == "csr":
        K.accumulate_stats_csr(Yin.data, Yin.indices, Yin.indptr, Z, indptr, indices,
                               S_zy, S_zz, sum_z)
    else:
        K.accumulate_stats_dense(Yin, Z, indptr, indices, S_zy, S_zz, sum_z)
    ref = naive.stats(Y, Z)
    for got, want in zip((S_zy, S_zz, sum_z), ref):
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 5.0])  # dense codes (BLAS path), sparse, empty
def test_stage_stats_paths_agree(layout, alpha, dense_decoder):
    rng = np.random.default_rng(5)
    Y, D, _ = make(rng, 50, 40, 9, np.float64, density=0.3 if layout == "csr" else 1.0)
    Yin = as_input(Y, layout)
    Z, indptr, indices, v_min = _engine.decode(Yin, D, alpha, K.HARD)
    assert v_min == pytest.approx((naive.dense(Yin) @ D).min(), rel=1e-12)
    s = _engine.StageStats(9, 40, with_sum_y=True)
    s.add(Yin, Z, indptr, indices, v_min, with_products=True)
    S_zy, S_zz, sum_z = naive.stats(Y, Z)
    np.testing.assert_allclose(s.S_zy, S_zy, atol=1e-12)
    np.testing.assert_allclose(s.S_zz, S_zz, atol=1e-12)
    np.testing.assert_allclose(s.sum_z, sum_z, atol=1e-12)
    np.testing.assert_allclose(s.sum_y, Y.sum(axis=0), atol=1e-12)
    np.testing.assert_allclose(s.sum_yy, (Y**2).sum())
    C = rng.standard_normal((9, 40))
    np.testing.assert_allclose(s.squared_error(C), ((Y - Z @ C) ** 2).sum() / 50, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_csr_statistics_by_products_equal_the_kernels(dtype):
    # above CSR_DENSE_CODES the stage statistics of CSR rows come from scipy.sparse products,
    # in float64: exact sums of the float32 rows' and codes' products
    rng = np.random.default_rng(6)
    Y, D, _ = make(rng, 60, 40, 9, dtype, density=0.3)
    Yin = as_input(Y, "csr")
    Z, indptr, indices, v_min = _engine.decode(Yin, D, 0.0, K.HARD)
    assert indices.size > _engine.CSR_DENSE_CODES * Z.size
    s = _engine.StageStats(9, 40)
    s.add(Yin, Z, indptr, indices, v_min, with_products=True)
    S_zy, S_zz, sum_z = np.zeros((9, 40)), np.zeros((9, 9)), np.zeros(9)
    K.accumulate_stats_csr(Yin.data, Yin.indices, Yin.indptr, Z, indptr, indices,
                           S_zy, S_zz, sum_z)
    exact = naive.stats(Y.astype(np.float64), Z.astype(np.float64))
    for got, kernel, want in zip((s.S_zy, s.S_zz, s.sum_z), (S_zy, S_zz, sum_z), exact):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(kernel, want, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_csr_decode_cost_does_not_touch_absent_features():
    # A CSR row with no entries decodes to zero whatever D holds (even NaN in unused rows).
    D = np.full((6, 3), np.nan)
    D[2] = [1.0, 2.0, 3.0]
    Y = sp.csr_matrix(([2.0], [2], [0, 1, 1]), shape=(2, 6))
    V = np.empty((2, 3))
    K.csr_decode(Y.data, Y.indices, Y.indptr, D, V)
    np.testing.assert_array_equal(V, [[2, 4, 6], [0, 0, 0]])


@pytest.mark.parametrize("condition, dtype", [(10.0, np.float64), (1e7, np.float64),
                                              (10.0, np.float32)])
def test_pinv_rows_matches_svd_pinv(condition, dtype):
    # cond 10: Cholesky-QR2; cond 1e7: too ill conditioned for it, Householder QR instead
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((60, 8)))
    V, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    C = ((U * np.geomspace(1.0, 1.0 / condition, 8)) @ V).T.astype(dtype)  # (8, 60)
    used_cholesky = _engine._pinv_cholesky_qr2(C.astype(np.float64)) is not None
    assert used_cholesky == (condition < 1e5)
    D = _engine.pinv_rows(C)
    assert D.dtype == dtype and D.shape == (60, 8) and D.flags.c_contiguous
    expected = np.linalg.pinv(C.astype(np.float64))
    rtol = 1e-5 if dtype == np.float32 else 1e-14 * condition
    np.testing.assert_allclose(D, expected, rtol=0, atol=rtol * np.abs(expected).max())


def test_pinv_rows_of_rank_deficient_components():
    rng = np.random.default_rng(1)
    C = rng.standard_normal((5, 30))
    C[4] = C[0] + C[1]  # rank 4: no left inverse, the SVD's pseudo-inverse instead
    np.testing.assert_allclose(_engine.pinv_rows(C), np.linalg.pinv(C), atol=1e-12)


# -- non-negative least-squares codes -----------------------------------------------------------

def nnls_inputs(rng, n_samples, n_features, n_components, dtype, layout):
    C = rng.random((n_components, n_features)).astype(dtype)
    Y = (rng.random((n_samples, n_components)) ** 3 @ C).astype(dtype)
    Y += 0.05 * rng.random(Y.shape).astype(dtype)  # not exactly in the cone: some codes hit 0
    Y[1] = 0  # an all-zero sample
    if layout == "csr":
        Y[rng.random(Y.shape) > 0.5] = 0
    return as_input(Y, layout), C


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("start", ["zeros", "threshold"])
def test_nnls_codes_match_scipy(dtype, layout, start):
    rng = np.random.default_rng(7)
    Y, C = nnls_inputs(rng, 30, 25, 6, dtype, layout)
    B = np.asarray(Y @ C.T, dtype=dtype)
    G = (C.astype(np.float64) @ C.T.astype(np.float64))
    Z = np.zeros_like(B) if start == "zeros" else np.maximum(
        np.asarray(Y @ np.linalg.pinv(C.astype(np.float64)), dtype=dtype), 0)
    sweeps = K.nnls_codes(B, G, Z, 10_000, 1e-12)
    expected = naive.nnls_rows(Y, C)
    tol = 1e-8 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(Z, expected, atol=tol * expected.max(), rtol=tol)
    assert 1 <= sweeps < 10_000
    assert not Z[1].any()  # the all-zero sample gets the zero code
    assert (Z >= 0).all() and (expected == 0).any()  # the bound is active somewhere


def test_nnls_codes_edge_cases():
    # no components, a component that is all zeros (G_aa = 0: never moved), max_sweeps = 0
    B = np.zeros((3, 0))
    assert K.nnls_codes(B, np.zeros((0, 0)), np.zeros((3, 0)), 10, 1e-9) == 1
    C = np.array([[1.0, 0.0], [0.0, 0.0]])
    Y = np.array([[2.0, 1.0], [-1.0, 3.0]])
    Z = np.zeros((2, 2))
    K.nnls_codes(Y @ C.T, C @ C.T, Z, 100, 1e-12)
    np.testing.assert_allclose(Z, [[2.0, 0.0], [0.0, 0.0]])
    Z = np.full((2, 2), 0.5)
    assert K.nnls_codes(Y @ C.T, C @ C.T, Z, 0, 1e-12) == 0
    np.testing.assert_array_equal(Z, 0.5)


def hals_problem(rng, k=5, m=30):
    Z = rng.random((60, k)) ** 2
    Z[:, 3] = 0  # a component no sample decoded to
    Y = Z @ rng.random((k, m)) + 0.1 * rng.standard_normal((60, m))  # signed noise: bounds bite
    return Z.T @ Z, Z.T @ Y


@pytest.mark.parametrize("k", [5, K.HALS_BLOCK, 2 * K.HALS_BLOCK + 3])  # one block, several
def test_hals_sweep_matches_reference(k):
    rng = np.random.default_rng(11)
    S_zz, S_zy = hals_problem(rng, k=k)
    C = rng.random(S_zy.shape)
    expected = naive.hals_sweep(S_zz, S_zy, C)
    assert K.hals_rows(S_zz, S_zy, C, 1, 0.0) == 1
    np.testing.assert_allclose(C, expected, rtol=1e-12, atol=1e-14)


def test_hals_converges_to_the_nonnegative_least_squares_solution():
    from streamnmf.linalg import nonnegative_least_squares

    rng = np.random.default_rng(12)
    S_zz, S_zy = hals_problem(rng)
    start = rng.random(S_zy.shape)
    C, sweeps = nonnegative_least_squares(S_zz, S_zy, start, max_sweeps=100_000, tol=1e-14)
    free = [0, 1, 2, 4]  # the rows the data determine; row 3 keeps its start
    expected = naive.nonnegative_least_squares(S_zz[np.ix_(free, free)], S_zy[free])
    np.testing.assert_allclose(C[free], expected, atol=1e-8)
    np.testing.assert_array_equal(C[3], start[3])
    assert (expected == 0).any() and sweeps < 100_000
    # an all-zero problem leaves the start as it is (clipped at zero)
    C, _ = nonnegative_least_squares(np.zeros((2, 2)), np.zeros((2, 3)), -np.ones((2, 3)))
    np.testing.assert_array_equal(C, 0)


def test_warmup_compiles_every_kernel():
    # in a fresh process: here the other tests have compiled them already
    script = (
        "import numba, streamnmf\n"
        "from streamnmf import _kernels as K\n"
        "seconds = streamnmf.warmup()\n"
        "kernels = {n: f for n, f in vars(K).items()\n"
        "           if isinstance(f, numba.core.registry.CPUDispatcher)\n"
        "           and not n.startswith('_')}\n"
        "print(sorted(n for n, f in kernels.items() if not f.signatures))\n"
        "print(sorted(n for n, f in kernels.items()\n"
        "             if not any('float32' in str(s) for s in f.signatures)))\n"
        "print(len(kernels), seconds > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]", f"kernels warmup() did not compile: {out[0]}"
    # the statistics' HALS rows run on the float64 statistics of every fit
    assert out[1] == "['hals_rows']", f"kernels without a float32 version: {out[1]}"
    assert out[2].split()[1] == "True" and int(out[2].split()[0]) >= 10


def test_warmup_of_float32_compiles_the_float64_finish_and_the_fortran_layout():
    # a float32 fit finishes in float64 arithmetic, and wide float64 blocks threshold a
    # Fortran-ordered product: both signatures must be ready after warmup(("float32",))
    script = (
        "import streamnmf\n"
        "from streamnmf import _kernels as K\n"
        "streamnmf.warmup(dtypes=('float32',))\n"
        "sigs = [str(s) for s in K.threshold_codes.signatures]\n"
        "print(any(\"Array(float64, 2, 'C'\" in s for s in sigs),\n"
        "      any(\"Array(float64, 2, 'F'\" in s for s in sigs))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[-1] == "True True", out
