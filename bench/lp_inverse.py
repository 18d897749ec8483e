"""The min-inf decoding inverse across the stages of a Purification fit: cold, warm, pinv.

Purification's decoding matrix is the left inverse with minimum infinity norm: per component
one basis-pursuit linear programme, every stage, on a matrix that changed by one update. This
bench records the stage matrices of real fits and times, per stage, the inverse of each:

``scipy-cold``    ``min_inf_inverse_rows(C, solver="scipy")``: ``linprog``
                  (HiGHS dual simplex) from scratch per row (its own reuse of still-optimal
                  bases is left out: no ``bases``); the reference every other result is
                  compared with, bit for bit.
``highspy-cold``  the same programmes through the ``highspy`` API, from scratch.
``highspy-warm``  what a fit with ``highspy`` does: the state of the previous stage's call is
                  passed on; rows whose previous basis is still optimal are certified without
                  a programme, the others hot-start the dual simplex from it.
``simplex-cold``  the default solver (``"auto"``): the built-in dual simplex, all rows at
                  once (``streamnmf._simplex``), from its crash;
``simplex-warm``  the same, from the previous stage's bases, as a fit runs it.
``pinv``          ``inverse="pinv"``, the Moore-Penrose inverse, for scale.

It also records per stage the relative change of the matrix, how every row was solved
(certified / warm / cold), the simplex iterations of the warm and cold HiGHS solves, and
checks that the warm result equals the cold scipy one (objective per row, ``C D = I``, and
whether the two are bit for bit equal).

Fits: the Purification paper's (A2') setting through
:func:`streamnmf.datasets.iter_purification_data` (topic components, ``s = 3``), the README's
warm start ``make_init(truth, in_span=0.55)``, fresh blocks of ``batch`` samples per stage
(``partial_fit``; the callback records ``components_``, the working matrix). Two step
schedules: ``constant`` (``eta = 0.5``, the default: the matrix keeps changing by about 6%
per stage at the sampling floor) and ``decay`` (``eta = 0.5, step_decay = 2``, the stream
setting of bench/purification.py: the change shrinks like ``1 / t``); the full run also
times a late window of the decaying fit (``decay-late``: stages 30-40).

Then the fits themselves, for each size: ``Purification`` with the default ``inverse="min-inf"``
(the built-in simplex) against ``inverse="pinv"`` on the same data (``batch`` samples per
stage, 6 stages, BLAS on every core), interleaved, medians of the repeats and their ratio; the fitted decoding
matrix is checked against the scipy inverse of the fitted components (``C D = I``, l1 norms
of the rows).

Outputs ``lp_inverse.json`` and ``.png`` in ``bench/results`` (``bench/results/tmp`` for
``--quick``; ``--out`` overrides) and prints the table. Heavy
numerics run single-threaded (``OPENBLAS_NUM_THREADS=1`` unless the environment sets it).

Usage: ``OPENBLAS_NUM_THREADS=1 python bench/lp_inverse.py [--quick] [--out DIR]
[--replot]``
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
from streamnmf import Purification  # noqa: E402
from streamnmf import _engine  # noqa: E402
from streamnmf import _lp as P  # noqa: E402
from streamnmf.datasets import iter_purification_data, make_init  # noqa: E402

SCHEDULES = {"constant": dict(learning_rate=0.5), "decay": dict(learning_rate=0.5, step_decay=2.0)}
CONFIG = {
    # per size: samples per stage, stages recorded per schedule, windows timed (schedule,
    # first stage, end)
    "full": (
        dict(n=30, m=120, batch=20000, record={"constant": 11, "decay": 41},
             windows=(("constant", 0, 11), ("decay", 0, 11), ("decay", 30, 41))),
        dict(n=100, m=1000, batch=10000, record={"constant": 11, "decay": 41},
             windows=(("constant", 0, 11), ("decay", 0, 11), ("decay", 30, 41))),
    ),
    "quick": (
        dict(n=30, m=120, batch=20000, record={"constant": 6, "decay": 6},
             windows=(("constant", 0, 6), ("decay", 0, 6))),
        dict(n=100, m=1000, batch=10000, record={"constant": 3, "decay": 3},
             windows=(("constant", 0, 3), ("decay", 0, 3))),
    ),
}
METHODS = ("scipy-cold", "highspy-cold", "highspy-warm", "simplex-cold", "simplex-warm", "pinv")
#: stages of the timed fits, and repeats of each (interleaved min-inf / pinv)
FIT_STAGES = 6
FIT_REPEATS = {"full": 5, "quick": 2}


def _version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def record(n, m, batch, schedule, stages, seed=0):
    """The matrices whose inverses a fit computes: the start and every stage's result."""
    stream = iter_purification_data(batch * stages, n, m, weights="a2'", sparsity=3.0,
                                    block_size=batch, random_state=seed)
    init = make_init(stream.components, in_span=0.55, random_state=seed + 1)
    mats = [np.array(init, dtype=np.float64)]

    def callback(est, row):
        mats.append(np.array(est.components_, dtype=np.float64))  # the working matrix

    est = Purification(n, init=init, callback=callback, n_iter_no_change=None,
                       **SCHEDULES[schedule])
    t0 = time.perf_counter()
    for data, _ in stream:
        est.partial_fit(data)
    return mats[:stages], time.perf_counter() - t0


