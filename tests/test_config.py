"""The library's configuration: get_config, set_config, config_context."""

import threading

import numpy as np
import pytest

import streamnmf
from streamnmf import _lp
from streamnmf.linalg import min_inf_inverse


def test_defaults_and_context_restores_them():
    defaults = streamnmf.get_config()
    assert defaults == {"lp_solver": "auto", "dask_task_bytes": 64 << 20,
                        "dask_malloc_tuning": True}
    with streamnmf.config_context(lp_solver="scipy", dask_task_bytes=1 << 20):
        assert streamnmf.get_config()["lp_solver"] == "scipy"
        with streamnmf.config_context(lp_solver="highspy"):
            assert streamnmf.get_config()["lp_solver"] == "highspy"
        assert streamnmf.get_config() == {**defaults, "lp_solver": "scipy",
                                          "dask_task_bytes": 1 << 20}
    assert streamnmf.get_config() == defaults
    streamnmf.get_config()["lp_solver"] = "scipy"  # a copy
    assert streamnmf.get_config() == defaults


def test_set_config_reaches_new_threads_and_a_context_stays_in_its_thread():
    seen = {}

    def look(key):
        seen[key] = streamnmf.get_config()["dask_task_bytes"]

    try:
        streamnmf.set_config(dask_task_bytes=123)
        with streamnmf.config_context(dask_task_bytes=456):
            thread = threading.Thread(target=look, args=("other",))
            thread.start()
            thread.join()
            look("here")
    finally:
        streamnmf.set_config(dask_task_bytes=64 << 20)
    assert seen == {"other": 123, "here": 456}


@pytest.mark.parametrize("settings, error, match", [
    ({"lp_solvers": "scipy"}, TypeError, "unknown streamnmf setting.*'lp_solvers'.*known: "
                                         "lp_solver"),
    ({"lp_solver": "glpk"}, ValueError, r"lp_solver must be one of \('auto', 'simplex', "
                                        r"'highspy', 'scipy'\), got 'glpk'"),
    ({"dask_task_bytes": 0}, ValueError, r"dask_task_bytes must be an int >= 1 \(bytes\), got 0"),
    ({"dask_task_bytes": 1.5e6}, ValueError, "dask_task_bytes must be an int"),
    ({"dask_malloc_tuning": "no"}, ValueError, "dask_malloc_tuning must be True or False"),
])
def test_bad_settings_are_refused_and_nothing_changes(settings, error, match):
    before = streamnmf.get_config()
    with pytest.raises(error, match=match):
        streamnmf.set_config(**settings)
    with pytest.raises(error, match=match):
        with streamnmf.config_context(**settings):
            pass
    assert streamnmf.get_config() == before


def test_lp_solver_setting_chooses_the_solver(monkeypatch):
    C = np.random.default_rng(0).random((3, 8))
    with streamnmf.config_context(lp_solver="scipy"):
        B = min_inf_inverse(C)
    np.testing.assert_allclose(B @ C.T, np.eye(3), atol=1e-9)
    monkeypatch.setattr(_lp, "highspy", None)  # as if it were not installed
    with streamnmf.config_context(lp_solver="highspy"):
        with pytest.raises(ImportError, match="needs the highspy package"):
            min_inf_inverse(C)
    np.testing.assert_allclose(min_inf_inverse(C), B, atol=1e-9)  # "auto" falls back to scipy
