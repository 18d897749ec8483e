"""Threshold schedules: the careful start, stall probes, restarts and their parameters."""

import numpy as np
import pytest

from streamnmf import schedules
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
