"""The Dask backend (streamnmf._dask): same components as the single-process fit, on thread and
process clusters, HDF5 / in-memory / dask-array inputs, checkpoints, lost workers."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("dask.distributed")  # optional for users; the [test] extra installs it

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

import streamnmf  # noqa: E402
from streamnmf import AND, HDF5Source, Purification  # noqa: E402
from streamnmf.datasets import make_dataset  # noqa: E402
from streamnmf.io.sources import ArraySource, IterableSource  # noqa: E402

N_SAMPLES, N_COMPONENTS, N_FEATURES = 3000, 10, 100
BLOCK_ROWS = 256  # 12 blocks: a tree of depth 4
FIT = dict(n_stages=6, tol=0, n_iter_no_change=None, random_state=0)
RTOL = 1e-10


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def assert_close(est, ref):
    assert est.n_stages_ == ref.n_stages_
    assert relative_error(est.components_, ref.components_) <= RTOL
    np.testing.assert_allclose(est.history_["objective"], ref.history_["objective"], rtol=1e-8)
    np.testing.assert_array_equal(est.history_["n_samples"], ref.history_["n_samples"])


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    return make_dataset("dir", N_SAMPLES, N_COMPONENTS, N_FEATURES, random_state=0)[0]


@pytest.fixture(scope="module")
def h5path(tmp_path_factory, data):
    import h5py

    path = tmp_path_factory.mktemp("dask") / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(BLOCK_ROWS, N_FEATURES))
        csr = sp.csr_matrix(np.where(data > np.quantile(data, 0.7), data, 0.0))
        group = f.create_group("csr")
        for name in ("data", "indices", "indptr"):
            group.create_dataset(name, data=getattr(csr, name))
        group.attrs["shape"] = csr.shape
    return str(path)


@pytest.fixture(scope="module")
def reference(h5path):
    """Single-process stagewise fit of the HDF5 file (no Dask)."""
    return AND(N_COMPONENTS, **FIT).fit(HDF5Source(h5path, block_rows=BLOCK_ROWS))


@pytest.fixture(scope="module")
def thread_client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def process_client():
    """Worker processes with nannies, as ``streamnmf.local_cluster`` starts them (the kill
    tests, last in this file, restart them)."""
    with streamnmf.local_cluster(2) as cluster, Client(cluster) as client:
        yield client


def test_local_cluster_settings_reach_the_workers_and_stay_there(process_client):
    from streamnmf._dask import LOCAL_CLUSTER_CONFIG

    key = "distributed.worker.memory.monitor-interval"
    seen = process_client.run(lambda: __import__("dask").config.get(key))
    assert set(seen.values()) == {LOCAL_CLUSTER_CONFIG[key]} and len(seen) == 2
    assert dask.config.get(key) != LOCAL_CLUSTER_CONFIG[key]  # this process: dask's default
    info = process_client.scheduler_info()["workers"].values()
    assert [w["nthreads"] for w in info] == [1, 1]


# -- same components as the single-process fit ---------------------------------------------------

def test_hdf5_stagewise_matches_single_process(h5path, reference, thread_client, process_client):
    source = HDF5Source(h5path, block_rows=BLOCK_ROWS)
    on_threads = AND(N_COMPONENTS, client=thread_client, **FIT).fit(source)
    assert_close(on_threads, reference)
    # a path works as in the single-process fit (default block height: one block here)
    on_processes = AND(N_COMPONENTS, client=process_client, **FIT).fit(source)
    assert_close(on_processes, reference)
    # the reduction tree is fixed by the blocks, not by the workers: bit for bit reproducible
    np.testing.assert_array_equal(on_processes.components_, on_threads.components_)
    from_path = AND(N_COMPONENTS, client=thread_client, **FIT).fit(h5path)
    assert_close(from_path, AND(N_COMPONENTS, **FIT).fit(h5path))


def test_command_line_fits_on_a_scheduler_and_on_a_local_cluster(h5path, process_client,
                                                                tmp_path):
    from streamnmf.cli import main

    def fit(*extra):
        out = str(tmp_path / f"model{len(os.listdir(tmp_path))}.h5")
        assert main(["fit", h5path, "--rank", str(N_COMPONENTS), "--n-stages", "4",
                     "--out", out, "--json", *extra]) == 0
        return streamnmf.load(out)

    single = fit()
    on_scheduler = fit("--scheduler", process_client.scheduler.address)
    on_local_cluster = fit("--workers", "1")
    assert_close(on_scheduler, single)
    assert_close(on_local_cluster, single)
    assert on_scheduler.n_stages_ == single.n_stages_ == 4


def test_blocks_grouped_into_fewer_tasks(h5path, reference, thread_client, monkeypatch):
    import streamnmf._dask

    # 12 blocks of 200 KB: grouped by size up to MIN_MAP_TASKS tasks, here 4 tasks of 3
    monkeypatch.setattr(streamnmf._dask, "MIN_MAP_TASKS", 4)
    ranges = [(i * BLOCK_ROWS, min((i + 1) * BLOCK_ROWS, N_SAMPLES)) for i in range(12)]
    assert [len(g) for g in streamnmf._dask._groups(ranges, N_FEATURES * 8)] == [3, 3, 3, 3]
    est = AND(N_COMPONENTS, client=thread_client, **FIT).fit(
        HDF5Source(h5path, block_rows=BLOCK_ROWS))
    assert_close(est, reference)
    # the configured task size: two blocks a task
    task_bytes = 2 * BLOCK_ROWS * N_FEATURES * 8
    assert [len(g) for g in streamnmf._dask._groups(ranges, N_FEATURES * 8, task_bytes)] == [2] * 6
    with streamnmf.config_context(dask_task_bytes=task_bytes, dask_malloc_tuning=False):
        runner = streamnmf._dask._Runner(dask, thread_client)
        est = AND(N_COMPONENTS, client=thread_client, **FIT).fit(
            HDF5Source(h5path, block_rows=BLOCK_ROWS))
    assert (runner.task_bytes, runner.tune_malloc) == (task_bytes, False)
    assert_close(est, reference)


def test_hdf5_csr_group(h5path, thread_client):
    source = HDF5Source(h5path, "csr", block_rows=BLOCK_ROWS)
    ref = AND(N_COMPONENTS, **FIT).fit(source)
    est = AND(N_COMPONENTS, client=thread_client, **FIT).fit(source)
    assert_close(est, ref)


def test_in_memory_gd_with_stages_across_blocks_and_passes(data, process_client):
    # 1100-sample stages end inside blocks and span the end of a pass; shuffled block order
    source = ArraySource(data, block_rows=BLOCK_ROWS, shuffle=True, random_state=3)
    kwargs = dict(FIT, update="gd", n_inner=20, stage_length=1100, n_stages=5)
    ref = AND(N_COMPONENTS, **kwargs).fit(source)
    est = AND(N_COMPONENTS, client=process_client, **kwargs).fit(source)
    assert_close(est, ref)
    assert est.samples_seen_ == 5 * 1100


def test_dask_array_without_and_with_client(data, thread_client):
    X = da.from_array(data, chunks=(BLOCK_ROWS, 40))  # column chunks are merged
    ref = AND(N_COMPONENTS, **FIT).fit(data)
    est = AND(N_COMPONENTS, **FIT).fit(X)  # no client: the default (threaded) scheduler
    assert_close(est, ref)
    assert est.n_features_in_ == N_FEATURES
    with_client = AND(N_COMPONENTS, client=thread_client, **FIT).fit(X)
    np.testing.assert_array_equal(with_client.components_, est.components_)
    np.testing.assert_allclose(with_client.transform(data[:50]), ref.transform(data[:50]),
                               rtol=1e-8, atol=1e-12)


def test_a_float32_fit_refines_in_float64_on_the_workers_too(thread_client):
    # past the float32 floor the stages decode in float64: the workers get the float64
    # decoding matrix and convert their float32 blocks as the single process does
    Y = make_dataset("ctm-ref", 3000, 20, 300, random_state=0, dtype=np.float32)[0]
    kwargs = dict(random_state=0, n_iter_no_change=None, blas_threads=1)
    ref = AND(20, **kwargs).fit(Y)
    est = AND(20, client=thread_client, **kwargs).fit(Y)
    assert ref._loop.refining and est._loop.refining
    assert est.components_.dtype == np.float32
    assert est.n_stages_ == ref.n_stages_
    assert relative_error(est.components_, ref.components_) <= 1e-6


def test_purification_on_a_dask_array_and_with_a_client(data, h5path, thread_client):
    # Purification's rule needs sum(y): the statistics carry it through the reduction
    kwargs = dict(n_stages=4, thresholds=0.05, tol=0, n_iter_no_change=None, random_state=0)
    ref = Purification(N_COMPONENTS, **kwargs).fit(data)  # the same init: the first 16 MiB
    est = Purification(N_COMPONENTS, **kwargs).fit(da.from_array(data, chunks=(BLOCK_ROWS, -1)))
    assert_close(est, ref)
    source = HDF5Source(h5path, block_rows=BLOCK_ROWS)
    ref = Purification(N_COMPONENTS, **kwargs).fit(source)
    est = Purification(N_COMPONENTS, client=thread_client, **kwargs).fit(source)
    assert_close(est, ref)


def test_sgd_on_a_dask_array_without_client_streams_the_chunks(data):
    kwargs = dict(FIT, update="sgd", n_stages=2)
    ref = AND(N_COMPONENTS, **kwargs).fit(ArraySource(data, block_rows=500))
    est = AND(N_COMPONENTS, **kwargs).fit(da.from_array(data, chunks=(500, -1)))
    np.testing.assert_array_equal(est.components_, ref.components_)


# -- errors --------------------------------------------------------------------------------------

def test_sgd_with_a_client_is_refused(h5path, thread_client):
    with pytest.raises(ValueError, match="update='sgd'.*sequential.*partial_fit"):
        AND(N_COMPONENTS, update="sgd", client=thread_client).fit(h5path)


def test_a_stream_without_random_access_is_refused(data, thread_client):
    stream = IterableSource([data[:1000], data[1000:]], n_samples=N_SAMPLES)
    with pytest.raises(ValueError, match="random access"):
        AND(N_COMPONENTS, client=thread_client, **FIT).fit(stream)


def test_without_dask_import_error_names_the_extra(monkeypatch, data):
    from streamnmf._dask import make_executor

    monkeypatch.setitem(sys.modules, "dask", None)  # "import dask" raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'streamnmf\[dask\]'"):
        make_executor(data, None, None, per_sample=False)


def test_streamnmf_imports_and_fits_without_dask():
    code = textwrap.dedent("""
        import sys
        for name in ("dask", "distributed"):
            sys.modules[name] = None  # as if not installed
        import numpy as np
        import streamnmf
        X = np.random.default_rng(0).random((200, 20))
        streamnmf.AND(4, n_stages=2).fit(X)
        assert not any(m.startswith("streamnmf._dask") for m in sys.modules)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_and_resume_with_dask(h5path, reference, tmp_path, thread_client):
    source = HDF5Source(h5path, block_rows=BLOCK_ROWS)
    path = tmp_path / "fit.ckpt.h5"
    whole = AND(N_COMPONENTS, client=thread_client, **FIT).fit(source)
    AND(N_COMPONENTS, client=thread_client, checkpoint=path, **dict(FIT, n_stages=3)).fit(source)
    resumed = AND(N_COMPONENTS, client=thread_client, checkpoint=path, **FIT).fit(
        source, resume=True)
    np.testing.assert_array_equal(resumed.components_, whole.components_)
    np.testing.assert_array_equal(resumed.history_["alpha"], whole.history_["alpha"])
    assert resumed.n_stages_ == FIT["n_stages"]
    # a Dask checkpoint resumes in the single-process fit, and the other way round
    single = AND(N_COMPONENTS, checkpoint=path, **dict(FIT, n_stages=8)).fit(source, resume=True)
    assert_close(single, AND(N_COMPONENTS, **dict(FIT, n_stages=8)).fit(source))


