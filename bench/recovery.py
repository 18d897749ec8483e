"""Recovery benchmark: the AND paper's Figure 1 setting, ln error against fitting seconds.

Setting (paper, section 7): n = 100 components, m = 1000 features, N = 5000 samples, start
``A0 = A* (I + U)`` with ``U ~ U[-0.05, 0.05)`` (``streamnmf.datasets.make_init``). For each data
set (dir, ctm-ref, ctm, neg, noise with gamma = 0.01) it runs

* ``AND(update="stagewise")``, ``AND(update="gd")`` (n_inner 50, 100 on noise as in the paper)
  and ``AND(update="sgd")`` (batch_size 1, stage_length = one pass, as many stages as fit in
  the time budget), all from ``A0`` with the library's default thresholds ("adaptive") and
  stopping rules. The ln error of the working matrix is computed in the ``callback`` after every
  stage; the x axis is ``history_["seconds"]``, which excludes the callback's time.
* scikit-learn's ``NMF(solver="cd", init="custom")`` (the paper's HALS: cyclic coordinate
  descent on the Frobenius loss) from a non-negative version of the same start:
  ``H0 = max(A0, 0)`` and ``W0`` = ``max(Y pinv(H0), 0)`` refined by 10 cd sweeps on ``W`` with
  ``H0`` fixed. The ``W0`` preparation is NOT counted in cd's time (this favours cd). sklearn
  has no callback, so the curve is a grid of fresh runs with ``max_iter`` in
  1, 2, 5, 10, 20, 50, 100, 200 (``tol=0``, deterministic, so run k is the k-iteration prefix
  of run 200), each timed from scratch (wall time of ``fit_transform``). ``NMF`` refuses
  signed data, so on the data sets with negative entries (neg; noise, whose Gaussian noise
  makes tiny entries negative) the same routine ``NMF`` calls,
  ``sklearn.decomposition._nmf._fit_coordinate_descent``, is called directly.
* the peers of ``bench/peers.py`` (the paper's other competitors and two more): scikit-learn
  ``NMF(solver="mu")`` (mu), ``MiniBatchNMF`` (minibatch), online
  ``LatentDirichletAllocation`` (lda, its own random start), ``gensim.models.Nmf`` (gensim,
  if it imports) and ANLS with ``scipy.optimize.nnls`` (anls), each from the same clipped
  start as cd where it takes one, under stagewise's time budget, evaluation not timed. They
  are non-negative factorisations: on data with negative entries (neg, noise) they are not
  run and ``not_applicable`` in the JSON says why (cd shows that case).

Outputs ``recovery.json`` and ``recovery.png`` (one panel per data set) in ``bench/results``
(``bench/results/tmp`` for ``--quick`` and non-default options; ``--out`` overrides;
``bench/summarize.py`` reads the JSON) and prints a table: final ln error, time to ln
-38, time to cd's 200-iteration error and the ratio stagewise / cd for the latter (acceptance:
<= 1/5).

Usage: ``python bench/recovery.py [--quick] [--out DIR] [--threads 1]
[--modes stagewise gd sgd cd mu minibatch lda gensim anls]``

All methods run under the same BLAS thread limit (default 1, see ``--threads``).
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
import peers  # noqa: E402
import streamnmf  # noqa: E402
from streamnmf.datasets import make_dataset, make_init  # noqa: E402
from streamnmf.metrics import log_total_correlation_error  # noqa: E402

DATASETS = ("dir", "ctm-ref", "ctm", "neg", "noise")
MODES = ("stagewise", "gd", "sgd")
CD_GRID = (1, 2, 5, 10, 20, 50, 100, 200)
TARGET = -38.0  # "recovered": about where the paper's AND curves end
SLACK = 0.1  # ln units: a method reaches cd's final error at <= that error + SLACK

SIZES = {
    "full": dict(n_components=100, n_samples=5000, n_features=1000, budget=40.0),
    # n=30 would be faster, but there AND stalls (ln error about -4 on ctm-ref with the
    # default adaptive thresholds; see the report), which hides what the check is for.
    "quick": dict(n_components=50, n_samples=2000, n_features=500, budget=4.0),
}
# stagewise stops by itself once converged; give it room on a loaded machine
BUDGET_FACTOR = {"stagewise": 1.5, "gd": 1.0, "sgd": 0.75}
# the peers get the longest budget an AND mode gets: they are slower, and the question is
# how far they get, not only how fast
BUDGET_FACTOR.update({peer: max(BUDGET_FACTOR.values()) for peer in peers.PEERS})
NOISE = 0.01


def first_time(trace, level):
    """Seconds of the first trace point with ln error <= level (None if never)."""
    for point in trace:
        if point["ln_error"] <= level:
            return point["seconds"]
    return None


def run_and(mode, data, truth, start, budget, dataset):
    """Fit AND from ``start``; return the trace (ln error vs fitting seconds) and a summary."""
    trace = [dict(seconds=0.0, ln_error=log_total_correlation_error(start, truth), stage=-1)]
    eval_seconds = [0.0]

    def callback(est, row):
        t0 = time.perf_counter()
        trace.append(dict(
            seconds=float(row["seconds"]),
            ln_error=log_total_correlation_error(est._loop.C, truth),
            stage=int(row["stage"]), alpha=float(row["alpha"]),
            density=float(row["density"]), change=float(row["change"]),
        ))
        eval_seconds[0] += time.perf_counter() - t0
        return row["seconds"] >= budget  # stop once the time budget is spent

    params = dict(update=mode, init=start, random_state=0, callback=callback)
    if mode == "gd":
        params.update(n_stages=200, n_inner=100 if dataset == "noise" else 50)
    elif mode == "sgd":
        params.update(n_stages=100000, stage_length=data.shape[0], batch_size=1)
    else:
        params.update(n_stages=200)
    est = streamnmf.AND(truth.shape[0], **params)
    t0 = time.perf_counter()
    error = None
    try:
        est.fit(data)
    except Exception as exc:  # e.g. streamnmf's DivergenceError: keep the trace so far
        error = f"{type(exc).__name__}: {exc}"
        print(f"    fit raised {error}", flush=True)
    wall = time.perf_counter() - t0
    if error is not None:
        settings = {k: v for k, v in params.items() if k not in ("init", "callback")}
        return trace, dict(settings=settings, error=error, stages=len(trace) - 1,
                           fit_seconds=trace[-1]["seconds"], wall_seconds=wall,
                           eval_seconds=eval_seconds[0],
                           learning_rate=getattr(getattr(est, "_loop", None), "sgd_eta", None))
    fit_seconds = float(est.history_["seconds"][-1])
    settings = {k: v for k, v in params.items() if k not in ("init", "callback")}
    return trace, dict(
        settings=settings, stages=int(est.n_stages_), fit_seconds=fit_seconds,
        wall_seconds=wall, eval_seconds=eval_seconds[0],
        # time fit spent outside history_["seconds"] and outside the callback: validation,
        # the start's decoding matrix, bookkeeping. Should be small.
        untracked_seconds=wall - eval_seconds[0] - fit_seconds,
        learning_rate=getattr(est._loop, "sgd_eta", None) if mode == "sgd" else None,
        final_alpha=float(est.history_["alpha"][-1]),
        final_density=float(est.history_["density"][-1]),
    )


def run_cd(data, truth, start):
    """scikit-learn coordinate descent from the clipped start, on a grid of max_iter."""
    from sklearn.decomposition import NMF
    from sklearn.decomposition._nmf import _fit_coordinate_descent
    from sklearn.exceptions import ConvergenceWarning

    n = truth.shape[0]
    signed = bool(data.min() < 0)
    H0 = np.ascontiguousarray(np.maximum(start, 0.0))
    t0 = time.perf_counter()
    W0 = np.ascontiguousarray(np.maximum(data @ np.linalg.pinv(H0), 0.0))
    W0, _, _ = _fit_coordinate_descent(data, W0, H0, tol=0.0, max_iter=10, update_H=False)
    W0 = np.ascontiguousarray(W0)
    w0_seconds = time.perf_counter() - t0

    trace = [dict(seconds=0.0, ln_error=log_total_correlation_error(H0, truth), max_iter=0)]
    for k in CD_GRID:
        W, H = W0.copy(), H0.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            if signed:
                _, H, n_iter = _fit_coordinate_descent(data, W, H, tol=0.0, max_iter=k)
            else:
                model = NMF(n, solver="cd", init="custom", max_iter=k, tol=0.0,
                            random_state=0)
                model.fit_transform(data, W=W, H=H)
                H, n_iter = model.components_, model.n_iter_
            seconds = time.perf_counter() - t0
        trace.append(dict(seconds=seconds, ln_error=log_total_correlation_error(H, truth),
                          max_iter=k, n_iter=int(n_iter)))
    info = dict(
        settings=dict(solver="cd", init="custom", tol=0.0, grid=list(CD_GRID),
                      api="sklearn.decomposition._nmf._fit_coordinate_descent (signed data)"
                      if signed else "sklearn.decomposition.NMF.fit_transform"),
        w0_seconds=w0_seconds, w0="max(Y pinv(H0), 0) + 10 cd sweeps on W (H0 fixed)",
        start_ln_error_clipped=trace[0]["ln_error"],
        data_signed=signed,
    )
    return trace, info


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    ncols = 3
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False)
    styles = {
        "stagewise": dict(color="C0", label="AND stagewise"),
        "gd": dict(color="C1", label="AND gd (paper's T steps)"),
        "sgd": dict(color="C2", label="AND sgd (batch 1, 1 pass/stage)"),
        "cd": dict(color="C3", marker="o", ms=3, label="sklearn NMF cd (HALS)"),
        "mu": dict(color="C4", label="sklearn NMF mu"),
        "minibatch": dict(color="C5", marker="s", ms=3, label="sklearn MiniBatchNMF"),
        "lda": dict(color="C6", marker="^", ms=3, label="sklearn online LDA (random start)"),
        "gensim": dict(color="C7", marker="v", ms=3, label="gensim Nmf"),
        "anls": dict(color="C8", marker="x", ms=4, label="ANLS (scipy nnls)"),
    }
    legend = {}
    for ax, name in zip(axes.flat, names):
        for method, entry in results[name]["methods"].items():
            trace = entry["trace"]
            x = [p["seconds"] for p in trace]
            y = [p["ln_error"] for p in trace]
            (line,) = ax.plot(x, y, **styles.get(method, dict(label=method)))
            legend.setdefault(line.get_label(), line)
        skipped = results[name].get("not_applicable", {})
        if skipped:  # say in the panel which methods were not run on this data set
            ax.text(0.98, 0.5, "not run (signed data):\n" + ", ".join(skipped),
                    transform=ax.transAxes, ha="right", va="center", fontsize=8,
                    color="gray")
        lowest = min(p["ln_error"] for e in results[name]["methods"].values()
                     for p in e["trace"])
        if lowest < TARGET + 10:
            ax.axhline(TARGET, color="gray", lw=0.6, ls=":")
        ax.set_title(f"{name}" + (f" (gamma={NOISE})" if name == "noise" else ""))
        ax.set_xlabel("fitting time (s)")
        ax.set_ylabel("ln total correlation error")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    # one entry per method, from whichever panels it appears in
    handles, labels = list(legend.values()), list(legend)
    if len(names) < nrows * ncols:
        axes.flat[len(names)].legend(handles, labels, loc="center", frameon=False)
    else:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    _common.save_figure(fig, path, title)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 3 min)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--modes", nargs="+",
                        default=list(MODES) + ["cd"] + peers.available()[0],
                        choices=list(MODES) + ["cd"] + list(peers.PEERS),
                        help="default: every AND mode, cd and every peer that imports here")
    parser.add_argument("--budget", type=float, default=None,
                        help="fitting seconds per AND run (default: 40 full, 4 quick; times BUDGET_FACTOR per mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", metavar="JSON", default=None,
                        help="only redraw the PNG next to a saved JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for every method (threadpoolctl); 0: no limit. "
                             "Default 1: on a shared, loaded machine multi-threaded OpenBLAS "
                             "QR/Cholesky of these small shapes can be 10-1000x slower when "
                             "the other core is busy (see bench/speed.py), which would "
                             "measure the neighbours rather than the methods.")
    args = parser.parse_args(argv)
    args.canonical = _common.canonical_run(parser, args, ignore=("replot",))
    if args.replot:
        import json

        saved = json.loads(Path(args.replot).read_text())
        sz = saved["sizes"]
        plot(saved["results"], Path(args.replot).with_suffix(".png"),
             f"AND vs peers, n={sz['n_components']}, m={sz['n_features']}, "
             f"N={sz['n_samples']}, start A*(I+U)")
        return
    return _common.under_threads(args.threads, _main, args)


def _main(args):
    machine = _common.machine_info()  # at the start: the load average before the run

    size = dict(SIZES["quick" if args.quick else "full"])
    budget = args.budget or size.pop("budget")
    size.pop("budget", None)
    n, N, m = size["n_components"], size["n_samples"], size["n_features"]
    print(f"recovery: n={n} N={N} m={m}, AND budget {budget:g} s x {BUDGET_FACTOR}, "
          f"BLAS threads {args.threads or 'default'}", flush=True)

    compile_seconds = streamnmf.warmup()  # the kernels compiled outside every timed run
    print(f"warm-up (numba compile or cache load): {compile_seconds:.1f} s", flush=True)

    peer_missing = peers.available()[1]  # {peer: why it cannot run here}, e.g. no gensim
    results = {}
    t_start = time.perf_counter()
    for name in args.datasets:
        data, truth, _ = make_dataset(name, N, n, m, random_state=args.seed,
                                      noise=NOISE if name == "noise" else None)
        start = make_init(truth, in_span=1.0, random_state=args.seed + 1)
        entry = dict(start_ln_error=log_total_correlation_error(start, truth),
                     data_min=float(data.min()), methods={})
        shared = {}  # the peers' clipped start, prepared once per data set
        for mode in args.modes:
            if mode in peers.PEERS:
                # not in "methods" (summarize.py reads every method's trace): a reason instead
                reason = peers.applicable(data) or peer_missing.get(mode)
                if reason:
                    entry.setdefault("not_applicable", {})[mode] = reason
                    print(f"  {name:8s} {mode:9s} not run: {reason}", flush=True)
                    continue
                trace, info = peers.run_peer(mode, data, truth, start,
                                             budget * BUDGET_FACTOR[mode], shared)
            elif mode == "cd":
                trace, info = run_cd(data, truth, start)
            else:
                trace, info = run_and(mode, data, truth, start, budget * BUDGET_FACTOR[mode],
                                      name)
            entry["methods"][mode] = dict(trace=trace, **info)
            print(f"  {name:8s} {mode:9s} final ln error {trace[-1]['ln_error']:8.2f} after "
                  f"{trace[-1]['seconds']:6.2f} s ({len(trace) - 1} points)", flush=True)
        results[name] = entry

    # -- summary table -------------------------------------------------------------------------
    rows = []
    for name, entry in results.items():
        methods = entry["methods"]
        cd_final = methods["cd"]["trace"][-1]["ln_error"] if "cd" in methods else None
        level = None if cd_final is None else cd_final + SLACK
        for method, res in methods.items():
            trace = res["trace"]
            rows.append(dict(
                dataset=name, method=method + (" (raised)" if res.get("error") else ""),
                final=trace[-1]["ln_error"], best=min(p["ln_error"] for p in trace),
                seconds=trace[-1]["seconds"],
                points=len(trace) - 1,
                t_target=first_time(trace, TARGET),
                t_cd=None if level is None else first_time(trace, level),
            ))
        if "cd" in methods and "stagewise" in methods:
            t_sw = first_time(methods["stagewise"]["trace"], level)
            t_cd = first_time(methods["cd"]["trace"], level)
            entry["cd200_ln_error"] = cd_final
            entry["stagewise_time_to_cd200"] = t_sw
            entry["cd_time_to_cd200"] = t_cd
            entry["ratio_stagewise_over_cd"] = (
                None if t_sw is None or not t_cd else t_sw / t_cd)
            if t_cd == 0:
                entry["ratio_note"] = ("cd never improves on its start: its 200-iteration "
                                       "error is no better than the clipped start's")
            elif t_sw is None:
                entry["ratio_note"] = "stagewise never reaches cd's 200-iteration error"
            entry["acceptance_ratio_le_0.2"] = (
                None if entry["ratio_stagewise_over_cd"] is None
                else bool(entry["ratio_stagewise_over_cd"] <= 0.2))
    total = time.perf_counter() - t_start
    print()
    print(_common.table(rows, [
        ("dataset", "data set"), ("method", "method"), ("final", "final ln err"),
        ("best", "best ln err"), ("seconds", "fit s"), ("points", "stages/runs"),
        ("t_target", f"s to ln<={TARGET:g}"), ("t_cd", "s to cd200 err"),
    ], floatfmt="{:.4g}"))
    print()
    ratio_rows = [dict(dataset=k, cd200=v.get("cd200_ln_error"),
                       t_sw=v.get("stagewise_time_to_cd200"), t_cd=v.get("cd_time_to_cd200"),
                       ratio=v.get("ratio_stagewise_over_cd"),
                       ok=v.get("acceptance_ratio_le_0.2"), note=v.get("ratio_note"))
                  for k, v in results.items()]
    print(_common.table(ratio_rows, [
        ("dataset", "data set"), ("cd200", "cd 200-iter ln err"), ("t_sw", "stagewise s"),
        ("t_cd", "cd s"), ("ratio", "ratio sw/cd"), ("ok", "<= 1/5"), ("note", "note"),
    ], floatfmt="{:.4g}"))
    print(f"\ntotal benchmark time {total:.0f} s (+ {compile_seconds:.1f} s warm-up)")

    stem = _common.output_stem("recovery", args.quick, args.out, args.canonical)
    payload = dict(
        benchmark="recovery", quick=args.quick, blas_threads=args.threads, sizes=dict(size, budget_seconds={
            k: budget * f for k, f in BUDGET_FACTOR.items()}),
        seed=args.seed, noise_gamma=NOISE, target_ln_error=TARGET, slack_ln=SLACK,
        notes=[
            "AND seconds: history_['seconds'] (fitting time, callback evaluation excluded).",
            "cd seconds: wall time of a fresh run per max_iter in the grid; W0 preparation "
            "(w0_seconds) excluded, which favours cd.",
            f"'time to cd200 err': first point with ln error <= cd's 200-iteration ln error "
            f"+ {SLACK}, for every method alike.",
            "AND runs from A0 = A*(I+U) unclipped; cd from max(A0, 0) (it needs a "
            "non-negative start).",
            "Peers (bench/peers.py): seconds are cumulative fitting time (evaluation "
            "excluded), or for minibatch a fresh run per max_iter like cd; starts and "
            "settings in each method's 'start' and 'settings'; mu and minibatch start from "
            "cd's start with its zeros lifted (multiplicative updates cannot move a zero); "
            "lda from its own random start. Data with negative entries: 'not_applicable'.",
        ],
        peers_unavailable=peer_missing,
        warmup_seconds=compile_seconds, total_seconds=total, summary=rows, results=results,
        machine=machine,
    )
    json_path = _common.save_json(payload, stem.with_suffix(".json"))
    png_path = stem.with_suffix(".png")
    plot(results, png_path, f"AND vs peers, n={n}, m={m}, N={N}, start A*(I+U)")
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
