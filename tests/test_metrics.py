"""Tests of streamnmf.metrics: the AND paper's correlation error, best-match and one-to-one."""

import numpy as np
import pytest
import scipy.sparse as sp

from streamnmf.metrics import (
    log_total_correlation_error,
    match_components,
    matched_correlation_error,
    per_component_error,
    total_correlation_error,
)


def naive_errors(learned, truth):
    """``1 - max_j cos^2(t_i, c_j)`` straight from the definition, and the argmax."""
    learned = np.asarray(learned, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    cos = np.empty((truth.shape[0], learned.shape[0]))
    for i, t in enumerate(truth):
        for j, c in enumerate(learned):
            norm = np.linalg.norm(t) * np.linalg.norm(c)
            cos[i, j] = t @ c / norm if norm > 0 else 0.0
    return 1.0 - np.max(cos**2, axis=1), np.argmax(cos**2, axis=1)


def exact_small_errors(truth, perturbation):
    """Error of ``c_i = t_i + d_i`` against ``t_i``, computed without cancellation.

    ``1 - cos^2 = ||d_perp||^2 / ||t + d||^2`` with ``d_perp`` the part of ``d`` orthogonal
    to ``t``: accurate to full relative precision however small ``d`` is.
    """
    out = []
    for t, d in zip(truth, perturbation):
        u = t / np.linalg.norm(t)
        d_perp = d - (d @ u) * u
        out.append(d_perp @ d_perp / ((t + d) @ (t + d)))
    return np.array(out)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# ---------------------------------------------------------------------------------------------
# agreement with the definition
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_true, n_learned, n_features", [(6, 6, 30), (5, 9, 17), (8, 3, 40),
                                                           (1, 1, 2)])
