"""Bounded memory: peak RSS of ``streamnmf fit`` as the HDF5 file grows tenfold.

Setting: the DIR data set of the AND paper (``streamnmf generate dir``), 1000 features, 100
true components, stored dense as float32 (uncompressed, contiguous: the source maps its
blocks, whose pages count in the RSS while mapped), at 1e5, 3e5 and 1e6 samples (0.4, 1.2,
4 GB); ``--quick``: 1e4 and 1e5. Each file is fitted by the command line,
``streamnmf fit FILE --rank 100 --init random --n-stages 2 --checkpoint CK --out MODEL``, in a
fresh process whose peak resident set size is the kernel's ``ru_maxrss`` for that child
(``os.wait4``); a psutil thread samples the RSS every 20 ms for the trace in the plot.

Every fit runs under both thread settings (default OpenBLAS threads and
``OPENBLAS_NUM_THREADS=1``), ``--repeats`` times, sizes and settings interleaved. References
measured in the same run: the RSS of a process that only imports what the CLI imports, the
peak RSS of ``streamnmf generate`` (the writer is block by block too), and the compile cost:
a small in-process fit timed with an empty Numba cache (``NUMBA_CACHE_DIR`` pointing to a new
folder) against the warm cache, and the peak RSS of the CLI fit of the smallest file while
compiling (kept out of the table: every measured fit runs with the warm cache).

Acceptance: the median peak RSS at the largest file exceeds the one at the smallest file by
less than 10 %.

Outputs ``memory.json`` / ``.png`` in ``bench/results`` (``bench/results/tmp`` for
``--quick`` and non-default options; ``--out`` overrides); the generated files are deleted at
the end unless ``--keep`` (``--workdir`` reuses files already there).

Usage: ``python bench/memory.py [--quick] [--keep] [--workdir DIR] [--repeats N]``
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
from _common import loadavg  # noqa: E402
from out_of_core import (  # noqa: E402
    THREAD_MODES, last_json, mode_order, run_measured, thread_env,
)

SIZES = {"full": [100_000, 300_000, 1_000_000], "quick": [10_000, 100_000]}
N_FEATURES = 1000
RANK = 100
N_STAGES = 2
TARGET = 0.10  # largest / smallest peak RSS - 1

CLI = [sys.executable, "-m", "streamnmf.cli"]
#: compile probe: first fit of a small float32 dense array (the kernels the CLI fit above uses)
PROBE = (
    "import time, json; t0 = time.perf_counter(); import numpy as np; from streamnmf import AND; "
    "t1 = time.perf_counter(); X = np.random.default_rng(0).random((2000, 200), dtype=np.float32); "
    "AND(20, init='random', n_stages=2, random_state=0).fit(X); t2 = time.perf_counter(); "
    "AND(20, init='random', n_stages=2, random_state=0).fit(X); t3 = time.perf_counter(); "
    "print(json.dumps(dict(import_s=t1 - t0, first_fit_s=t2 - t1, second_fit_s=t3 - t2)))"
)
IMPORTS = ("import numpy, scipy.linalg, h5py, numba, sklearn; import streamnmf, streamnmf.cli, "
           "streamnmf.io.hdf5, streamnmf._engine, streamnmf._kernels")


def generate(path, n_samples, seed=0):
    """Write the DIR file with the CLI unless a file of that size is there; return the record."""
    import h5py

    if path.exists():
        try:
            with h5py.File(path, "r") as f:
                if f["data"].shape == (n_samples, N_FEATURES) and f["data"].dtype == np.float32:
                    return dict(reused=True, bytes=path.stat().st_size)
        except Exception:
            pass
        path.unlink()
    cmd = CLI + ["generate", "dir", str(path), "--n-samples", str(n_samples), "--n-components",
                 str(RANK), "--n-features", str(N_FEATURES), "--float32", "--seed", str(seed),
                 "--json"]
    res = run_measured(cmd, env=thread_env("default"))
    if res["rc"]:
        raise RuntimeError(f"generate failed:\n{res['stderr'][-3000:]}")
    return dict(reused=False, bytes=path.stat().st_size, seconds=res["wall_s"],
                maxrss_mib=res["maxrss_mib"], loadavg=res["loadavg_end"])


def fit_once(path, workdir, mode, extra_env=None):
    """One ``streamnmf fit`` in a fresh process; return its peak RSS, times and load."""
    ck, model = workdir / "fit.ckpt.h5", workdir / "model.h5"
    _remove_outputs(workdir)
    cmd = CLI + ["fit", str(path), "--rank", str(RANK), "--init", "random", "--n-stages",
                 str(N_STAGES), "--checkpoint", str(ck), "--out", str(model), "--overwrite",
                 "--seed", "0", "--json"]
    res = run_measured(cmd, env=thread_env(mode, extra_env))
    if res["rc"]:
        raise RuntimeError(f"fit failed ({mode}):\n{res['stderr'][-3000:]}")
    out = last_json(res["stdout"]) or {}
    return dict(mode=mode, maxrss_mib=res["maxrss_mib"], wall_s=res["wall_s"],
                fit_s=out.get("fit_seconds"), n_stages=out.get("n_stages"),
                samples_seen=out.get("samples_seen"), user_s=res["user_s"],
                sys_s=res["sys_s"], loadavg=res["loadavg_end"], trace=res["rss_trace"])


def _ring(path):
    """Block size and ring of buffers the CLI's reader (prefetch on) allocates for a file."""
    from streamnmf.io.hdf5 import HDF5Source
    from streamnmf.io.sources import RING_BUFFERS

    src = HDF5Source(path, prefetch=True)
    n_blocks = -(-src.n_samples // src.block_rows)
    slots = RING_BUFFERS + src.prefetch
    block_mib = src.block_rows * src.n_features * src.dtype.itemsize / 2**20
    src.close()
    return dict(block_rows=src.block_rows, n_blocks=n_blocks, ring_slots=slots,
                block_mib=block_mib, ring_mib=min(n_blocks, slots) * block_mib)


def _remove_outputs(workdir):
    """The checkpoint (and its ``.prev`` copy) and the model file of the last fit."""
    for p in list(workdir.glob("fit.ckpt.h5*")) + list(workdir.glob("model.h5*")):
        p.unlink(missing_ok=True)


def import_baseline(mode):
    res = run_measured([sys.executable, "-c", IMPORTS], env=thread_env(mode))
    return dict(mode=mode, maxrss_mib=res["maxrss_mib"], wall_s=res["wall_s"],
                loadavg=res["loadavg_end"])


def _thin(trace, n=300):
    if len(trace) <= n:
        return trace
    idx = np.linspace(0, len(trace) - 1, n).astype(int)
    return [trace[i] for i in idx]


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = result["sizes"]
    gb = [result["files"][str(n)]["bytes"] / 1e9 for n in sizes]
    for mode, marker in zip(THREAD_MODES, "os"):
        med = [result["summary"][f"{n}/{mode}"]["maxrss_mib"]["median"] for n in sizes]
        lo = [result["summary"][f"{n}/{mode}"]["maxrss_mib"]["min"] for n in sizes]
        hi = [result["summary"][f"{n}/{mode}"]["maxrss_mib"]["max"] for n in sizes]
        ax.errorbar(gb, med, yerr=[np.subtract(med, lo), np.subtract(hi, med)], marker=marker,
                    capsize=3, label=f"streamnmf fit, {mode} BLAS threads")
    base = np.median([b["maxrss_mib"] for b in result["import_baseline"]])
    ax.axhline(base, color="gray", ls=":", label="import only (python + libraries)")
    ref = result["summary"][f"{sizes[0]}/default"]["maxrss_mib"]["median"]
    ax.axhline(ref * (1 + TARGET), color="red", ls="--", lw=1,
               label="target: smallest file + 10 %")
    ax.plot(gb, [g * 1e9 / 2**20 for g in gb], color="k", alpha=0.25, lw=1,
            label="file size (for scale)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("HDF5 file size (GB)")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title(f"peak RSS of 'streamnmf fit' (rank {RANK}, {N_STAGES} stages)")
    ax.legend(fontsize=8)
    for n in (sizes[0], sizes[-1]):
        trace = result["traces"].get(str(n))
        if trace:
            t, rss = zip(*trace)
            ax2.plot(t, rss, label=f"{n:.0e} samples ({result['files'][str(n)]['bytes'] / 1e9:.2f} GB)")
    ax2.set_xlabel("seconds since start")
    ax2.set_ylabel("RSS (MiB)")
    ax2.set_title("RSS over time (default threads)")
    ax2.legend(fontsize=8)
    _common.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--workdir", default=None, help="folder of the generated files")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    args = parser.parse_args(argv)
    stem = _common.output_stem("memory", args.quick, args.out, _common.canonical_run(
        parser, args, ignore=("keep", "workdir", "worker")))
    size_kind = "quick" if args.quick else "full"
    sizes = SIZES[size_kind]
    repeats = args.repeats or 2
    machine = _common.machine_info()
    workdir = Path(args.workdir) if args.workdir else Path(
        tempfile.mkdtemp(prefix="streamnmf-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    need = sum(sizes) * N_FEATURES * 4 * 1.05
    free = shutil.disk_usage(workdir).free
    if free < need * 1.2:
        raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free, the files need {need / 1e9:.1f} GB")
    t_start = time.perf_counter()
    files = {}
    try:
        for n in sizes:
            path = workdir / f"dir-{n}.h5"
            files[str(n)] = dict(path=str(path), **generate(path, n))
            print(f"file {path.name}: {files[str(n)]['bytes'] / 1e9:.2f} GB "
                  f"({'reused' if files[str(n)]['reused'] else 'written'}"
                  f"{'' if files[str(n)]['reused'] else ', generate peak RSS %.0f MiB' % files[str(n)]['maxrss_mib']})",
                  flush=True)
        smallest = workdir / f"dir-{sizes[0]}.h5"
        for n in sizes:  # what the reader keeps: a ring of block buffers (3 + 2 read ahead)
            files[str(n)].update(_ring(workdir / f"dir-{n}.h5"))

        # compile: an empty numba cache, then the warm cache (both default threads)
        cold_dir = Path(tempfile.mkdtemp(prefix="numba-cold-", dir=workdir))
        cold = fit_once(smallest, workdir, "default", {"NUMBA_CACHE_DIR": str(cold_dir)})
        shutil.rmtree(cold_dir, ignore_errors=True)
        warm = fit_once(smallest, workdir, "default")
        probes = {}
        for cache in ("cold", "warm"):
            extra = None
            if cache == "cold":
                cold_dir = Path(tempfile.mkdtemp(prefix="numba-cold-", dir=workdir))
                extra = {"NUMBA_CACHE_DIR": str(cold_dir)}
            res = run_measured([sys.executable, "-c", PROBE], env=thread_env("1thread", extra))
            probes[cache] = last_json(res["stdout"]) or {"error": res["stderr"][-2000:]}
            if cache == "cold":
                shutil.rmtree(cold_dir, ignore_errors=True)
        compile_info = dict(
            probe_cold=probes["cold"], probe_warm=probes["warm"],
            compile_s=probes["cold"].get("first_fit_s", np.nan)
            - probes["warm"].get("first_fit_s", np.nan),
            cli_cold_wall_s=cold["wall_s"], cli_warm_wall_s=warm["wall_s"],
            cli_cold_maxrss_mib=cold["maxrss_mib"], cli_warm_maxrss_mib=warm["maxrss_mib"],
            loadavg=loadavg())
        print(f"compile: first small fit {probes['cold'].get('first_fit_s', np.nan):.2f} s with an "
              f"empty numba cache, {probes['warm'].get('first_fit_s', np.nan):.2f} s with the "
              f"cache; CLI fit peak RSS {cold['maxrss_mib']:.0f} MiB (compiling) vs "
              f"{warm['maxrss_mib']:.0f} MiB", flush=True)

        runs, baselines, traces = [], [], {}
        for r in range(repeats):
            for mode in mode_order(r):
                baselines.append(import_baseline(mode))
            for n in sizes:
                for mode in mode_order(r):
                    rec = fit_once(workdir / f"dir-{n}.h5", workdir, mode)
                    trace = rec.pop("trace")
                    if mode == "default" and str(n) not in traces:
                        traces[str(n)] = _thin(trace)
                    rec.update(n_samples=n, repeat=r, file_bytes=files[str(n)]["bytes"])
                    runs.append(rec)
                    print(f"  repeat {r} n={n:>8} {mode:>8}: peak RSS {rec['maxrss_mib']:7.1f} "
                          f"MiB, wall {rec['wall_s']:6.1f} s, fit {rec['fit_s'] or 0:6.1f} s, "
                          f"load {rec['loadavg'][0]:.2f}", flush=True)
    finally:
        if not args.keep:
            for rec in files.values():
                Path(rec["path"]).unlink(missing_ok=True)
            _remove_outputs(workdir)
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    summary, rows = {}, []
    for n in sizes:
        for mode in THREAD_MODES:
            sel = [x for x in runs if x["n_samples"] == n and x["mode"] == mode]
            s = dict(maxrss_mib=_common.summary([x["maxrss_mib"] for x in sel]),
                     wall_s=_common.summary([x["wall_s"] for x in sel]),
                     fit_s=_common.summary([x["fit_s"] for x in sel]),
                     loadavg=[x["loadavg"][0] for x in sel])
            summary[f"{n}/{mode}"] = s
            rows.append(dict(n=n, mode=mode, gb=files[str(n)]["bytes"] / 1e9,
                             rss=s["maxrss_mib"]["median"], rss_min=s["maxrss_mib"]["min"],
                             rss_max=s["maxrss_mib"]["max"], fit=s["fit_s"]["median"],
                             wall=s["wall_s"]["median"],
                             load=float(np.median(s["loadavg"]))))
    growth = {}
    for mode in THREAD_MODES:
        a = summary[f"{sizes[0]}/{mode}"]["maxrss_mib"]["median"]
        b = summary[f"{sizes[-1]}/{mode}"]["maxrss_mib"]["median"]
        base = float(np.median([x["maxrss_mib"] for x in baselines if x["mode"] == mode]))
        growth[mode] = dict(rss_small_mib=a, rss_large_mib=b, growth=b / a - 1.0,
                            import_baseline_mib=base,
                            above_baseline_small_mib=a - base, above_baseline_large_mib=b - base,
                            file_ratio=files[str(sizes[-1])]["bytes"] / files[str(sizes[0])]["bytes"],
                            meets_target=bool(b / a - 1.0 < TARGET))
    result = dict(
        benchmark="memory", size=size_kind, sizes=sizes, n_features=N_FEATURES, rank=RANK,
        n_stages=N_STAGES, dtype="float32", repeats=repeats, target_growth=TARGET,
        files=files, compile=compile_info, import_baseline=baselines, runs=runs,
        summary=summary, growth=growth, traces=traces,
        total_seconds=time.perf_counter() - t_start, machine=machine,
    )
    print()
    print(_common.table(rows, [("n", "samples"), ("gb", "file GB"), ("mode", "threads"),
                               ("rss", "peak RSS MiB (median)"), ("rss_min", "min"),
                               ("rss_max", "max"), ("fit", "fit s"), ("wall", "wall s"),
                               ("load", "load 1m")]))
    print()
    for mode, g in growth.items():
        print(f"{mode:>8}: peak RSS {g['rss_small_mib']:.0f} -> {g['rss_large_mib']:.0f} MiB "
              f"for a {g['file_ratio']:.1f}x larger file: growth {100 * g['growth']:+.1f} % "
              f"(target < {100 * TARGET:.0f} %: {'MET' if g['meets_target'] else 'NOT MET'}); "
              f"imports alone {g['import_baseline_mib']:.0f} MiB")
    small = files[str(sizes[0])]
    if small["n_blocks"] < small["ring_slots"]:
        print(f"note: the smallest file has {small['n_blocks']} blocks of {small['block_rows']} "
              f"rows, fewer than the reader's ring of {small['ring_slots']} buffers: its fit "
              f"allocates only {small['ring_mib']:.0f} of the "
              f"{small['ring_slots'] * small['block_mib']:.0f} MiB the larger files use, so "
              "part of the growth is the ring filling up, not the file size")
    print(f"compile (empty numba cache): +{compile_info['compile_s']:.2f} s on the first fit; "
          f"CLI peak RSS {compile_info['cli_cold_maxrss_mib']:.0f} MiB while compiling vs "
          f"{compile_info['cli_warm_maxrss_mib']:.0f} MiB (excluded from the table above)")
    _common.write_results(result, stem, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
