"""float32 recovery: how close a float32 fit gets to the true components, and at what cost.

Data: the AND paper's exact data sets (``make_dataset``, no noise), generated in float32.
Each case is fitted three ways, every other parameter at its default, BLAS on every core
(fixed: a thread count that changed with the load would change the last bits):

* ``float64``: the float64 data, the reference for time;
* ``float32 arithmetic``: the float32 data with ``tol=eps32``, float32 arithmetic
  throughout (what a float32 fit did before its float64 finish);
* ``float32``: the float32 data with the default ``tol``: float32 arithmetic until the
  change per stage is 4 float32 ulps, then the decode and the block products in float64
  on the float32 data and components (``StageLoop.refine``).

Columns: the ln total correlation error against the truth, the stages, the fit seconds
(``history_["seconds"]``, median over ``--repeats`` fits, the three ways interleaved), their
ratio to the float64 fit, and the stage from which the float32 fit decoded in float64.

Acceptance: DIR (20 000 x 1000, 100 components) in float32 reaches ln <= -25.

    python bench/float32.py [--quick] [--repeats 3] [--out DIR]

The full run with default options writes ``bench/results/float32.json``; ``--quick`` and
other options write to ``bench/results/tmp`` (``--out`` overrides).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

# (data set, samples, components, features, data seed); the first is the acceptance case
CASES = [("dir", 20000, 100, 1000, 0), ("dir", 20000, 100, 1000, 1),
         ("dir", 20000, 150, 1000, 0), ("dir", 40000, 50, 2000, 0),
         ("ctm-ref", 20000, 100, 1000, 0)]
QUICK_CASES = [("dir", 5000, 30, 400, 0), ("ctm-ref", 5000, 20, 300, 0)]
WAYS = ("float64", "float32 arithmetic", "float32")


def fit(way, Y64, Y32, k):
    """One fit; returns the estimator and the stage from which it decoded in float64."""
    from streamnmf import AND

    eps32 = float(np.finfo(np.float32).eps)
    refined = []
    est = AND(k, random_state=0, blas_threads=os.cpu_count(),
              tol=eps32 if way == "float32 arithmetic" else None,
              callback=lambda e, row: refined.append(e._loop.refining))
    est.fit(Y64 if way == "float64" else Y32)
    return est, (refined.index(True) if True in refined else None)


def run_case(case, repeats):
    from streamnmf.datasets import make_dataset
    from streamnmf.metrics import log_total_correlation_error

    name, n, k, m, seed = case
    Y64, truth, _ = make_dataset(name, n, k, m, random_state=seed)
    Y32 = Y64.astype(np.float32)
    seconds = {way: [] for way in WAYS}
    rows = {}
    for _ in range(repeats):
        for way in WAYS:
            est, refined_from = fit(way, Y64, Y32, k)
            seconds[way].append(float(est.history_["seconds"][-1]))
            rows[way] = dict(
                data=name, n_samples=n, n_components=k, n_features=m, data_seed=seed,
                way=way, ln_error=float(log_total_correlation_error(est.components_, truth)),
                stages=int(est.n_stages_), float64_from_stage=refined_from)
    reference = float(np.median(seconds["float64"]))
    for way in WAYS:
        rows[way].update(fit_s=float(np.median(seconds[way])), fit_s_all=seconds[way],
                         time_ratio_to_float64=float(np.median(seconds[way])) / reference)
    return [rows[way] for way in WAYS]


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['data']} {r['n_components']}x{r['n_features']} s{r['data_seed']}"
              for r in result["rows"] if r["way"] == "float64"]
    x = np.arange(len(labels))
    for j, way in enumerate(WAYS):
        values = [r["ln_error"] for r in result["rows"] if r["way"] == way]
        ax.bar(x + (j - 1) * 0.27, values, 0.27, label=way)
    ax.axhline(-25, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, labels, rotation=15, fontsize=8)
    ax.set_ylabel("ln error (lower is better)")
    ax.set_ylim(top=0, bottom=min(r["ln_error"] for r in result["rows"]) - 12)
    ax.legend(fontsize=8, ncol=3, loc="lower center")
    _common.save_figure(fig, path, "float32 fits: float32 arithmetic, then the float64 finish")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small cases (under a minute)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per way and case")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    args = parser.parse_args(argv)
    stem = _common.output_stem("float32", args.quick, args.out,
                               _common.canonical_run(parser, args))
    import streamnmf

    streamnmf.warmup()
    t0 = time.perf_counter()
    rows = []
    for case in QUICK_CASES if args.quick else CASES:
        rows += run_case(case, 1 if args.quick else args.repeats)
        for r in rows[-3:]:
            print(f"  {r['data']:8s} {r['n_samples']:6d} x {r['n_features']:5d}, "
                  f"{r['n_components']:3d} components, seed {r['data_seed']}  "
                  f"{r['way']:19s} ln {r['ln_error']:7.2f}  {r['stages']:4d} stages  "
                  f"{r['fit_s']:6.2f} s ({r['time_ratio_to_float64']:.2f}x float64)"
                  + (f"  float64 from stage {r['float64_from_stage']}"
                     if r["float64_from_stage"] is not None else ""), flush=True)
    result = dict(benchmark="float32", quick=args.quick, repeats=args.repeats, rows=rows,
                  total_seconds=time.perf_counter() - t0, machine=_common.machine_info())
    print(_common.table(rows, [("data", "data"), ("n_components", "k"),
                               ("n_features", "m"), ("data_seed", "seed"), ("way", "way"),
                               ("ln_error", "ln error"), ("stages", "stages"),
                               ("fit_s", "fit s"), ("time_ratio_to_float64", "vs float64"),
                               ("float64_from_stage", "float64 from")]))
    _common.write_results(result, stem, plot)


if __name__ == "__main__":
    main()
