"""The BLAS thread policy: all threads on an idle machine, fewer on a busy one."""

import pytest
from threadpoolctl import threadpool_info

from streamnmf import AND, _blas
from streamnmf.datasets import make_dataset, make_init


def blas_threads_now():
    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


class FakeMachine:
    """/proc/stat and os.times of a machine whose other processes keep ``others`` cores busy."""

    def __init__(self, monkeypatch, cpus=2, others=0.0):
        self.cpus, self.others = cpus, others
        self.now = 0.0
        self.busy_jiffies = 0
        monkeypatch.setattr(_blas, "_usable_cpus", lambda: list(range(cpus)))
        monkeypatch.setattr(_blas, "read_cpu_times", self.read)
        monkeypatch.setattr(_blas.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(_blas.BlasThreads, "_own_seconds", staticmethod(lambda: self.now))
        monkeypatch.setattr(_blas.os, "sysconf", lambda name: 100)

    def read(self, cpus):
        return self.busy_jiffies, 100 * self.cpus * self.now

    def advance(self, seconds):
        # this process keeps one core busy, the others ``others`` cores
        self.busy_jiffies += round(100 * seconds * (1 + self.others))
        self.now += seconds


@pytest.fixture
def configured():
    threads = blas_threads_now()
    if threads < 2:
        pytest.skip("the BLAS library runs one thread here: no policy to observe")
    return threads


def test_an_idle_machine_keeps_the_librarys_threads(monkeypatch, configured):
    machine = FakeMachine(monkeypatch, cpus=configured, others=0.0)
    with _blas.BlasThreads("auto") as policy:
        machine.advance(1.0)
        policy.update()
        assert blas_threads_now() == configured and policy._limiter is None
    assert blas_threads_now() == configured


def test_busy_cores_lower_the_threads_and_free_ones_raise_them_again(monkeypatch, configured):
    machine = FakeMachine(monkeypatch, cpus=configured, others=float(configured))
    with _blas.BlasThreads("auto") as policy:
        assert blas_threads_now() == configured  # no interval measured yet
        machine.advance(1.0)
        policy.update()
        assert blas_threads_now() == 1
        machine.others = 0.0
        machine.advance(0.2)
        policy.update()  # within the interval: no new decision
        assert blas_threads_now() == 1
        machine.advance(1.0)
        policy.update()
        assert blas_threads_now() == configured
        machine.others = configured - 1.0  # one core left
        machine.advance(1.0)
        policy.update()
        assert blas_threads_now() == 1
    assert blas_threads_now() == configured  # restored at the end of the fit


def test_a_fixed_count_and_none(configured):
    with _blas.BlasThreads(1):
        assert blas_threads_now() == 1
    assert blas_threads_now() == configured
    with _blas.BlasThreads(None):
        assert blas_threads_now() == configured


def test_no_proc_stat_leaves_blas_alone(monkeypatch, configured):
    monkeypatch.setattr(_blas, "read_cpu_times", lambda cpus: None)
    with _blas.BlasThreads("auto") as policy:
        assert blas_threads_now() == configured and policy.setting is None


def test_the_policy_reads_this_machine():
    reading = _blas.read_cpu_times(_blas._usable_cpus())
    if reading is None:
        pytest.skip("no /proc/stat on this platform")
    busy, total = reading
    assert 0 <= busy <= total


def test_a_fit_under_a_fixed_count_equals_itself_bit_for_bit():
    data, truth, _ = make_dataset("dir", 2000, 10, 200, random_state=0)
    init = make_init(truth, random_state=1)
    fits = [AND(10, init=init, n_stages=4, blas_threads=1).fit(data).components_
            for _ in range(2)]
    assert (fits[0] == fits[1]).all()


@pytest.mark.parametrize("value", [0, -1, 1.5, "all"])
def test_bad_blas_threads_are_refused(value):
    data, truth, _ = make_dataset("dir", 200, 4, 20, random_state=0)
    with pytest.raises(ValueError, match=r"'blas_threads' parameter .* among \{'auto'\}, an int "
                                         r"in the range \[1, inf\) or None"):
        AND(4, init=truth, blas_threads=value).fit(data)
