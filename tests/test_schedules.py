"""Threshold schedules: the careful start, stall probes, the far-from-the-model regime,
restarts and their parameters."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import NMF

from streamnmf import AND, schedules
from streamnmf.schedules import Adaptive, Explicit, Geometric


def test_adaptive_lowering_pauses_the_stall_count_and_checks_its_parameters():
    schedule = schedules.Adaptive()
    schedule.observe(0, 0.1, change=1e-6, code_scale=1.0, decoding_error=1e-6)
    assert schedule.lowering and schedule.alpha(1) == pytest.approx(0.1 / 1.1)
    schedule.observe(1, 0.1 / 1.1, change=1e-6, code_scale=1.0, decoding_error=1.0)
    assert not schedule.lowering  # the threshold held: stalls count again
    assert not schedules.Geometric().lowering
    for name, bad in (("slow_range", 0.5), ("slow_decay", 0.9), ("max_decay", 0.5),
                      ("kappa", 0.0)):
        with pytest.raises(ValueError, match=f"Adaptive: {name} must be .*, got {bad}"):
            schedules.Adaptive(**{name: bad})


def test_adaptive_probes_a_stall_and_keeps_it_only_if_the_residual_falls():
    stalled = dict(change=1e-6, code_scale=1.0, decoding_error=1e-3)  # converged, error ~ alpha
    schedule = schedules.Adaptive(alpha0=1e-3)
    schedule.observe(0, 1e-3, objective=1.0, **stalled)
    assert schedule.alpha(1) == pytest.approx(1e-3 / 1.1)  # probe
    resumed = schedules.Adaptive(alpha0=1e-3)
    resumed.set_state(schedule.state())  # a checkpoint restores the pending probe
    schedule.observe(1, 1e-3 / 1.1, objective=0.5, **stalled)  # residual fell: keep, go on
    assert schedule.alpha(2) == pytest.approx(1e-3 / 1.1**2)
    resumed.observe(1, 1e-3 / 1.1, objective=1.5, **stalled)  # residual rose: noise, go back
    assert resumed.alpha(2) == 1e-3
    resumed.observe(2, 1e-3, objective=1.0, **stalled)
    assert resumed.alpha(3) == 1e-3  # no second probe at the level that failed
    with pytest.raises(ValueError, match="probe must be > 1 or None, got 0.5"):
        schedules.Adaptive(probe=0.5)
    # data the model does not generate (images, text): at a fixed point the decoding error stays
    # far above the threshold, and a probe is the only way down
    far_above = dict(stalled, decoding_error=1e-1)
    fresh = schedules.Adaptive(alpha0=1e-3)
    fresh.observe(0, 1e-3, objective=1.0, **far_above)
    assert fresh.alpha(1) == pytest.approx(1e-3 / 1.1)
    moving = dict(stalled, change=1.0)  # the matrix still moves more than the error: no probe
    fresh = schedules.Adaptive(alpha0=1e-3)
    fresh.observe(0, 1e-3, objective=1.0, **moving)
    assert fresh.alpha(1) == 1e-3


def test_schedules_restart_from_their_first_threshold():
    adaptive = Adaptive()
    adaptive.set_state(np.array([1e-12, -1.0, np.nan, np.nan, 1e-5, 0.0]))
    adaptive.restart(40)
    assert adaptive.alpha(40) == adaptive.alpha0
    adaptive.set_state(np.array([1e-12, -1.0, np.nan, np.nan, np.inf, 0.0]))
    adaptive.restart(40, alpha=1e-4)  # a rise to the given level, never above alpha0
    assert adaptive.alpha(40) == 1e-4
    geometric = Geometric(0.1, 2.0)
    geometric.restart(5)
    assert geometric.alpha(5) == 0.1 and geometric.alpha(6) == 0.05
    copy = Geometric(0.1, 2.0)
    copy.set_state(geometric.state())
    assert copy.alpha(6) == 0.05
    copy.set_state(np.zeros(0))  # a checkpoint written before schedules could restart
    assert copy.alpha(1) == 0.05
    explicit = Explicit([0.3, 0.2, 0.1])
    explicit.restart(10)
    assert [explicit.alpha(s) for s in (10, 11, 12, 13)] == [0.3, 0.2, 0.1, 0.1]


def test_adaptive_rises_only_after_a_restart_and_its_careful_descent():
    def observe(schedule, stage, error):
        schedule.observe(stage, schedule.alpha(stage), change=error, code_scale=1.0,
                         decoding_error=error, objective=1.0)

    fresh = Adaptive()
    fresh.set_state(np.array([1e-6, -1.0, np.nan, np.nan, np.inf]))
    observe(fresh, 0, 1e-3)
    assert fresh.alpha(1) == 1e-6  # never restarted: monotone, as in fit
    kept = Adaptive()
    kept.set_state(np.array([1e-6, -1.0, np.nan, np.nan, np.inf]))
    kept.restart(0, alpha=1e-6)  # all components kept: may rise at once
    observe(kept, 0, 1e-3)
    assert kept.alpha(1) == pytest.approx(1e-5)  # at most max_rise (10x) a stage
    replaced = Adaptive()
    replaced.restart(0)  # from alpha0: the careful descent comes first
    observe(replaced, 0, 1.0)
    assert replaced.alpha(1) <= replaced.alpha0
    with pytest.raises(ValueError, match="max_rise must be > 1 or None"):
        Adaptive(max_rise=1.0)


def test_adaptive_far_from_the_model_ends_the_careful_start_and_accelerates_kept_probes():
    # text-like stages: converged for the threshold, decoding error 10 thresholds, and a
    # residual that keeps half of the data's energy
    def stage(schedule, j, objective, energy=1.0, error_ratio=10.0):
        alpha = schedule.alpha(j)
        schedule.observe(j, alpha, change=1e-9, code_scale=1.0,
                         decoding_error=error_ratio * alpha, objective=objective,
                         energy=energy)
        return alpha

    far = Adaptive()
    alphas = [stage(far, j, objective=0.5 - 0.01 * j) for j in range(8)]
    # the careful start (1.1 a stage) until the FAR_STAGES-th far stage; from then on each
    # probe kept in a row squares the factor (1.1**4 after two kept ones), at most max_decay
    ratios = np.array(alphas[:-1]) / np.array(alphas[1:])
    n_careful = schedules.FAR_STAGES - 1
    assert ratios[:n_careful] == pytest.approx([1.1] * n_careful)
    assert ratios[n_careful:n_careful + 2] == pytest.approx([1.1**4, 1.1**8])
    assert ratios[-1] == pytest.approx(far.max_decay)
    assert not far.lowering  # the plateau rule may stop the fit again
    # a resumed schedule goes on exactly (the counts are part of its state)
    resumed = Adaptive()
    resumed.set_state(far.state())
    assert stage(resumed, 8, 0.3) == stage(far, 8, 0.3)
    assert resumed.alpha(9) == far.alpha(9)
    # a probe whose residual rose: back to the level before it, the streak starts again
    before = far.alpha(9)
    stage(far, 9, objective=1.0)
    assert far.alpha(10) == pytest.approx(before * far.max_decay)
    # the model explains the data (residual 0.1% of the energy): the careful start stays
    fits = Adaptive()
    alphas = [stage(fits, j, objective=1e-3 * 0.9**j) for j in range(8)]
    assert np.array(alphas[:-1]) / np.array(alphas[1:]) == pytest.approx([1.1] * 7)
    # no energy given (a caller of the older signature): never far
    unknown = Adaptive()
    for j in range(8):
        alpha = unknown.alpha(j)
        unknown.observe(j, alpha, change=1e-9, code_scale=1.0, decoding_error=10 * alpha,
                        objective=0.5 - 0.01 * j)
    assert unknown.alpha(8) == pytest.approx(0.1 / 1.1**8)
    # a checkpoint written before the far counts (7 values): restored with none
    almost = Adaptive()
    for j in range(n_careful):
        stage(almost, j, objective=0.5 - 0.01 * j)
    old = Adaptive()
    old.set_state(almost.state()[:7])
    falls = [stage(schedule, n_careful, objective=0.4) / schedule.alpha(n_careful + 1)
             for schedule in (almost, old)]
    assert falls == pytest.approx([1.1**4, 1.1])


def test_on_short_documents_the_threshold_leaves_the_careful_descent():
    # rows scaled to sum 1 of short documents (12 words drawn from 10 topics): counting noise
    # that the model does not generate, as on real text
    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(800, 0.05), size=10)
    counts = rng.poisson(12 * rng.dirichlet(np.full(10, 0.3), size=3000) @ topics)
    counts = counts[counts.sum(axis=1) > 0]
    Y = sp.csr_matrix(counts / counts.sum(axis=1, keepdims=True))
    # from random rows (SPA's start is close enough here that the careful descent suffices)
    model = AND(10, init="random", random_state=0).fit(Y)
    assert model.alpha_ < 1e-9  # the careful descent alone: 1.6e-2 after the same 20 stages
    reference = NMF(10, init="nndsvda", random_state=0).fit(Y)
    assert model.reconstruction_err_ < 1.01 * reference.reconstruction_err_
    assert AND(10, random_state=0).fit(Y).reconstruction_err_ < (
        1.01 * reference.reconstruction_err_)