@pytest.mark.parametrize("signed", [False, True])
def test_total_equals_naive_definition(rng, n_true, n_learned, n_features, signed):
    truth = rng.random((n_true, n_features)) - 0.5 * signed
    learned = rng.random((n_learned, n_features)) - 0.5 * signed
    expected, expected_index = naive_errors(learned, truth)
    errors, index = per_component_error(learned, truth)
    assert errors.shape == (n_true,) and index.shape == (n_true,)
    np.testing.assert_allclose(errors, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(index, expected_index)
    assert total_correlation_error(learned, truth) == pytest.approx(expected.sum(), rel=1e-10)
    assert np.all((errors >= 0) & (errors <= 1))


def test_total_is_sum_of_per_component_and_log_is_its_log(rng):
    truth = rng.random((7, 25))
    learned = truth + 0.05 * rng.standard_normal(truth.shape)
    errors, _ = per_component_error(learned, truth)
    total = total_correlation_error(learned, truth)
    assert isinstance(total, float)
    assert total == pytest.approx(errors.sum(), rel=1e-14)
    assert 1e-4 < total < 1  # a clearly imperfect but close solution
    log_total = log_total_correlation_error(learned, truth)
    assert isinstance(log_total, float)
    assert log_total == pytest.approx(np.log(total), rel=1e-14)


def test_perfect_recovery_is_exactly_zero_and_log_is_minus_inf(rng):
    truth = rng.random((5, 20))
    errors, index = per_component_error(truth.copy(), truth)
    np.testing.assert_array_equal(errors, 0.0)
    np.testing.assert_array_equal(index, np.arange(5))
    assert total_correlation_error(truth, truth) == 0.0
    assert matched_correlation_error(truth, truth) == 0.0
    assert log_total_correlation_error(truth, truth) == float("-inf")


def test_orthogonal_learned_rows_give_error_one():
    truth = np.eye(3, 6)
    learned = np.eye(6)[3:]
    errors, _ = per_component_error(learned, truth)
    np.testing.assert_array_equal(errors, 1.0)
    assert total_correlation_error(learned, truth) == 3.0


# ---------------------------------------------------------------------------------------------
# accuracy near zero (residual form)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1e-12, 1e-9, 1e-14])
def test_residual_form_is_accurate_near_zero(rng, size):
    truth = rng.random((10, 300))
    perturbation = size * rng.standard_normal(truth.shape)
    learned = truth + perturbation
    expected = exact_small_errors(truth, perturbation)
    errors, index = per_component_error(learned, truth)
    np.testing.assert_array_equal(index, np.arange(10))
    # ~size^2 per row: 1e-24 for 1e-12, where 1 - cos^2 would be 0 or 1e-16 round-off noise.
    # Normalising the rows rounds them by ~1e-16, against a perpendicular part of ~size:
    # the relative accuracy is about 1e-16 / size (1e-4 for 1e-12).
    rtol = max(1e-6, 1e-16 / size)
    np.testing.assert_allclose(errors, expected, rtol=rtol)
    assert np.all(errors > 0.1 * size**2) and np.all(errors < 10 * size**2)
    total = total_correlation_error(learned, truth)
    assert total == pytest.approx(expected.sum(), rel=rtol)
    assert log_total_correlation_error(learned, truth) == pytest.approx(
        np.log(expected.sum()), abs=rtol)


def test_residual_form_resolves_what_cosine_form_cannot(rng):
    truth = rng.random((4, 100))
    learned = truth + 1e-12 * rng.standard_normal(truth.shape)
    naive, _ = naive_errors(learned, truth)
    errors, _ = per_component_error(learned, truth)
    # the naive closed form is pure round-off here: no relative accuracy at all
    assert np.max(np.abs(naive)) > 1e-18
    assert np.max(errors) < 1e-22
    assert log_total_correlation_error(learned, truth) < -50


def test_tied_learned_rows_keep_the_smallest_residual(rng):
    # Two learned copies of t_0 that tie on |cos| to round-off: the worse one comes first, so
    # a plain argmax would pick it; the metric must report the better one's error.
    truth = rng.random((3, 200))
    worse = truth[0] + 1e-9 * rng.standard_normal(200)
    better_perturbation = 1e-13 * rng.standard_normal(200)
    better = truth[0] + better_perturbation
    learned = np.vstack([worse, better, truth[1], truth[2]])
    errors, index = per_component_error(learned, truth)
    assert index[0] == 1
    expected = exact_small_errors(truth[:1], better_perturbation[None])[0]
    assert errors[0] == pytest.approx(expected, rel=1e-2)
    assert errors[0] < 1e-24


# ---------------------------------------------------------------------------------------------
# invariances
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("perturbation", [0.1, 1e-11])
def test_invariant_to_row_scaling_sign_and_permutation(rng, perturbation):
    truth = rng.random((8, 50))
    learned = truth[rng.permutation(8)] + perturbation * rng.standard_normal((8, 50))
    errors, index = per_component_error(learned, truth)
    rtol = 1e-9 if perturbation > 1e-6 else 1e-3

    scales = rng.uniform(0.1, 10, size=(8, 1)) * rng.choice([-1.0, 1.0], size=(8, 1))
    scales[0] = 1e150
    scales[1] = -1e-150
    errors_scaled, index_scaled = per_component_error(scales * learned, truth)
    np.testing.assert_allclose(errors_scaled, errors, rtol=rtol)
    np.testing.assert_array_equal(index_scaled, index)

    truth_scales = rng.uniform(0.01, 100, size=(8, 1))
    np.testing.assert_allclose(per_component_error(learned, truth_scales * truth)[0], errors,
                               rtol=rtol)

    perm = rng.permutation(8)
    errors_perm, index_perm = per_component_error(learned[perm], truth)
    np.testing.assert_allclose(errors_perm, errors, rtol=rtol)
    np.testing.assert_array_equal(perm[index_perm], index)
    # permuting the true rows permutes the per-component errors
    errors_tperm, _ = per_component_error(learned, truth[perm])
    np.testing.assert_allclose(errors_tperm, errors[perm], rtol=rtol)

    for measure in (total_correlation_error, matched_correlation_error):
        assert measure(scales[perm] * learned[perm], truth) == pytest.approx(
            measure(learned, truth), rel=rtol)


def test_dtypes_and_sparse_input_give_float64_results(rng):
    truth = rng.random((4, 30))
    learned32 = (truth + 0.01 * rng.standard_normal(truth.shape)).astype(np.float32)
    errors32, _ = per_component_error(learned32, truth)
    errors64, _ = per_component_error(learned32.astype(np.float64), truth)
    assert errors32.dtype == np.float64
    np.testing.assert_array_equal(errors32, errors64)
    np.testing.assert_array_equal(per_component_error(sp.csr_matrix(learned32), truth)[0],
                                  errors64)
    ints = np.array([[1, 0, 2], [0, 3, 0]])
    assert total_correlation_error(ints, ints) == 0.0
    assert total_correlation_error(ints.tolist(), ints.astype(float)) == 0.0


def test_extreme_magnitudes_do_not_overflow(rng):
    truth = rng.random((3, 20))
    learned = truth + 0.01 * rng.standard_normal(truth.shape)
    reference, _ = per_component_error(learned, truth)
    for factor in (1e200, 1e-200):
        errors, _ = per_component_error(factor * learned, factor * truth)
        np.testing.assert_allclose(errors, reference, rtol=1e-10)


def test_zero_learned_row_matches_nothing():
    truth = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    learned = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 2.0]])
    errors, index = per_component_error(learned, truth)
    np.testing.assert_array_equal(errors, [1.0, 0.0])
    assert index[1] == 1
    assert per_component_error(np.zeros((1, 3)), truth)[0].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# one-to-one matching
