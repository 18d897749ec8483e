"""Drifting streams: the change detector, the re-seed, and partial_fit following a new truth."""

import numpy as np
import pytest

from streamnmf import AND
from streamnmf.datasets import make_topic_components, make_weights
from streamnmf.drift import DriftDetector, reseed_components
from streamnmf.metrics import log_total_correlation_error

N, M, BLOCK, CHANGE = 10, 100, 500, 60
OLD = make_topic_components(N, M, random_state=1)
NEW = OLD.copy()
NEW[N // 2:] = make_topic_components(N, M, random_state=2)[N // 2:]


def block(b, truth, dir_sparsity=5.0):
    return make_weights("dir", BLOCK, N, random_state=b, dir_sparsity=dir_sparsity) @ truth


def stream(est, n_blocks, truth_of, **weights):
    """Feed ``n_blocks`` blocks; the ln error against the current truth after each."""
    errors = []
    for b in range(n_blocks):
        truth = truth_of(b)
        est.partial_fit(block(b, truth, **weights))
        errors.append(log_total_correlation_error(est.components_, truth))
    return np.array(errors)


def abrupt(b):
    return OLD if b < CHANGE else NEW


# -- the detector -------------------------------------------------------------------------
def test_detector_flags_a_jump_and_not_a_fall_or_round_off():
    detector = DriftDetector(ratio=4.0, floor=1e-8, window=3)
    falling = [1e-2, 5e-3, 1e-3, 1e-4, 2e-5, 1e-6]
    assert not any(detector.observe(e) for e in falling)
    assert not detector.observe(3e-6)  # less than 4x the smallest of the last three
    assert detector.observe(1e-3)
    round_off = DriftDetector(ratio=4.0, floor=1e-8, window=3)
    assert not any(round_off.observe(e) for e in [1e-30, 1e-31, 1e-32, 1e-29, 1e-9])


def test_detector_waits_for_a_full_window_after_a_reset():
    detector = DriftDetector(window=3)
    for e in (1e-4, 1e-4, 1e-4):
        detector.observe(e)
    detector.reset()
    assert not detector.observe(1e-4) and not detector.observe(1.0)
    restored = DriftDetector(window=3)
    restored.set_state(detector.state())
    assert restored.state().tolist() == detector.state().tolist()


@pytest.mark.parametrize("kwargs, match", [
    (dict(ratio=1.0), "ratio must be > 1"),
    (dict(floor=-1.0), "floor must be >= 0"),
    (dict(window=0), "window must be an integer >= 1"),
    (dict(catch_up=-1), "catch_up must be an integer >= 0"),
    (dict(keep_cosine=2.0), r"keep_cosine must be in \[-1, 1\]"),
])
def test_detector_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DriftDetector(**kwargs)


# -- the re-seed ------------------------------------------------------------------------------
def test_reseed_keeps_confirmed_components_exactly_and_replaces_the_others():
    rng = np.random.default_rng(0)
    old = OLD * rng.uniform(0.5, 2.0, (N, 1))
    # picks in another order: the first half near the old rows, the rest new directions
    order = rng.permutation(N)
    picks = NEW[order] + 0.02 * OLD[order].max() * rng.uniform(size=(N, M))
    new, kept = reseed_components(old, picks, keep_cosine=0.8)
    assert kept.tolist() == [True] * (N // 2) + [False] * (N - N // 2)
    np.testing.assert_array_equal(new[kept], old[kept])
    # the replaced rows are the picks of new directions (one each), at the old rows' norms
    fresh = picks[order >= N // 2]
    fresh = fresh / np.linalg.norm(fresh, axis=1, keepdims=True)
    replaced = new[~kept] / np.linalg.norm(new[~kept], axis=1, keepdims=True)
    cosine = replaced @ fresh.T
    np.testing.assert_allclose(np.sort(cosine.max(axis=1)), 1.0, rtol=1e-12)
    assert sorted(cosine.argmax(axis=1).tolist()) == list(range(N - N // 2))
    np.testing.assert_allclose(np.linalg.norm(new[~kept], axis=1),
                               np.linalg.norm(old[~kept], axis=1), rtol=1e-12)


def test_reseed_rejects_picks_of_another_shape():
    with pytest.raises(ValueError, match=r"picks have shape \(3, 100\), expected"):
        reseed_components(OLD, OLD[:3])


# -- partial_fit on a changing stream --------------------------------------------------------
@pytest.mark.parametrize("update", ["stagewise", "sgd", "gd"])
def test_partial_fit_follows_an_abrupt_change(update):
    est = AND(N, update=update, random_state=0, blas_threads=1)
    before = stream(est, CHANGE, abrupt)
    first_new = est.n_stages_
    after = stream(est, 40, lambda b: NEW)
    assert before[-1] < -7
    # flagged once, at the first stage of the new stream
    assert np.flatnonzero(est.history_["drift"]).tolist() == [first_new]
    assert after[-1] < -7, after


def test_reseeding_follows_faster_than_the_update_alone():
    errors = {}
    for drift in ("reseed", None):
        est = AND(N, random_state=0, blas_threads=1, drift=drift)
        errors[drift] = stream(est, CHANGE + 10, abrupt)
        assert np.any(est.history_["drift"]) == (drift is not None)
    assert errors["reseed"][-1] < errors[None][-1] - 3, errors


def test_detect_only_flags_and_reseed_acts_on_request():
    est = AND(N, random_state=0, blas_threads=1, drift="detect")
    stream(est, CHANGE + 1, abrupt)
    assert est.history_["drift"][-1] == 1.0
    before = log_total_correlation_error(est.components_, NEW)
    kept = est.reseed(block(CHANGE + 1, NEW))
    assert 0 < kept.sum() < N
    assert log_total_correlation_error(est.components_, NEW) < before


@pytest.mark.parametrize("update", ["stagewise", "sgd"])
def test_stationary_and_weights_only_streams_raise_no_alarm(update):
    est = AND(N, update=update, random_state=0, blas_threads=1)
    errors = stream(est, 150, lambda b: OLD)
    assert not np.any(est.history_["drift"])
    assert errors[-1] < errors.min() + 1  # holds its best answer
    # the weights become denser, the topics stay: the components explain the data as well
    reached = errors[-1]
    later = [est.partial_fit(block(1000 + b, OLD, dir_sparsity=20.0)) and
             log_total_correlation_error(est.components_, OLD) for b in range(20)]
    assert not np.any(est.history_["drift"])
    assert max(later) < reached + 1


def test_drift_parameter_is_checked():
    with pytest.raises(ValueError,
                       match=r"'drift' parameter of AND must be .*'reseed'.* Got 'forget'"):
        AND(N, drift="forget").partial_fit(block(0, OLD))


def test_resume_across_a_change_is_bit_exact(tmp_path):
    path = tmp_path / "fit.h5"
    params = dict(n_components=N, random_state=0, blas_threads=1, checkpoint=path)
    whole = AND(**params)
    stream(whole, CHANGE + 6, abrupt)
    path.unlink()
    for suffix in (".prev",):
        (tmp_path / ("fit.h5" + suffix)).unlink(missing_ok=True)
    # the first part, then a new estimator resumes at the change (a re-seed pending) and
    # again inside the catch-up that follows it
    first = AND(**params)
    for b in range(CHANGE + 1):
        first.partial_fit(block(b, abrupt(b)))
    assert first.history_["drift"][-4:].any()
    second = AND(**params)
    second.partial_fit(block(CHANGE + 1, NEW), resume=True)
    for b in range(CHANGE + 2, CHANGE + 6):
        second.partial_fit(block(b, NEW))
    np.testing.assert_array_equal(second.components_, whole.components_)
    for key in ("alpha", "objective", "drift"):
        np.testing.assert_array_equal(second.history_[key], whole.history_[key])