class FailingSource(HDF5Source):
    """Raises in the single-process fit after ``fail_after`` blocks: a mid-stage checkpoint."""

    def __init__(self, path, fail_after):
        super().__init__(path, block_rows=BLOCK_ROWS)
        self.fail_after = fail_after

    def blocks(self, start=0, epoch=0):
        for block in super().blocks(start, epoch):
            self.fail_after -= 1
            if self.fail_after < 0:
                raise OSError("the network share went away")
            yield block


def test_dask_resumes_a_single_process_checkpoint_written_mid_stage(h5path, reference, tmp_path,
                                                                     thread_client):
    path = tmp_path / "mid.ckpt.h5"
    with pytest.raises(OSError, match="network share"):
        AND(N_COMPONENTS, checkpoint=path, checkpoint_every=1, **FIT).fit(
            FailingSource(h5path, fail_after=12 * 2 + 5))  # stage 2, after 5 blocks
    resumed = AND(N_COMPONENTS, client=thread_client, checkpoint=path, **FIT).fit(
        HDF5Source(h5path, block_rows=BLOCK_ROWS), resume=True)
    assert_close(resumed, reference)


# -- lost workers --------------------------------------------------------------------------------

class KillOnceSource(HDF5Source):
    """Kills the worker process that first reads a block once ``armed`` exists (mid-stage)."""

    def __init__(self, path, armed, fired):
        super().__init__(path, block_rows=BLOCK_ROWS)
        self.armed, self.fired, self.client_pid = str(armed), str(fired), os.getpid()

    def read(self, row_start, row_stop):
        if os.getpid() != self.client_pid and os.path.exists(self.armed):
            try:
                os.close(os.open(self.fired, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)  # in the middle of a map task
        return super().read(row_start, row_stop)


def test_worker_killed_mid_stage_the_fit_completes_exactly(h5path, reference, tmp_path,
                                                           process_client):
    armed, fired = tmp_path / "armed", tmp_path / "fired"
    process_client.wait_for_workers(2, timeout=60)

    def arm_at_stage_1(est, row):
        if row["stage"] == 1:
            armed.touch()  # stage 2 kills the first worker that reads a block

    source = KillOnceSource(h5path, armed, fired)
    est = AND(N_COMPONENTS, client=process_client, callback=arm_at_stage_1, **FIT).fit(
        source)
    assert fired.exists()
    assert_close(est, reference)


def test_worker_killed_between_stages_scattered_blocks_are_sent_again(data,
                                                                      process_client):
    client = process_client
    client.wait_for_workers(2, timeout=60)  # the other kill test's victim is back
    killed = []

    def kill_a_worker(est, row):
        if row["stage"] == 1:
            pid = sorted(client.run(os.getpid).items())[0][1]
            os.kill(pid, signal.SIGKILL)  # takes half the scattered blocks and a copy of D
            killed.append(pid)

    source = ArraySource(data, block_rows=BLOCK_ROWS)
    ref = AND(N_COMPONENTS, **FIT).fit(source)
    est = AND(N_COMPONENTS, client=client, callback=kill_a_worker, **FIT).fit(source)
    assert killed
    assert_close(est, ref)