# ---------------------------------------------------------------------------------------------

def test_matched_penalises_one_learned_row_covering_two_true_rows(rng):
    # t_0 and t_1 are close; the learned set merges them into one row and wastes another on
    # junk orthogonal to everything. Best-match scores it as nearly perfect, one-to-one not.
    n, m = 5, 60
    truth = rng.random((n, m))
    truth[1] = truth[0] + 0.02 * rng.random(m)
    merged = (truth[0] + truth[1]) / 2
    junk = rng.standard_normal(m)
    junk -= truth.T @ np.linalg.lstsq(truth.T, junk, rcond=None)[0]  # orthogonal to the truth
    learned = np.vstack([merged, junk, truth[2], truth[3], truth[4]])
    best = total_correlation_error(learned, truth)
    matched = matched_correlation_error(learned, truth)
    assert best < 1e-3
    assert matched > 0.99
    errors, index = per_component_error(learned, truth, matching="one-to-one")
    assert sorted(index.tolist()) == list(range(n))  # every learned row used once
    # one of t_0, t_1 keeps the merged row, the other is charged the junk row in full
    assert min(errors[:2]) < 1e-3 and max(errors[:2]) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_array_equal(errors[2:], 0.0)
    best_errors, best_index = per_component_error(learned, truth)
    assert best_index[0] == best_index[1] == 0


def test_fully_collapsed_solution_scores_the_same_under_both_matchings(rng):
    # All learned rows equal to t_0: every true row can only be compared with t_0, so the
    # one-to-one matching cannot do worse than best-match here (documented); both charge the
    # collapse through the other true rows' errors 1 - cos^2(t_i, t_0).
    truth = rng.standard_normal((6, 40))
    learned = np.repeat(truth[:1], 6, axis=0)
    expected, _ = naive_errors(learned, truth)
    # t_0 against itself: zero up to the round-off of the BLAS kernel that computed cos^2
    assert expected[0] == pytest.approx(0.0, abs=1e-12) and np.all(expected[1:] > 0.5)
    assert total_correlation_error(learned, truth) == pytest.approx(expected.sum(), rel=1e-10)
    assert matched_correlation_error(learned, truth) == pytest.approx(expected.sum(), rel=1e-10)


