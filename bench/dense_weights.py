"""Dense weights: what AND's default thresholds reach where recovery is hard.

Setting (the AND paper's, section 7): n = 100 components, m = 1000 features, N = 5000 samples,
two data sets whose weights are dense:

* ``ctm``: ``make_dataset("ctm")``, the logistic-normal prior of the correlated topic model
  (fixed mean and covariance; every weight is positive, most of them small);
* ``dir80``: ``make_dataset("dir", weight_params={"dir_sparsity": 80.0})``, Dirichlet(80/n)
  weights (almost full support; the default ``dir`` is Dirichlet(5/n)), the paper's
  appendix B.2 at its densest.

For each data set and data seed (default 0 and 1) it fits ``AND(n_components)`` with the
library's defaults (``thresholds="adaptive"``, ``tol`` and ``n_iter_no_change`` as shipped,
``n_stages`` 200) and ``update`` in ``stagewise`` and ``gd`` (``n_inner`` 50), from two starts:

* ``spa``: the estimator's default ``init="spa"`` (successive projections over the leading
  rows of the data). The start is not passed: ``fit`` computes it. Its ln error is reported
  from the same computation done beside the fit (``streamnmf._start.spa_init`` on the same
  leading rows), not timed;
* ``paper``: the paper's perturbed truth ``A0 = A* (I + U)``, ``U ~ U[-0.05, 0.05)``
  (``streamnmf.datasets.make_init(truth, in_span=1.0, random_state=seed + 1)``).

The ln error (``streamnmf.metrics.log_total_correlation_error``; lower is better, float64
round-off is near -60) of the components is computed in the ``callback`` after every stage
(not timed). Per run: the start's, the final and the best ln error (and its stage), the stages
run and why the fit stopped (``n_stages``, ``tol``, ``n_iter_no_change`` on the change or on
the objective, replayed from ``history_``), the first and the final threshold
(``history_["alpha"]``) and the first stage at which the threshold is within 1% of its final
value, the rate of the ln error over the last ``RATE_WINDOW`` (20) stages (ln units per
stage; negative: still falling), the final code density and the fitting seconds
(``history_["seconds"][-1]``, the callback excluded).

Reference: scikit-learn's ``NMF(n_components, solver="cd", init="nndsvda", random_state=0)``
with its defaults (``max_iter`` 200, ``tol`` 1e-4), ln error of its ``components_`` against
the truth and the wall seconds of ``fit`` (``nndsvda`` included).

Every method runs with one BLAS thread (``threadpoolctl``, ``--threads``; AND also with
``blas_threads=1``): the machine is shared. The kernels are compiled (or loaded from the
cache) in an untimed warm-up before the first run.

``--quick``: n = 50, m = 500, N = 2000, the same runs (about 1.5 minutes on 2 cores).

Outputs ``dense_weights.json`` and ``dense_weights.png`` (ln error per stage, one panel per
data set, cd's final error as horizontal lines) in ``bench/results`` for the default options
(``bench/results/tmp`` for ``--quick`` and other options; ``--out`` overrides) and prints the
table.

Usage: ``python bench/dense_weights.py [--quick] [--out DIR] [--seeds 0 1]
[--updates stagewise gd] [--n-stages 200] [--threads 1] [--replot JSON]``
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
import streamnmf  # noqa: E402
from streamnmf.datasets import make_dataset, make_init  # noqa: E402
from streamnmf.metrics import log_total_correlation_error  # noqa: E402

#: label -> make_dataset name and weight parameters
DATASETS = {
    "ctm": dict(name="ctm", weight_params=None),
    "dir80": dict(name="dir", weight_params={"dir_sparsity": 80.0}),
}
STARTS = ("spa", "paper")
UPDATES = ("stagewise", "gd")
SEEDS = (0, 1)
N_STAGES = 200
RATE_WINDOW = 20  # stages over which the final rate (ln error per stage) is measured
SIZES = {
    "full": dict(n_components=100, n_samples=5000, n_features=1000),
    "quick": dict(n_components=50, n_samples=2000, n_features=500),
}


def spa_start(data, n_components):
    """The start ``AND(init="spa").fit(data)`` computes (same rows, same rng)."""
    from streamnmf._start import spa_init
    from streamnmf.io import as_source
    from streamnmf.io.sources import leading_rows

    rows = leading_rows(as_source(data).blocks(), data.shape[1], data.shape[0])
    return spa_init(rows, n_components, np.random.default_rng(0))


def stop_reason(est, n_stages):
    """Which stopping rule ended the fit, replayed from ``history_`` with the estimator's own
    rules (see ``AND``'s ``tol`` and ``n_iter_no_change``)."""
    hist = est.history_
    if est.n_stages_ >= n_stages:
        return "n_stages"
    if hist["change"][-1] <= est._tol(est._loop) and hist["density"][-1] > 0:
        return "tol"
    if est._objective_plateau(hist):
        return "n_iter_no_change (objective plateau)"
    return "n_iter_no_change (change)"


def run_and(data, truth, update, start, n_stages, start_matrix=None):
    """Fit ``AND(n)`` with its defaults (``init`` default unless ``start_matrix``); return
    the per-stage trace and a summary."""
    trace = []

    def callback(est, row):
        trace.append(dict(stage=int(row["stage"]), seconds=float(row["seconds"]),
                          ln_error=log_total_correlation_error(est.components_, truth),
                          alpha=float(row["alpha"]), density=float(row["density"]),
                          change=float(row["change"])))
        return False

    params = dict(update=update, n_stages=n_stages, random_state=0, callback=callback,
                  blas_threads=1)
    if start_matrix is not None:
        params["init"] = start_matrix
    est = streamnmf.AND(truth.shape[0], **params)
    t0 = time.perf_counter()
    error = None
    try:
        est.fit(data)
    except Exception as exc:  # e.g. a DivergenceError: keep the trace so far
        error = f"{type(exc).__name__}: {exc}"
        print(f"    fit raised {error}", flush=True)
    wall = time.perf_counter() - t0
    errs = np.array([p["ln_error"] for p in trace]) if trace else np.array([np.nan])
    best = int(np.nanargmin(errs)) if trace else None
    k = min(RATE_WINDOW, len(trace) - 1)
    alphas = np.array([p["alpha"] for p in trace]) if trace else np.array([np.nan])
    summary = dict(
        settings=dict(update=update, n_stages=n_stages, thresholds="adaptive (default)",
                      n_inner=est.n_inner if update == "gd" else None,
                      init="spa (default)" if start_matrix is None else "make_init"),
        error=error, stages=len(trace),
        final=float(errs[-1]), best=float(errs[best]) if trace else None,
        best_stage=trace[best]["stage"] if trace else None,
        first_alpha=trace[0]["alpha"] if trace else None,
        final_alpha=trace[-1]["alpha"] if trace else None,
        # the first stage whose threshold is within 1% of the final one
        final_alpha_from_stage=trace[int(np.argmax(alphas <= 1.01 * alphas[-1]))]["stage"]
        if trace else None,
        rate=float((errs[-1] - errs[-1 - k]) / k) if k > 0 else None,
        final_density=trace[-1]["density"] if trace else None,
        stop_reason=None if error else stop_reason(est, n_stages),
        fit_seconds=trace[-1]["seconds"] if trace else None, wall_seconds=wall,
    )
    return trace, summary


def run_cd(data, truth):
    """scikit-learn NMF(cd) from nndsvda with its defaults; ln error of its components."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = NMF(truth.shape[0], solver="cd", init="nndsvda", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        model.fit(data)
        seconds = time.perf_counter() - t0
    return dict(settings=dict(solver="cd", init="nndsvda", max_iter=model.max_iter,
                              tol=model.tol, random_state=0),
                final=log_total_correlation_error(model.components_, truth),
                n_iter=int(model.n_iter_), seconds=seconds,
                reconstruction_err=float(model.reconstruction_err_))


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    labels = list(DATASETS)
    fig, axes = plt.subplots(1, len(labels), figsize=(6.0 * len(labels), 4.2), squeeze=False)
    colors = {("spa", "stagewise"): "C0", ("spa", "gd"): "C1",
              ("paper", "stagewise"): "C2", ("paper", "gd"): "C4"}
    styles = ("-", "--", ":", "-.")
    for ax, label in zip(axes[0], labels):
        seeds = sorted({r["seed"] for r in runs if r["dataset"] == label})
        for r in runs:
            if r["dataset"] != label:
                continue
            ls = styles[seeds.index(r["seed"]) % len(styles)]
            if r["method"] == "cd":
                ax.axhline(r["final"], color="C3", ls=ls, lw=1.0,
                           label=f"sklearn cd (nndsvda), seed {r['seed']}")
                continue
            tr = r["trace"]
            ax.plot([p["stage"] + 1 for p in tr], [p["ln_error"] for p in tr], ls=ls,
                    color=colors.get((r["start"], r["method"]), "k"),
                    label=f"AND {r['method']}, start {r['start']}, seed {r['seed']}")
        ax.set_title(label)
        ax.set_xlabel("stage")
        ax.set_ylabel("ln total correlation error")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    sz = result["sizes"]
    _common.save_figure(fig, path, f"AND default thresholds on dense weights, "
                                   f"n={sz['n_components']}, m={sz['n_features']}, "
                                   f"N={sz['n_samples']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 3 min)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--updates", nargs="+", default=list(UPDATES), choices=UPDATES)
    parser.add_argument("--n-stages", type=int, default=N_STAGES)
    parser.add_argument("--replot", metavar="JSON", default=None,
                        help="only redraw the PNG next to a saved JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for every method (threadpoolctl); 0: no limit")
    args = parser.parse_args(argv)
    args.canonical = _common.canonical_run(parser, args, ignore=("replot",))
    if args.replot:
        import json

        plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
        return
    return _common.under_threads(args.threads, _main, args)


def _main(args):
    machine = _common.machine_info()  # at the start: the load average before the run
    size = SIZES["quick" if args.quick else "full"]
    n, N, m = size["n_components"], size["n_samples"], size["n_features"]
    print(f"dense_weights: n={n} N={N} m={m}, n_stages {args.n_stages}, seeds {args.seeds}, "
          f"BLAS threads {args.threads or 'default'}", flush=True)

    compile_seconds = streamnmf.warmup()
    print(f"warm-up (numba compile or cache load): {compile_seconds:.1f} s", flush=True)

    runs = []
    t_start = time.perf_counter()
    for label, spec in DATASETS.items():
        for seed in args.seeds:
            data, truth, weights = make_dataset(spec["name"], N, n, m,
                                                weight_params=spec["weight_params"],
                                                random_state=seed)
            base = dict(dataset=label, seed=seed,
                        weights_mean=float(weights.mean()),
                        weights_median=float(np.median(weights)),
                        weights_frac_ge_0_1=float(np.mean(weights >= 0.1)))
            starts = {"spa": (None, spa_start(data, n)),
                      "paper": (make_init(truth, in_span=1.0, random_state=seed + 1),) * 2}
            for start in STARTS:
                passed, matrix = starts[start]
                start_ln = log_total_correlation_error(matrix, truth)
                for update in args.updates:
                    trace, info = run_and(data, truth, update, start, args.n_stages, passed)
                    runs.append(dict(base, method=update, start=start, start_ln_error=start_ln,
                                     trace=trace, **info))
                    print(f"  {label:6s} seed {seed} {start:5s} {update:9s} start "
                          f"{start_ln:6.2f} final {info['final']:7.2f} best {info['best']:7.2f}"
                          f" stages {info['stages']:3d} alpha {info['final_alpha']:.3g} "
                          f"{info['fit_seconds']:6.1f} s ({info['stop_reason']})", flush=True)
            info = run_cd(data, truth)
            runs.append(dict(base, method="cd", start="nndsvda", **info))
            print(f"  {label:6s} seed {seed} cd (nndsvda)    final {info['final']:7.2f} "
                  f"iterations {info['n_iter']} {info['seconds']:6.1f} s", flush=True)
    total = time.perf_counter() - t_start

    rows = []
    for r in runs:
        cd = r["method"] == "cd"
        rows.append(dict(
            dataset=r["dataset"], seed=r["seed"], method="sklearn cd" if cd else
            "AND " + r["method"], start=r["start"], start_ln=r.get("start_ln_error"),
            final=r["final"], best=None if cd else r["best"],
            best_stage=None if cd else r["best_stage"],
            stages=r["n_iter"] if cd else r["stages"],
            first_alpha=None if cd else r["first_alpha"],
            final_alpha=None if cd else r["final_alpha"],
            alpha_from=None if cd else r["final_alpha_from_stage"],
            rate=None if cd else r["rate"],
            density=None if cd else r["final_density"],
            stop=None if cd else r["stop_reason"],
            seconds=r["seconds"] if cd else r["fit_seconds"]))
    print()
    print(_common.table(rows, [
        ("dataset", "data set"), ("seed", "seed"), ("method", "method"), ("start", "start"),
        ("start_ln", "start ln err"), ("final", "final ln err"), ("best", "best ln err"),
        ("best_stage", "best at stage"), ("stages", "stages/iter"),
        ("rate", f"ln/stage (last {RATE_WINDOW})"),
        ("first_alpha", "alpha first"), ("final_alpha", "alpha final"),
        ("alpha_from", "final alpha from stage"),
        ("density", "code density"), ("seconds", "fit s"), ("stop", "stopped by"),
    ], floatfmt="{:.4g}"))
    print(f"\ntotal benchmark time {total:.0f} s (+ {compile_seconds:.1f} s warm-up)")

    stem = _common.output_stem("dense_weights", args.quick, args.out, args.canonical)
    result = dict(
        benchmark="dense_weights", quick=args.quick, blas_threads=args.threads,
        sizes=dict(size), n_stages=args.n_stages, seeds=args.seeds, updates=args.updates,
        datasets={k: dict(v) for k, v in DATASETS.items()},
        notes=[
            "AND: library defaults (thresholds='adaptive', tol=None, n_iter_no_change=10), "
            "random_state=0, blas_threads=1; start 'spa' is init's default (not passed), "
            "'paper' is make_init(truth, in_span=1.0, random_state=seed+1).",
            "AND seconds: history_['seconds'][-1] (fitting time, callback excluded); ln "
            "error of est.components_ after every stage, in the callback.",
            "stop_reason replayed from history_ with the estimator's own rules.",
            "cd: sklearn NMF(solver='cd', init='nndsvda', random_state=0), default max_iter "
            "and tol; seconds: wall time of fit, nndsvda included.",
            "weights_frac_ge_0_1: fraction of the true weights >= 0.1 (the scale of the "
            "adaptive schedule's first threshold for a start at the truth's scale).",
        ],
        warmup_seconds=compile_seconds, total_seconds=total, summary=rows, runs=runs,
        machine=machine,
    )
    _common.write_results(result, stem, plot)


if __name__ == "__main__":
    main()