def time_window(mats, first, end, have_highspy):
    """Per stage of ``mats[first:end]``: seconds of every method and the warm start's record."""
    rows = []
    start = None
    simplex_bases = None
    if first > 0:  # the warm state a fit would carry into stage ``first``
        simplex_bases = P._min_inf(mats[first - 1], None, solver="simplex")[1]
        if have_highspy:
            _, start, _ = P._min_inf(mats[first - 1], None, solver="highspy")
    for s in range(first, end):
        C = mats[s]
        row = dict(stage=s)
        if s > 0:
            row["rel_change"] = float(np.linalg.norm(C - mats[s - 1]) / np.linalg.norm(mats[s - 1]))
        t0 = time.perf_counter()
        D_ref, _, _ = P._min_inf(C, None, solver="scipy")
        row["scipy-cold"] = time.perf_counter() - t0
        pinv = []
        for _ in range(3):
            t0 = time.perf_counter()
            _engine.pinv_rows(C)
            pinv.append(time.perf_counter() - t0)
        row["pinv"] = min(pinv)
        t0 = time.perf_counter()
        D_sx_cold, _, _ = P._min_inf(C, None, solver="simplex")
        row["simplex-cold"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        D_sx, simplex_bases, _ = P._min_inf(C, simplex_bases, solver="simplex")
        row["simplex-warm"] = time.perf_counter() - t0
        row["simplex_bitwise_equal_to_scipy"] = bool(np.array_equal(D_sx, D_ref)
                                                     and np.array_equal(D_sx_cold, D_ref))
        row["simplex_objective_rel_diff"] = float(np.max(np.abs(
            np.abs(D_sx).sum(axis=0) / np.abs(D_ref).sum(axis=0) - 1)))
        if have_highspy:
            t0 = time.perf_counter()
            D_cold, cold, _ = P._min_inf(C, None, solver="highspy")
            row["highspy-cold"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            D, start, _ = P._min_inf(C, start, solver="highspy")
            row["highspy-warm"] = time.perf_counter() - t0
            its = np.asarray(start.stats["iterations"])
            how = start.stats["how"]
            hot = np.array([h == "warm" for h in how])
            row["how"] = dict(Counter(how))
            row["warm_iterations_median"] = float(np.median(its[hot])) if hot.any() else None
            row["warm_iterations_mean_all_rows"] = float(its.mean())
            row["cold_iterations_median"] = float(np.median(cold.stats["iterations"]))
            l1, l1_ref = np.abs(D).sum(axis=0), np.abs(D_ref).sum(axis=0)
            row["objective_rel_diff"] = float(np.max(np.abs(l1 / l1_ref - 1)))
            row["identity_residual"] = float(np.abs(C @ D - np.eye(C.shape[0])).max())
            row["bitwise_equal_to_scipy"] = bool(np.array_equal(D, D_ref))
            row["bitwise_equal_cold_warm"] = bool(np.array_equal(D, D_cold))
        rows.append(row)
        print(f"    stage {s:2d}: " + "  ".join(
            f"{k} {row[k]:.3g}s" for k in METHODS if k in row)
            + f"  simplex == scipy {row['simplex_bitwise_equal_to_scipy']}"
            + (f"  {row['how']}  warm its {row['warm_iterations_median']}"
               f" (cold {row['cold_iterations_median']})  change "
               f"{row.get('rel_change', 0):.1e}  equal {row['bitwise_equal_to_scipy']}"
               if have_highspy else ""), flush=True)
    return rows


def time_fits(n, m, batch, repeats, seed=0):
    """A Purification fit with the default min-inf inverse against the pinv fit, interleaved:
    medians, their ratio, and the fitted decoding matrix against the scipy inverse."""
    stream = iter_purification_data(batch * FIT_STAGES, n, m, weights="a2'", sparsity=3.0,
                                    block_size=batch * FIT_STAGES, random_state=seed)
    init = make_init(stream.components, in_span=0.55, random_state=seed + 1)
    Y = next(iter(stream))[0]
    # every core for both fits (the per-stage timings above run BLAS single-threaded)
    kw = dict(init=init, stage_length=batch, n_stages=FIT_STAGES, n_iter_no_change=None,
              tol=0.0, blas_threads=os.cpu_count())
    Purification(n, **kw).fit(Y[:2 * batch])  # compile, load the caches
    seconds = {"pinv": [], "min-inf": []}
    for _ in range(repeats):
        for inverse in seconds:
            est = Purification(n, inverse=inverse, **kw)
            t0 = time.perf_counter()
            est.fit(Y)
            seconds[inverse].append(time.perf_counter() - t0)
    C = np.array(est.components_, dtype=np.float64)  # the last min-inf fit
    D = est._D  # the decoding matrix of the fitted components
    D_ref = P.min_inf_inverse_rows(C, solver="scipy")
    out = dict(pinv_s=float(np.median(seconds["pinv"])),
               min_inf_s=float(np.median(seconds["min-inf"])), seconds=seconds,
               identity_residual=float(np.abs(C @ D - np.eye(n)).max()),
               objective_rel_diff=float(np.max(np.abs(
                   np.abs(D).sum(axis=0) / np.abs(D_ref).sum(axis=0) - 1))))
    out["ratio"] = out["min_inf_s"] / out["pinv_s"]
    print(f"    pinv fit {out['pinv_s']:.2f}s  min-inf fit {out['min_inf_s']:.2f}s  ratio "
          f"{out['ratio']:.2f}  |CD - I| {out['identity_residual']:.1e}  l1 vs scipy "
          f"{out['objective_rel_diff']:.1e}", flush=True)
    return out


def summarise(rows, have_highspy):
    """Medians over the window's stages that had a previous stage (``s > 0``)."""
    later = [r for r in rows if r["stage"] > 0] or rows
    out = {k: float(np.median([r[k] for r in later])) for k in METHODS if k in later[0]}
    out["stages"] = len(later)
    out["rel_change_median"] = float(np.median([r.get("rel_change", np.nan) for r in later]))
    out["simplex_warm_vs_scipy"] = out["scipy-cold"] / out["simplex-warm"]
    out["simplex_warm_vs_pinv"] = out["simplex-warm"] / out["pinv"]
    out["simplex_all_bitwise_equal_to_scipy"] = all(r["simplex_bitwise_equal_to_scipy"]
                                                    for r in rows)
    out["simplex_max_objective_rel_diff"] = max(r["simplex_objective_rel_diff"] for r in rows)
    if have_highspy:
        out["speedup_warm_vs_scipy"] = out["scipy-cold"] / out["highspy-warm"]
        out["speedup_warm_vs_highspy_cold"] = out["highspy-cold"] / out["highspy-warm"]
        out["slowdown_warm_vs_pinv"] = out["highspy-warm"] / out["pinv"]
        its = [r["warm_iterations_median"] for r in later if r["warm_iterations_median"]]
        out["warm_iterations_median"] = float(np.median(its)) if its else 0.0
        out["cold_iterations_median"] = float(np.median([r["cold_iterations_median"]
                                                         for r in later]))
        total = Counter()
        for r in later:
            total.update(r["how"])
        out["rows"] = dict(total)
        out["max_objective_rel_diff"] = max(r["objective_rel_diff"] for r in rows)
        out["max_identity_residual"] = max(r["identity_residual"] for r in rows)
        out["all_bitwise_equal_to_scipy"] = all(r["bitwise_equal_to_scipy"] for r in rows)
    return out


def report(res):
    rows = []
    for key, entry in res["cases"].items():
        s = entry["summary"]
        rows.append(dict(case=key, change=s["rel_change_median"], **{
            k: s.get(k) for k in METHODS}, sp=s.get("speedup_warm_vs_scipy"),
            sph=s.get("speedup_warm_vs_highspy_cold"), its=s.get("warm_iterations_median"),
            cits=s.get("cold_iterations_median"),
            rows=" ".join(f"{k}:{v}" for k, v in sorted(s.get("rows", {}).items())),
            eq=s.get("all_bitwise_equal_to_scipy"), sx=s["simplex_warm_vs_scipy"],
            sxeq=s["simplex_all_bitwise_equal_to_scipy"]))
    text = _common.table(rows, [
        ("case", "n x m / schedule / stages"), ("change", "rel. change"),
        ("scipy-cold", "scipy cold s"), ("highspy-cold", "highspy cold s"),
        ("highspy-warm", "highspy warm s"), ("pinv", "pinv s"),
        ("sp", "warm vs scipy"), ("sph", "warm vs cold"), ("its", "warm its/row"),
        ("cits", "cold its/row"), ("rows", "rows"), ("eq", "D == scipy's"),
        ("simplex-cold", "simplex cold s"), ("simplex-warm", "simplex warm s"),
        ("sx", "simplex warm vs scipy"), ("sxeq", "simplex D == scipy's")])
    fits = [dict(size=k, pinv=f["pinv_s"], mininf=f["min_inf_s"], ratio=f["ratio"],
                 res=f["identity_residual"], l1=f["objective_rel_diff"])
            for k, f in res.get("fits", {}).items()]
    if fits:
        text += "\n\nfits (6 stages, medians):\n" + _common.table(fits, [
            ("size", "n x m, batch"), ("pinv", "pinv fit s"), ("mininf", "min-inf fit s"),
            ("ratio", "min-inf / pinv"), ("res", "|C D - I| max"),
            ("l1", "row l1 vs scipy, rel.")])
    return text


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({(c["n"], c["m"]) for c in res["cases"].values()})
    fig, axes = plt.subplots(2, len(sizes), figsize=(6 * len(sizes), 8.5), squeeze=False)
    colors = {"scipy-cold": "C3", "highspy-cold": "C1", "highspy-warm": "C0",
              "simplex-cold": "C5", "simplex-warm": "C4", "pinv": "C2"}
    styles = {"constant": "-", "decay": "--", "decay-late": ":"}
    for j, (n, m) in enumerate(sizes):
        ax, ax2 = axes[0, j], axes[1, j]
        for key, c in res["cases"].items():
            if (c["n"], c["m"]) != (n, m):
                continue
            st = [r["stage"] for r in c["stages"]]
            for k in METHODS:
                if k in c["stages"][0]:
                    ax.semilogy(st, [r[k] for r in c["stages"]], styles[c["window"]],
                                color=colors[k], marker="o", ms=3,
                                label=f"{k} ({c['window']})")
            if "how" in c["stages"][0]:
                later = [r for r in c["stages"] if r["stage"] > 0]
                ax2.loglog([r["rel_change"] for r in later],
                           [max(r["warm_iterations_mean_all_rows"], 0.1) for r in later],
                           "o", label=f"{c['window']}: warm, mean over rows "
                                      "(certified rows count 0)")
                ax2.loglog([r["rel_change"] for r in later],
                           [r["cold_iterations_median"] for r in later], "x", color="gray",
                           label=f"{c['window']}: cold, median" if c["window"] == "constant"
                           else None)
        ax.set_title(f"min-inf inverse per stage, n={n}, m={m}")
        ax.set_xlabel("stage of the fit")
        ax.set_ylabel("seconds per stage (all n programmes)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
        ax2.set_title(f"simplex iterations per row vs change of C, n={n}, m={m}")
        ax2.set_xlabel("relative change of the components since the last stage")
        ax2.set_ylabel("iterations per row")
        ax2.legend(fontsize=7)
        ax2.grid(True, which="both", alpha=0.3)
    _common.save_figure(fig, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (2-3 minutes)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick)")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the plot and the table from the saved JSON only")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    stem = _common.output_stem("lp_inverse", args.quick, args.out,
                               _common.canonical_run(parser, args, ignore=("replot",)))
    if args.replot:
        with open(stem.with_suffix(".json")) as f:
            res = json.load(f)["results"]
        print(report(res))
        print("wrote", plot(res, stem.with_suffix(".png")))
        return
    cfg = CONFIG[mode]
    have_highspy = P.highspy is not None
    if not have_highspy:
        print("highspy is not installed: only scipy-cold and pinv are timed "
              "(pip install highspy)")
    machine = _common.machine_info()
    t_start = time.perf_counter()
    res = dict(highspy=_version("highspy") if have_highspy else None, cases={})
    for size in cfg:
        n, m, batch = size["n"], size["m"], size["batch"]
        mats, fit_seconds = {}, {}
        for schedule, stages in size["record"].items():
            print(f"[record n={n} m={m} {schedule}: {stages} stages of {batch} samples]",
                  flush=True)
            mats[schedule], fit_seconds[schedule] = record(n, m, batch, schedule, stages)
        for schedule, first, end in size["windows"]:
            window = schedule if first == 0 else f"{schedule}-late"
            key = f"{n}x{m} {window} {first}-{end - 1}"
            print(f"[time {key}]", flush=True)
            rows = time_window(mats[schedule], first, end, have_highspy)
            res["cases"][key] = dict(n=n, m=m, batch=batch, schedule=schedule, window=window,
                                     first=first, end=end, stages=rows,
                                     fit_seconds=fit_seconds[schedule],
                                     summary=summarise(rows, have_highspy))
        print(f"[fits n={n} m={m}: {FIT_STAGES} stages of {batch}]", flush=True)
        res.setdefault("fits", {})[f"{n}x{m}, {batch}"] = time_fits(n, m, batch,
                                                                   FIT_REPEATS[mode])
    total = time.perf_counter() - t_start
    text = report(res)
    print(text)
    doc = dict(mode=mode, config=cfg, total_wall=total, results=res, report=text,
               machine=machine)
    path = _common.save_json(doc, stem.with_suffix(".json"))
    print(f"wrote {path} and {plot(res, stem.with_suffix('.png'))} in {total:.0f}s")


if __name__ == "__main__":
    main()