def test_matched_counts_unmatched_true_rows_as_one(rng):
    truth = rng.random((5, 30))
    learned = truth[[3, 1]].copy()
    errors, index = per_component_error(learned, truth, matching="one-to-one")
    np.testing.assert_array_equal(index, [-1, 1, -1, 0, -1])
    np.testing.assert_array_equal(errors[[0, 2, 4]], 1.0)
    np.testing.assert_array_equal(errors[[1, 3]], 0.0)
    assert matched_correlation_error(learned, truth) == 3.0
    # best-match instead charges them 1 - cos^2 against the two learned rows, which is less
    best_total = total_correlation_error(learned, truth)
    assert best_total < 3.0 and best_total == pytest.approx(naive_errors(learned, truth)[0].sum())


@pytest.mark.parametrize("seed", range(5))
def test_matched_never_below_best_and_agrees_on_a_clean_permutation(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((6, 20))
    learned = rng.random((7, 20))
    assert matched_correlation_error(learned, truth) >= total_correlation_error(
        learned, truth) - 1e-12
    perm = rng.permutation(6)
    close = truth[perm] + 1e-3 * rng.standard_normal((6, 20))
    assert matched_correlation_error(close, truth) == pytest.approx(
        total_correlation_error(close, truth), rel=1e-12)


def test_match_components_recovers_the_permutation(rng):
    truth = rng.random((6, 25))
    perm = rng.permutation(6)
    learned = -2.0 * truth[perm] + 1e-3 * rng.standard_normal((6, 25))  # signs do not matter
    true_index, learned_index = match_components(learned, truth)
    np.testing.assert_array_equal(true_index, np.arange(6))
    np.testing.assert_array_equal(perm[learned_index], np.arange(6))
    # more learned rows than true ones: every true row matched, a learned row at most once
    extra = np.vstack([learned, rng.random((3, 25))])
    true_index, learned_index = match_components(extra, truth)
    assert true_index.tolist() == list(range(6))
    assert len(set(learned_index.tolist())) == 6
    np.testing.assert_array_equal(perm[learned_index], np.arange(6))


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

ALL_MEASURES = [total_correlation_error, matched_correlation_error, log_total_correlation_error,
                match_components, per_component_error]


@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_feature_count_mismatch_is_rejected(measure):
    with pytest.raises(ValueError, match=r"components has 4 features.*true_components has 5"):
        measure(np.ones((2, 4)), np.ones((2, 5)))


@pytest.mark.parametrize("measure", ALL_MEASURES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["learned", "truth"])
def test_non_finite_input_is_rejected(measure, bad, which):
    good = np.ones((2, 3))
    broken = good.copy()
    broken[1, 2] = bad
    args = (broken, good) if which == "learned" else (good, broken)
    with pytest.raises(ValueError, match="NaN or infinity"):
        measure(*args)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), ()])
def test_non_2d_input_is_rejected(shape):
    with pytest.raises(ValueError, match=r"components must be a 2-D array"):
        total_correlation_error(np.ones(shape), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"true_components must be a 2-D array"):
        total_correlation_error(np.ones((2, 3)), np.ones(shape))


def test_other_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="at least one component and one feature"):
        total_correlation_error(np.ones((0, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="at least one component and one feature"):
        total_correlation_error(np.ones((2, 3)), np.ones((2, 0)))
    with pytest.raises(ValueError, match="real numbers"):
        total_correlation_error(np.ones((2, 3)) * 1j, np.ones((2, 3)))
    with pytest.raises(ValueError, match="real numbers"):
        total_correlation_error([["a", "b"]], np.ones((1, 2)))
    with pytest.raises(ValueError, match="could not be converted"):
        total_correlation_error([[1.0, 2.0], [3.0]], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"all-zero rows \[1\]"):
        total_correlation_error(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="matching must be one of"):
        per_component_error(np.ones((2, 3)), np.ones((2, 3)), matching="greedy")
