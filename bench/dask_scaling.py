"""Dask backend scaling: seconds per stagewise pass over an HDF5 file, 1 and 2 workers.

Configurations, all fitting the same file from the same start with ``update="stagewise"``
(one pass per stage), ``tol=0`` and no early stop, so every configuration runs the same
stages on the same data:

* ``single``: the single-process backend (no Dask), BLAS with its default threads;
* ``single-1t``: the same with BLAS limited to one thread (threadpoolctl): the fair reference
  for one single-threaded Dask worker, so that "Dask overhead" is not confused with "one
  thread instead of two";
* ``dask-1``: ``streamnmf.local_cluster(1)`` (what ``streamnmf fit --workers 1`` starts: one
  single-threaded worker process, dask's housekeeping slowed), a fresh cluster per fit (no
  idle cluster running in this process while another one is timed);
* ``dask-2``: the same with 2 worker processes;
* ``dask-defaults-1`` / ``-2``: ``LocalCluster(n_workers, threads_per_worker=1,
  processes=True)`` with dask's default settings (memory polled every 100 ms by every nanny
  and worker, event-loop ticks every 20 ms): what that housekeeping costs on shared cores;
* ``raw-1`` / ``raw-2``: the map work of a pass (read, decode, accumulate; no Dask, no solve) in
  1 or 2 plain processes of a ``multiprocessing`` pool, decoding with the fits' middle stage's
  matrix and threshold: the speedup this machine allows at that moment. On a shared machine with
  ``sched_autogroup_enabled=1`` CPU is shared fairly between process groups (autogroups), so
  while other groups are busy a second process gets little extra CPU, and no code can reach 2x;
  ``raw-1 / raw-2`` measures that ceiling.

The seconds of a pass are the differences of ``history_["seconds"]`` (map-reduce wall time plus
the client's solve; callbacks excluded); the first stage of every fit is dropped (cluster
start, file opened on the workers, kernels loaded). Configurations run round-robin
(``--rounds`` rounds of ``--stages`` stages each) so that a burst of load hits them alike; the
load average is recorded before and after every fit, and the CPU seconds of this process
(client, scheduler, nannies) and of every worker per pass (an "idle-machine model": client
CPU + busiest worker's CPU). Reported: median seconds per pass, speedup ``dask-1 / dask-2``
(target >= 1.7 on 2 idle cores; and the same with dask's defaults) next to ``raw-1 / raw-2``, the overhead ``dask-1 /
single-1t``, and the largest relative difference of the components against ``single``.

The data file is generated once (``write_hdf5``, "dir" data, dense float64, contiguous: the
workers map their blocks) and reused: full 200000 x 1000 (1.6 GB, 96 blocks; n_components
100), quick 59040 x 400 (189 MB, 12 blocks; 40).

``--n-samples`` changes the number of rows (passes of several seconds at one worker: 600000
rows, 4.8 GB). The canonical run (default options, not ``--quick``) writes
``bench/results/dask_scaling.json``; other runs write to ``bench/results/tmp/``.

Usage: ``python bench/dask_scaling.py [--quick] [--n-samples N] [--data PATH] [--out DIR]``
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402

SIZES = {
    "full": dict(n_samples=200_000, n_features=1000, n_components=100, stages=4, rounds=2),
    "quick": dict(n_samples=59_040, n_features=400, n_components=40, stages=4, rounds=2),
}
CONFIGS = ("single", "single-1t", "dask-1", "dask-2", "dask-defaults-1", "dask-defaults-2")
RAW = ("raw-1", "raw-2")  # the same block work in 1 / 2 plain processes: the machine's ceiling


def ensure_data(path, n_samples, n_features, n_components):
    """The benchmark file: reused when it has the requested shape, else (re)generated."""
    import h5py

    from streamnmf.datasets import write_hdf5

    if os.path.exists(path):
        try:
            with h5py.File(path, "r") as f:
                if f["data"].shape == (n_samples, n_features) and \
                        f["components"].shape[0] == n_components:
                    return 0.0
        except (OSError, KeyError):
            pass
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_hdf5(path, "dir", n_samples, n_components, n_features, random_state=0,
               overwrite=True)
    return time.perf_counter() - t0


MAP_REDUCE_SECONDS = []


def _timed_run():
    """Wrap the Dask backend's stage map-reduce to record its wall seconds (without the
    client's solve and decoding-matrix update, which both backends share)."""
    from streamnmf import _dask

    inner = _dask._Runner.run

    def run(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(self, *args, **kwargs)
        finally:
            MAP_REDUCE_SECONDS.append(time.perf_counter() - t0)

    _dask._Runner.run = run


def fit_seconds(make, source, n_stages, start, worker_pids=()):
    """Per-pass seconds (first stage dropped), the map-reduce part of them (Dask), the CPU
    seconds per pass of this process (client, scheduler, nannies) and of every worker, the
    components and the load average before/after."""
    import psutil

    from streamnmf import AND

    procs = [psutil.Process()] + [psutil.Process(pid) for pid in worker_pids]

    def cpu():
        return [sum(p.cpu_times()[:2]) for p in procs]  # user + system, all threads

    marks = []

    def callback(est, row):
        marks.append(cpu())

    load0 = os.getloadavg()
    est = AND(start.shape[0], update="stagewise", init=start, n_stages=n_stages, tol=0,
              n_iter_no_change=None, callback=callback, **make())
    del MAP_REDUCE_SECONDS[:]
    est.fit(source)
    seconds = np.diff(np.r_[0.0, est.history_["seconds"]])[1:]
    cpu_per_pass = np.diff(np.asarray(marks), axis=0)  # (stages - 1, 1 + workers)
    return dict(seconds=seconds.tolist(), map_reduce=MAP_REDUCE_SECONDS[1:],
                client_cpu=cpu_per_pass[:, 0].tolist(),
                worker_cpu=cpu_per_pass[:, 1:].tolist(),
                components=est.components_, load=[load0, os.getloadavg()])


def _raw_init():
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # for the life of this pool process


def _raw_pass(args):
    """The map work of ``ranges`` in a plain process (no Dask): read, decode, accumulate."""
    path, ranges, D, alpha, kind = args
    from streamnmf import HDF5Source
    from streamnmf._dask import _accumulate

    source = _RAW_SOURCES.setdefault(path, HDF5Source(path))
    t0 = time.perf_counter()
    _accumulate((source.read(lo, hi) for lo, hi in ranges), D, alpha, kind, False)
    return time.perf_counter() - t0


_RAW_SOURCES = {}


def raw_seconds(pool, path, ranges, D, alpha, kind, processes, passes):
    """Wall seconds of ``passes`` passes split over ``processes`` pool processes."""
    half = -(-len(ranges) // processes)
    parts = [(path, ranges[i:i + half], D, alpha, kind) for i in range(0, len(ranges), half)]
    out = []
    for _ in range(passes):
        t0 = time.perf_counter()
        pool.map(_raw_pass, parts, chunksize=1)
        out.append(time.perf_counter() - t0)
    return out


def _merge_tasks(n_tasks):
    """Merge tasks of the backend's reduction tree over ``n_tasks`` map tasks."""
    from streamnmf._dask import MERGE_FAN_IN

    merges = 0
    while n_tasks > 1:
        groups = -(-n_tasks // MERGE_FAN_IN)
        merges += groups - (n_tasks % MERGE_FAN_IN == 1)  # a part left alone is not merged
        n_tasks = groups
    return merges


def _reduction_depth(n_tasks):
    from streamnmf._dask import MERGE_FAN_IN

    depth = 0
    while n_tasks > 1:
        n_tasks, depth = -(-n_tasks // MERGE_FAN_IN), depth + 1
    return depth


def _autogroup():
    """Whether the kernel shares CPU fairly between process groups (autogroups) rather than
    processes: then extra worker processes get no extra CPU on a busy machine."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small file and few stages")
    parser.add_argument("--data", default=None,
                        help="HDF5 file to use or create (default: in the temp directory)")
    parser.add_argument("--n-samples", type=int, default=None,
                        help="rows of the data file (default: 200000 full, 59040 quick); other "
                             "values write to bench/results/tmp")
    parser.add_argument("--stages", type=int, default=None, help="stages per fit")
    parser.add_argument("--rounds", type=int, default=None, help="round-robin rounds")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    args = parser.parse_args(argv)
    canonical = _common.canonical_run(parser, args, ignore=("data", "n_samples"))
    size_name = "quick" if args.quick else "full"
    size = dict(SIZES[size_name])
    stages = args.stages or size["stages"]
    rounds = args.rounds or size["rounds"]
    n, m, k = size["n_samples"], size["n_features"], size["n_components"]
    custom_n = args.n_samples is not None and args.n_samples != n
    stem = _common.output_stem("dask_scaling", args.quick, args.out, canonical and not custom_n)
    if args.n_samples is not None:
        if args.n_samples < 1:
            parser.error(f"--n-samples must be at least 1, got {args.n_samples}")
        n = args.n_samples
    path = args.data or os.path.join(tempfile.gettempdir(), "streamnmf-bench",
                                     f"dask_scaling-{n}x{m}.h5")

    from dask.distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    import h5py

    from streamnmf import AND, HDF5Source, local_cluster
    from streamnmf.datasets import make_init

    _timed_run()
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core"):
        logging.getLogger(name).setLevel(logging.ERROR)  # closing clusters logs at INFO
    machine = _common.machine_info()
    generate_seconds = ensure_data(path, n, m, k)
    with h5py.File(path, "r") as f:
        truth = f["components"][()]
    start = make_init(truth, in_span=0.5, random_state=1)
    source = HDF5Source(path)
    n_blocks = -(-n // source.block_rows)
    print(f"data {path}: {n} x {m} float64 ({n * m * 8 / 2**30:.2f} GiB), {k} components, "
          f"{n_blocks} blocks of {source.block_rows} rows; generated in {generate_seconds:.1f} s"
          if generate_seconds else f"data {path}: reused ({n} x {m}, {n_blocks} blocks)",
          flush=True)

    # warm the page cache and numba's kernels in this process; the raw passes decode with the
    # matrix and threshold of the fits' middle stage: the codes grow denser as the threshold
    # falls, so stage 0's would make the raw work cheaper than the fits' (by 1.5x here)
    warm = AND(k, init=start, n_stages=1 + stages // 2, tol=0, n_iter_no_change=None).fit(source)
    D, alpha, kind = warm._loop.D, warm._loop.alpha, warm._loop.rule.kind
    import multiprocessing

    from streamnmf.io.sources import pass_ranges

    ranges = list(pass_ranges(n, source.block_rows))
    pool = multiprocessing.get_context("spawn").Pool(2, initializer=_raw_init)
    pool.map(_raw_pass, [(path, ranges[:1], D, alpha, kind)] * 2, chunksize=1)

    blas_threads = {}
    try:
        runs = {name: dict(seconds=[], map_reduce_seconds=[], client_cpu=[], worker_cpu=[],
                           load=[]) for name in CONFIGS + RAW}
        components = {}
        for r in range(rounds):
            for name in CONFIGS:
                cluster = client = None
                kwargs, pids = {}, ()
                if name.startswith("dask"):
                    # a cluster per fit: no idle cluster's event loops in this process while
                    # another configuration is timed (its first stage, dropped, warms it up)
                    if "defaults" in name:
                        cluster = LocalCluster(n_workers=int(name[-1]), threads_per_worker=1,
                                               processes=True, dashboard_address=":0",
                                               silence_logs=logging.ERROR)
                    else:
                        cluster = local_cluster(int(name[-1]), silence_logs=logging.ERROR)
                    client = Client(cluster)
                    kwargs, pids = dict(client=client), sorted(client.run(os.getpid).values())
                    blas_threads = client.run(lambda: [
                        lib["num_threads"] for lib in __import__("threadpoolctl").threadpool_info()
                        if lib["user_api"] == "blas"])
                try:
                    if name == "single-1t":
                        with threadpool_limits(1, user_api="blas"):
                            res = fit_seconds(lambda: kwargs, source, stages + 1, start, pids)
                    else:
                        res = fit_seconds(lambda: kwargs, source, stages + 1, start, pids)
                finally:
                    if client is not None:
                        client.close()
                        cluster.close()
                run = runs[name]
                run["seconds"] += res["seconds"]
                run["map_reduce_seconds"] += res["map_reduce"]
                run["client_cpu"] += res["client_cpu"]
                run["worker_cpu"] += res["worker_cpu"]
                run["load"].append(res["load"])
                components.setdefault(name, res["components"])
                load = res["load"]
                print(f"  round {r}  {name:9s} " + " ".join(f"{s:6.2f}" for s in res["seconds"])
                      + (f"   (map-reduce {np.median(res['map_reduce']):.2f})"
                         if res["map_reduce"] else "")
                      + f"   cpu client {np.median(res['client_cpu']):.2f}"
                      + (" workers " + " ".join(
                          f"{v:.2f}" for v in np.median(res["worker_cpu"], axis=0))
                         if pids else "")
                      + f"   load {load[0][0]:.1f} -> {load[1][0]:.1f}", flush=True)
            for name in RAW:
                load0 = os.getloadavg()
                secs = raw_seconds(pool, path, ranges, D, alpha, kind, int(name[-1]), stages)
                runs[name]["seconds"] += secs
                runs[name]["load"].append([load0, os.getloadavg()])
                print(f"  round {r}  {name:9s} " + " ".join(f"{s:6.2f}" for s in secs)
                      + "   (map work only, plain processes)"
                      + f"   load {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        pool.terminate()

    med = {name: _common.summary(runs[name]["seconds"]) for name in CONFIGS + RAW}
    raw_speedup = med["raw-1"]["median"] / med["raw-2"]["median"]
    speedup = med["dask-1"]["median"] / med["dask-2"]["median"]
    speedup_defaults = med["dask-defaults-1"]["median"] / med["dask-defaults-2"]["median"]
    overhead_1t = med["dask-1"]["median"] / med["single-1t"]["median"]
    overhead = med["dask-1"]["median"] / med["single"]["median"]
    vs_single = med["single"]["median"] / med["dask-2"]["median"]
    # CPU model of an idle machine: the client's CPU (scheduler, solve) is serial with the
    # map phase, the workers run in parallel: pass = client + slowest worker
    projected = {}
    for name in CONFIGS:
        client_cpu = float(np.median(runs[name]["client_cpu"]))
        workers = np.asarray(runs[name]["worker_cpu"])
        slowest = float(np.median(workers.max(axis=1))) if workers.size else 0.0
        projected[name] = dict(client_cpu=client_cpu, slowest_worker_cpu=slowest,
                               worker_cpu_total=float(np.median(workers.sum(axis=1)))
                               if workers.size else 0.0,
                               pass_seconds=client_cpu + slowest)
    ref = components["single"]
    differences = {name: float(np.abs(c - ref).max() / np.abs(ref).max())
                   for name, c in components.items()}
    stats_bytes = (k * m + k * k + 2 * k + m) * 8
    from streamnmf._dask import _groups

    n_tasks = len(_groups(ranges, m * 8))
    traffic = dict(
        broadcast_D_bytes=m * k * 8, stats_bytes_per_task=stats_bytes, blocks=n_blocks,
        map_tasks=n_tasks, merge_tasks=_merge_tasks(n_tasks),
        reduction_depth=_reduction_depth(n_tasks),
        stats_bytes_per_pass_at_most=stats_bytes * n_tasks, data_bytes_per_pass=n * m * 8,
        flops_per_pass=4.0 * n * m * k,
    )
    mr = {name: _common.summary(runs[name]["map_reduce_seconds"])["median"]
          for name in CONFIGS}
    rows = [dict(config=name, median=med[name]["median"], iqr=med[name]["iqr"],
                 n=med[name]["n"], ratio=med[name]["median"] / med["single"]["median"],
                 mr=mr[name], diff=differences[name]) for name in CONFIGS]
    print()
    print(_common.table(rows, [("config", "config"), ("median", "s/pass (median)"),
                               ("iqr", "IQR"), ("n", "passes"),
                               ("ratio", "vs single"), ("mr", "map-reduce s"),
                               ("diff", "max rel diff")],
                        floatfmt="{:.3g}"))
    print(f"\nspeedup 2 vs 1 worker: {speedup:.2f}x (target >= 1.7); overhead 1 worker vs "
          f"single-process 1 BLAS thread: {overhead_1t:.2f}x, vs 2 BLAS threads: {overhead:.2f}x"
          f"; single-process / dask-2: {vs_single:.2f}x\nwith dask's default housekeeping: "
          f"{speedup_defaults:.2f}x")
    print("CPU seconds per pass (client = this process: client, scheduler, nannies):")
    for name in CONFIGS:
        pr = projected[name]
        print(f"  {name:9s} client {pr['client_cpu']:6.2f}  workers total "
              f"{pr['worker_cpu_total']:6.2f}  slowest worker {pr['slowest_worker_cpu']:6.2f}  "
              f"-> idle-machine model {pr['pass_seconds']:6.2f} s/pass")
    cpu_speedup = projected["dask-1"]["pass_seconds"] / projected["dask-2"]["pass_seconds"]
    cpu_overhead = projected["dask-1"]["pass_seconds"] / projected["single-1t"]["pass_seconds"]
    print(f"idle-machine model: speedup 2 vs 1 worker {cpu_speedup:.2f}x, dask-1 / single-1t "
          f"{cpu_overhead:.2f}x")
    print(f"the machine's ceiling now: the same map work in 2 plain processes is "
          f"{raw_speedup:.2f}x faster than in 1 (raw-1 {med['raw-1']['median']:.2f} s, raw-2 "
          f"{med['raw-2']['median']:.2f} s); Dask reaches {speedup / raw_speedup:.0%} of it")
    if mr["dask-1"] and mr["dask-2"]:
        print(f"map-reduce only (no client solve): speedup 2 vs 1 worker "
              f"{mr['dask-1'] / mr['dask-2']:.2f}x; dask-1 map-reduce / single-1t pass "
              f"{mr['dask-1'] / med['single-1t']['median']:.2f}x")
    print(f"worker BLAS threads: {blas_threads}; load average now {os.getloadavg()}")
    result = dict(
        benchmark="dask_scaling", size=size_name, data=path, n_samples=n, n_features=m,
        n_components=k, block_rows=source.block_rows, stages_per_fit=stages, rounds=rounds,
        generate_seconds=generate_seconds, runs=runs, summary=med,
        speedup_2_vs_1_worker=speedup, overhead_1_worker_vs_single_1_thread=overhead_1t,
        speedup_2_vs_1_worker_dask_defaults=speedup_defaults,
        overhead_1_worker_vs_single=overhead, single_over_dask_2=vs_single,
        raw_speedup_2_vs_1_process=raw_speedup,
        dask_speedup_over_raw_speedup=speedup / raw_speedup,
        map_reduce_median_seconds=mr, cpu_model=projected,
        cpu_model_speedup_2_vs_1_worker=cpu_speedup,
        cpu_model_overhead_1_worker_vs_single_1_thread=cpu_overhead,
        autogroup_enabled=_autogroup(),
        speedup_map_reduce_2_vs_1_worker=(mr["dask-1"] / mr["dask-2"]
                                          if mr["dask-1"] and mr["dask-2"] else None),
        components_max_rel_diff=differences, traffic=traffic, worker_blas_threads=blas_threads,
        machine=machine,
    )
    out = _common.save_json(result, stem.with_suffix(".json"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
