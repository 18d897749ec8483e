"""Shared helpers of the bench scripts: timing, machine info, JSON output, tables.

The bench machines are small and shared (2 cores, other jobs running), so every timing is a
MEDIAN over repeats and every speed claim is a RATIO against a reference measured in the same
run, interleaved with the measurement where possible. Compile time (numba) is always kept out
of the timed loops: call the function once before timing it.
"""

import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


# -- timing ----------------------------------------------------------------------------------
def time_calls(fn, repeats=7, warmup=1, setup=None):
    """Seconds of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls.

    ``setup()`` (untimed) runs before every call, for functions that mutate their input.
    Returns the list of per-call seconds; summarise with :func:`summary`.
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def interleaved(fns, repeats=7, warmup=1):
    """Time several callables round-robin (A B C A B C ...) so that a burst of load on the
    shared machine hits all of them alike. Returns {name: [seconds, ...]}."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def summary(times):
    """Median, min, max, interquartile range and count of a list of seconds."""
    t = np.asarray(times, dtype=float)
    if t.size == 0:
        return {"median": None, "min": None, "max": None, "iqr": None, "n": 0}
    q1, q3 = np.percentile(t, [25, 75])
    return {"median": float(np.median(t)), "min": float(t.min()), "max": float(t.max()),
            "iqr": float(q3 - q1), "n": int(t.size)}


# -- machine ---------------------------------------------------------------------------------
def _blas_info():
    info = {}
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = threadpool_info()
    except Exception as exc:  # pragma: no cover - threadpoolctl ships with scikit-learn
        info["threadpools_error"] = repr(exc)
    try:
        config = np.show_config(mode="dicts")
        info["numpy_build"] = config.get("Build Dependencies", {})
        info["simd"] = config.get("SIMD Extensions", {})
    except Exception:
        buf = io.StringIO()
        with redirect_stdout(buf):
            np.show_config()
        info["numpy_show_config"] = buf.getvalue()
    return info


def _git():
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:
            return None
    status = run("status", "--short", "streamnmf")
    return {"commit": run("rev-parse", "HEAD"),
            "library_dirty": bool(status), "library_status": status}


def machine_info():
    """Everything needed to read the numbers later: CPU, memory, versions, BLAS, load, date."""
    import numba
    import scipy
    import sklearn

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__,
                     "numba": numba.__version__, "sklearn": sklearn.__version__},
        "env": {k: os.environ.get(k) for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR")},
        "git": _git(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        info["cpu_model"] = None
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["cpu_freq_mhz"] = getattr(psutil.cpu_freq(), "current", None)
    except Exception:
        pass
    try:
        info["loadavg_start"] = os.getloadavg()  # 1, 5, 15 min; call at the run's start
    except OSError:
        pass
    try:
        import streamnmf

        info["versions"]["streamnmf"] = streamnmf.__version__
    except Exception:
        pass
    info["blas"] = _blas_info()
    return info


# -- output ----------------------------------------------------------------------------------
def _default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def _finite(obj):
    """JSON has no inf/nan: write them as strings so the file stays standard JSON."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def loadavg():
    """The load averages (1, 5, 15 minutes), or None where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def under_threads(threads, fn, *args):
    """``fn(*args)`` with BLAS limited to ``threads`` (threadpoolctl); None or 0: as set."""
    if not threads:
        return fn(*args)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        return fn(*args)


def save_json(obj, path):
    """Write ``obj`` (numpy values allowed) to ``path``, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = dict(obj)
    obj.setdefault("machine", machine_info())
    try:
        obj["machine"]["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    with open(path, "w") as f:
        json.dump(_finite(obj), f, indent=1, default=_default)
        f.write("\n")
    return path


def canonical_run(parser, args, ignore=()):
    """True when every option in ``args`` except ``--quick``, ``--out`` and those named in
    ``ignore`` (options that change no number: work folders, ``--keep``) has its default
    value in ``parser``: such a full run is the benchmark's canonical run."""
    skip = {"quick", "out", *ignore}
    return all(getattr(args, action.dest) == action.default for action in parser._actions
               if action.dest not in skip and action.dest != "help"
               and hasattr(args, action.dest))


def results_folder(quick, canonical=True):
    """Where a benchmark writes by default: ``bench/results`` for the canonical run (full,
    default options: one file per benchmark), the git-ignored ``bench/results/tmp`` for
    ``--quick`` and for runs with other options."""
    return RESULTS if canonical and not quick else RESULTS / "tmp"


def output_stem(name, quick, out=None, canonical=True):
    """The path, without extension, of a benchmark's outputs: ``<folder>/<name>``, to which a
    script adds ``.json``, ``.png`` or ``_<part>.png``. The folder is ``out`` (``--out``) when
    given, else :func:`results_folder`; it is created."""
    folder = Path(out) if out else results_folder(quick, canonical)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def write_results(result, stem, plot):
    """Save ``result`` as ``<stem>.json`` (see :func:`output_stem`), draw
    ``plot(result, png_path)`` to ``<stem>.png`` and print where both went (with
    ``result["total_seconds"]``)."""
    stem = Path(stem)
    path = save_json(result, stem.with_suffix(".json"))
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {path} and {stem.with_suffix('.png')} ({result['total_seconds']:.0f} s)")


def save_figure(fig, path, title=None, dpi=110):
    """Lay out ``fig`` (with ``title`` as its suptitle), write it to ``path`` and close it."""
    import matplotlib.pyplot as plt

    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def table(rows, columns, floatfmt="{:.3g}"):
    """A plain-text table of ``rows`` (dicts) in ``columns`` (list of (key, title))."""
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return floatfmt.format(v) if np.isfinite(v) else str(v)
        return str(v)

    cells = [[title for _, title in columns]]
    cells += [[fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def profile_top(fn, n=15, sort="tottime"):
    """Run ``fn()`` under cProfile; return the text of the top ``n`` entries."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats(sort).print_stats(n)
    text = buf.getvalue()
    # drop the preamble lines up to the header
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text
