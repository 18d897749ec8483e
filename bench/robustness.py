"""Robustness of AND to weak starts and to dense weights: the AND paper's appendix B.1 and B.2.

Paper (Li & Liang, ICML 2017, appendix B; DIR data, n = 100, m = 1000, N = 5000, T = 50,
thresholds ``0.1 / 1.1**j``):

* B.1 (Figure 3): starts ``A0 = A*(I + U) + N`` with ``U ~ U[-0.05, 0.05] * rl`` (in-span) and
  ``N ~ U[-0.05, 0.05] * rn`` (out-of-span). "even when rl = 2, the ground-truth can still be
  recovered, though at a slower yet exponential rate" (the figure shows rl = 1, 2, 4) and, for
  rn in 0.005 ... 0.02, "the column norm of the noise matrix N is comparable or even larger
  than the column norm of the signal A*, but [...] such noise merely affects on the
  convergence."
* B.2 (Figure 4): weights ``x ~ Dirichlet(k/n, ..., k/n)``: "For alpha as large as 20, the
  algorithm still converges to the ground-truth in exponential rate. When alpha = 80 [...]
  (almost full support), the algorithm still produces good results, stabilizing to a small
  relative error at the end."

Here, on ``make_dataset("dir")`` with ``make_init(truth, in_span=rl, out_of_span=rn)`` (the
paper's scalings for n = 100, see its docstring):

* B.1: rl in 1, 2, 3, 4 (rn = 0) and rn in 0.005, 0.01, 0.015, 0.02 (rl = 1);
* B.2: ``weight_params={"dir_sparsity": k}`` for k in 5, 10, 20, 40, 80 (start rl = 1);

each with ``update="stagewise", thresholds="adaptive"`` (the library's defaults) and
``update="gd", n_inner=50, thresholds="geometric"`` (the paper's setting), up to ``n_stages``
stages. Per run: the start, final and best ln error, the rate over the last ``RATE_WINDOW``
stages (ln units per stage) and a verdict: "recovered" (final ln error <= ``RECOVERED``),
"converging" (not yet, but still falling faster than ``CONVERGING_RATE`` per stage), or
"stalled". The runner (``thresholds_noise.run_and``) evaluates the ln error after every stage
in the callback, switches the library's ``n_iter_no_change`` off (where its default would have
stopped is replayed from the history) and stops a run whose best ln error has not improved by
0.5 over the last ``STALL_WINDOW`` stages. For B.1 the size of the start's errors is reported
as ratios of column norms: in-span ``||sum_{j != i} U_ji a*_j|| / ||(1 + U_ii) a*_i||`` and
out-of-span ``||N_i|| / ||a*_i||`` (medians over the columns), to compare with the paper's
"comparable or even larger".

Outputs ``robustness.json`` and ``.png`` in ``bench/results`` for the default parts and values
(``bench/results/tmp`` for ``--quick`` and any other ``--parts``, ``--rl``, ``--rn``, ``--k``
or ``--seed``; ``--out`` overrides) and prints the tables. BLAS runs
single-threaded (``OPENBLAS_NUM_THREADS=1`` set before numpy loads); the machine is shared, so
time is secondary: every run records the load average.

``--parts variants`` (plotted to ``robustness_variants.png`` beside other parts) is a side
probe, not in the paper: the adaptive rule without its stall probes (``probe=None``, the
default before 2026-11-23), with ``kappa`` 1.5 and 3, ``max_decay=2`` and a forced minimum
decay of 1.1 per stage, on the settings where it stalls (rl = 3, k = 40, 80), on DIR rl = 1 and
on the noise data (gamma 0.01).
``--parts init`` starts from the data instead of the truth: the estimator's default
``init="spa"`` (successive projections over the leading rows, exactly as ``AND.fit`` computes
it) on DIR (data seeds 0, 1, 2) and CTM-ref, with the default adaptive schedule, the same
without its careful start (``Adaptive(slow_range=1)``, the earlier default) and the geometric
one, up to 300 stages. The recovery guarantee assumes a warm start; this measures how far a
data-driven one is from it.
``--rl/--rn/--k VALUES`` runs other values (e.g. ``--parts b1 --rl '' --rn 0.1,0.2,0.5``:
out-of-span noise as large as the paper describes).

Usage: ``python bench/robustness.py [--quick] [--parts b1,b2,variants,init] [--out DIR]``;
``--from-json FILE`` redoes the tables, verdicts, ``findings`` and plot without fitting.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads OpenBLAS: the machine is shared (2 cores)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
from streamnmf.datasets import make_dataset, make_init  # noqa: E402
from streamnmf.schedules import Adaptive  # noqa: E402
from _common import loadavg  # noqa: E402
from thresholds_noise import run_and, stage_at, warmup  # noqa: E402

SIZES = {
    "full": dict(n_components=100, n_features=1000, n_samples=5000, n_stages=200),
    "quick": dict(n_components=50, n_features=500, n_samples=2000, n_stages=60),
}
IN_SPAN = (1, 2, 3, 4)
OUT_OF_SPAN = (0.005, 0.01, 0.015, 0.02)
SPARSITY = (5, 10, 20, 40, 80)
METHODS = {
    # name -> run_and keyword arguments
    "stagewise+adaptive": dict(update="stagewise", thresholds="adaptive"),
    "gd+geometric": dict(update="gd", n_inner=50, thresholds="geometric"),
}
STALL_WINDOW = 60   # stages without 0.5 ln of improvement before the bench stops a run
RECOVERED = -20.0   # ln error: "recovered" (2e-9 total squared correlation error)
RATE_WINDOW = 20    # stages over which the final rate is measured
CONVERGING_RATE = -0.05  # ln units per stage: still converging

PAPER = {
    "B.1": "It turns out that our algorithm is not very sensitive to the warm start; even if "
           "there is a lot of noise in the initialization, it still produces reasonable results. "
           "[...] even when rl = 2, the ground-truth can still be recovered, though at a slower "
           "yet exponential rate. [...] the column norm of the noise matrix N is comparable or "
           "even larger than the column norm of the signal A*, but as shown in the figure, such "
           "noise merely affects on the convergence. (Figure 3: rl = 1, 2, 4 and rn = 0.005, "
           "0.01, 0.015, 0.02, ln error axis down to -20)",
    "B.2": "For alpha as large as 20, the algorithm still converges to the ground-truth in "
           "exponential rate. When alpha = 80 meaning that the weight vectors have almost full "
           "support, the algorithm still produces good results, stabilizing to a small relative "
           "error at the end. (Figure 4: alpha = 5, 10, 20, 80, ln error axis down to -10)",
}


def verdict(trace, stop_reason=""):
    """"recovered" (final ln error <= RECOVERED), "converging" (still falling by more than
    CONVERGING_RATE per stage over the last RATE_WINDOW stages, and not at a fixed point) or
    "stalled" (includes a fixed point above RECOVERED: the library's tol stop, a noise floor)."""
    errs = np.array([p["ln_error"] for p in trace])
    final = float(errs[-1])
    k = min(RATE_WINDOW, len(errs) - 1)
    rate = float((errs[-1] - errs[-1 - k]) / k) if k > 0 else None
    if final <= RECOVERED:
        word = "recovered"
    elif rate is not None and rate <= CONVERGING_RATE and not stop_reason.startswith(
            "library: tol"):
        word = "converging"
    else:
        word = "stalled"
    return word, rate


def init_ratios(truth, rl, rn, seed):
    """Median column-norm ratios of the start's in-span and out-of-span errors to the signal."""
    n = truth.shape[0]
    ut = make_init(np.eye(n), in_span=rl, random_state=seed) - np.eye(n)  # U^T (drawn first)
    diag = np.diag(ut).copy()
    off = ut - np.diag(diag)
    signal = np.linalg.norm((1 + diag)[:, None] * truth, axis=1)
    in_span = np.linalg.norm(off @ truth, axis=1) / signal
    out = {"in_span_over_signal_median": float(np.median(in_span)),
           "in_span_over_signal_max": float(np.max(in_span))}
    if rn > 0:
        full = make_init(truth, in_span=rl, out_of_span=rn, random_state=seed)
        inner = make_init(truth, in_span=rl, out_of_span=0.0, random_state=seed)
        ratio = np.linalg.norm(full - inner, axis=1) / np.linalg.norm(truth, axis=1)
        out.update(out_of_span_over_signal_median=float(np.median(ratio)),
                   out_of_span_over_signal_max=float(np.max(ratio)))
    return out


def run_setting(data, truth, start, size, label, part, methods=None):
    runs = {}
    for method, kwargs in (methods or METHODS).items():
        trace, summ = run_and(data, truth, start, n_stages=size["n_stages"],
                              stall_window=STALL_WINDOW, **kwargs)
        word, rate = verdict(trace, summ["stop_reason"])
        summ.update(verdict=word, final_rate_ln_per_stage=rate,
                    stage_to_ln_minus10=stage_at(trace, -10.0),
                    stage_to_ln_minus20=stage_at(trace, -20.0))
        runs[method] = dict(summary=summ, trace=trace)
        print(f"  {part} {label:14s} {method:31s} start {summ['start']:6.2f} final "
              f"{summ['final']:7.2f} best {summ['best']:7.2f} stages {summ['stages']:3d} "
              f"rate {rate if rate is not None else float('nan'):6.3f} {word:10s} "
              f"({summ['stop_reason'][:24]}) {summ['wall_seconds']:5.1f}s load "
              f"{summ['loadavg_end'][0] if summ['loadavg_end'] else '-'}", flush=True)
    return runs


def part_b1(size, seed):
    n, m, N = size["n_components"], size["n_features"], size["n_samples"]
    data, truth, _ = make_dataset("dir", N, n, m, random_state=seed)
    out = {}
    settings = [("rl", rl, 0.0) for rl in IN_SPAN] + [("rn", 1.0, rn) for rn in OUT_OF_SPAN]
    for kind, rl, rn in settings:
        label = f"rl={rl:g}" if kind == "rl" else f"rn={rn:g}"
        start = make_init(truth, in_span=rl, out_of_span=rn, random_state=seed + 1)
        runs = run_setting(data, truth, start, size, label, "B.1")
        out[label] = dict(kind=kind, rl=rl, rn=rn, init=init_ratios(truth, rl, rn, seed + 1),
                          runs=runs)
    return out


def part_b2(size, seed):
    n, m, N = size["n_components"], size["n_features"], size["n_samples"]
    out = {}
    for k in SPARSITY:
        data, truth, weights = make_dataset("dir", N, n, m, random_state=seed,
                                            weight_params={"dir_sparsity": k})
        start = make_init(truth, in_span=1.0, random_state=seed + 1)
        label = f"k={k:g}"
        runs = run_setting(data, truth, start, size, label, "B.2")
        out[label] = dict(
            dir_sparsity=k, dirichlet_parameter=k / n,
            # support of the weights: entries above 1/(100 n) of the row (numerically non-zero)
            mean_support=float(np.mean(np.sum(weights > 1e-2 / n, axis=1))),
            runs=runs)
    return out


# Side probe (not in the paper): does the adaptive rule with a margin (kappa) or a slower
# decay (max_decay) avoid the stalls of B.1 rl=3 and B.2 k=40/80 without losing the fast
# convergence on DIR or the noise floor? ``--parts variants`` (all through the public API).
class AdaptiveMinDecay(Adaptive):
    """The library's Adaptive rule, but alpha falls at least ``min_decay``-fold per stage (never
    slower than the paper's geometric schedule): a probe of whether forcing the decay fixes
    the freezes, and what it costs under noise. Bench-only; not a library schedule."""

    def __init__(self, min_decay=1.1, **kwargs):
        super().__init__(**kwargs)
        self.min_decay = float(min_decay)

    def observe(self, stage, alpha, **outcome):
        super().observe(stage, alpha, **outcome)
        self._next = min(self._next, alpha / self.min_decay)


VARIANTS = {
    "stagewise+adaptive": dict(update="stagewise", thresholds="adaptive"),
    "stagewise+Adaptive(probe=None)": dict(update="stagewise",
                                           thresholds=Adaptive(probe=None)),
    "stagewise+Adaptive(kappa=1.5)": dict(update="stagewise", thresholds=Adaptive(kappa=1.5)),
    "stagewise+Adaptive(kappa=3)": dict(update="stagewise", thresholds=Adaptive(kappa=3.0)),
    "stagewise+Adaptive(max_decay=2)": dict(update="stagewise",
                                            thresholds=Adaptive(max_decay=2.0)),
    "stagewise+Adaptive, min decay 1.1": dict(update="stagewise",
                                              thresholds=AdaptiveMinDecay(1.1)),
}
VARIANT_SETTINGS = (  # label, dataset, in_span rl, weight params, noise
    ("dir rl=1", "dir", 1.0, None, None),
    ("dir rl=3", "dir", 3.0, None, None),
    ("dir k=40", "dir", 1.0, {"dir_sparsity": 40}, None),
    ("dir k=80", "dir", 1.0, {"dir_sparsity": 80}, None),
    ("noise gamma=0.01", "noise", 1.0, None, 0.01),
)


def part_variants(size, seed):
    n, m, N = size["n_components"], size["n_features"], size["n_samples"]
    out = {}
    for label, name, rl, wp, noise in VARIANT_SETTINGS:
        data, truth, _ = make_dataset(name, N, n, m, random_state=seed, weight_params=wp,
                                      noise=noise)
        start = make_init(truth, in_span=rl, random_state=seed + 1)
        out[label] = dict(dataset=name, rl=rl, weight_params=wp, noise=noise,
                          runs=run_setting(data, truth, start, size, label, "variants",
                                           methods=VARIANTS))
    return out


INIT_METHODS = {
    "stagewise+adaptive": dict(update="stagewise", thresholds="adaptive"),
    "stagewise+Adaptive(slow_range=1)": dict(update="stagewise",
                                             thresholds=Adaptive(slow_range=1.0)),
    "stagewise+geometric": dict(update="stagewise", thresholds="geometric"),
}
INIT_SETTINGS = (("dir seed 0", "dir", 0), ("dir seed 1", "dir", 1), ("dir seed 2", "dir", 2),
                 ("ctm-ref seed 0", "ctm-ref", 0))


def part_init(size):
    from streamnmf._start import spa_init
    from streamnmf.io import as_source
    from streamnmf.io.sources import leading_rows

    n, m, N = size["n_components"], size["n_features"], size["n_samples"]
    stages = dict(size, n_stages=size["n_stages"] * 3 // 2)  # 300 stages in the full run
    out = {}
    for label, name, seed in INIT_SETTINGS:
        data, truth, _ = make_dataset(name, N, n, m, random_state=seed)
        # what AND(init="spa").fit(data) starts from (the rng only fills rows SPA cannot)
        rows = leading_rows(as_source(data).blocks(), m, N)
        start = spa_init(rows, n, np.random.default_rng(0))
        out[label] = dict(dataset=name, seed=seed, init_rows=int(rows.shape[0]),
                          runs=run_setting(data, truth, start, stages, label, "init",
                                           methods=INIT_METHODS))
    return out


def plot_variants(res, path, title, part="variants"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = res[part]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.8),
                             squeeze=False)
    for ax, (label, entry) in zip(axes[0], settings.items()):
        for i, (method, run) in enumerate(entry["runs"].items()):
            tr = run["trace"]
            ax.plot([p["stage"] + 1 for p in tr], [p["ln_error"] for p in tr], color=f"C{i}",
                    label=method)
        ax.set_title(label)
        ax.set_xlabel("stage")
        ax.set_ylabel("ln total correlation error")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    _common.save_figure(fig, path, title)


def plot(res, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = []
    if "B1" in res:
        groups.append(("B.1 in-span rl (rn=0)", {k: v for k, v in res["B1"].items()
                                                  if v["kind"] == "rl"}))
        groups.append(("B.1 out-of-span rn (rl=1)", {k: v for k, v in res["B1"].items()
                                                      if v["kind"] == "rn"}))
    if "B2" in res:
        groups.append(("B.2 Dirichlet(k/n) sparsity", res["B2"]))
    groups = [g for g in groups if g[1]]
    methods = list(METHODS)
    fig, axes = plt.subplots(len(methods), len(groups), figsize=(5.0 * len(groups), 3.8 * len(methods)),
                             squeeze=False)
    cmap = plt.get_cmap("plasma")
    for col, (gtitle, settings) in enumerate(groups):
        for row, method in enumerate(methods):
            ax = axes[row][col]
            labels = list(settings)
            for i, label in enumerate(labels):
                tr = settings[label]["runs"][method]["trace"]
                ax.plot([p["stage"] + 1 for p in tr], [p["ln_error"] for p in tr],
                        color=cmap(0.85 * i / max(len(labels) - 1, 1)), label=label)
            ax.axhline(RECOVERED, color="gray", ls=":", lw=0.8)
            ax.set_title(f"{gtitle}: {method}", fontsize=10)
            ax.set_xlabel("stage")
            ax.set_ylabel("ln total correlation error")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    _common.save_figure(fig, path, title)


def findings(res):
    """Per setting: the verdicts side by side, and the settings where the two disagree."""
    out = {}
    for part, settings in res.items():
        if part in ("variants", "init"):
            out[part] = {label: {m: dict(final=r["summary"]["final"], best=r["summary"]["best"],
                                         verdict=r["summary"]["verdict"],
                                         stages=r["summary"]["stages"],
                                         stage_to_ln_minus20=r["summary"]["stage_to_ln_minus20"])
                                 for m, r in entry["runs"].items()}
                         for label, entry in settings.items()}
            continue
        rows = {}
        for label, entry in settings.items():
            v = {m: run["summary"] for m, run in entry["runs"].items()}
            row = {m: dict(final=s["final"], best=s["best"], verdict=s["verdict"],
                           stages=s["stages"], final_alpha=s["final_alpha"],
                           final_decoding_error=s.get("final_decoding_error"))
                   for m, s in v.items()}
            if part == "B1":
                row["init"] = entry["init"]
            rows[label] = row
        ad, ge = "stagewise+adaptive", "gd+geometric"
        out[part] = dict(
            per_setting=rows,
            adaptive_stalls_where_geometric_does_not=[
                label for label, r in rows.items()
                if r[ad]["verdict"] == "stalled" and r[ge]["verdict"] != "stalled"],
            geometric_stalls_where_adaptive_does_not=[
                label for label, r in rows.items()
                if r[ge]["verdict"] == "stalled" and r[ad]["verdict"] != "stalled"],
            both_stall=[label for label, r in rows.items()
                        if r[ad]["verdict"] == "stalled" and r[ge]["verdict"] == "stalled"],
        )
    return out


def report(res):
    rows = []
    for part, settings in res.items():
        for label, entry in settings.items():
            for method, run in entry["runs"].items():
                s = run["summary"]
                row = dict(part=part, setting=label, method=method, start=s["start"],
                           final=s["final"], best=s["best"], stages=s["stages"],
                           rate=s["final_rate_ln_per_stage"], s10=s["stage_to_ln_minus10"],
                           s20=s["stage_to_ln_minus20"], verdict=s["verdict"],
                           alpha=s["final_alpha"], dec=s.get("final_decoding_error"),
                           lib_stage=s["library_default_stop_stage"],
                           lib_err=s["ln_error_at_library_default_stop"],
                           stop=s["stop_reason"].split(" (")[0])
                if part == "B1":
                    row["in_ratio"] = entry["init"]["in_span_over_signal_median"]
                    row["out_ratio"] = entry["init"].get("out_of_span_over_signal_median")
                else:
                    row["support"] = entry.get("mean_support")
                rows.append(row)
    cols = [("setting", "setting"), ("method", "method"), ("start", "start"),
            ("final", "final ln err"), ("best", "best"), ("stages", "stages"),
            ("rate", "ln/stage (last 20)"), ("s10", "stage ln<=-10"), ("s20", "stage ln<=-20"),
            ("verdict", "verdict"), ("alpha", "last alpha"), ("dec", "last dec. err"),
            ("stop", "stopped by"), ("lib_stage", "default stop at"),
            ("lib_err", "ln err there")]
    if "B1" in res:
        print("\nB.1 weak initialisations (DIR)")
        print(_common.table([r for r in rows if r["part"] == "B1"],
                            cols + [("in_ratio", "in-span/signal"),
                                    ("out_ratio", "out-of-span/signal")], floatfmt="{:.3g}"))
    if "B2" in res:
        print("\nB.2 Dirichlet(k/n) weights")
        print(_common.table([r for r in rows if r["part"] == "B2"],
                            cols + [("support", "mean support")], floatfmt="{:.3g}"))
    if "init" in res:
        print("\nData-driven start: init='spa' (the estimator's default)")
        print(_common.table([r for r in rows if r["part"] == "init"], cols,
                            floatfmt="{:.3g}"))
    if "variants" in res:
        print("\nSide probe: adaptive-rule variants (stagewise)")
        print(_common.table([r for r in rows if r["part"] == "variants"], cols,
                            floatfmt="{:.3g}"))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 3 min)")
    parser.add_argument("--parts", default="b1,b2",
                        help="comma list of b1, b2, variants (a side probe of the adaptive "
                             "rule's parameters, not in the paper), init (data-driven starts)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-json", default=None,
                        help="no runs: redo the tables, findings and plot of a saved JSON")
    parser.add_argument("--rl", default=None, help="B.1 in-span values, e.g. 1,2 ('' for none)")
    parser.add_argument("--rn", default=None,
                        help="B.1 out-of-span values, e.g. 0.1,0.2,0.5 ('' for none)")
    parser.add_argument("--k", default=None, help="B.2 dir_sparsity values ('' for none)")
    args = parser.parse_args(argv)
    canonical = _common.canonical_run(parser, args, ignore=("from_json", "parts")) and set(
        args.parts.split(",")) == {"b1", "b2"}
    global IN_SPAN, OUT_OF_SPAN, SPARSITY

    def values(text, default):
        if text is None:
            return default
        return tuple(float(v) for v in text.split(",") if v.strip())

    IN_SPAN = values(args.rl, IN_SPAN)
    OUT_OF_SPAN = values(args.rn, OUT_OF_SPAN)
    SPARSITY = values(args.k, SPARSITY)
    if args.from_json:
        import json

        with open(args.from_json) as f:
            payload = json.load(f)
        res, size = payload["results"], payload["sizes"]
        for settings in res.values():  # verdicts by the current rule
            for entry in settings.values():
                for run in entry["runs"].values():
                    run["summary"]["verdict"], _ = verdict(run["trace"],
                                                           run["summary"]["stop_reason"])
        payload["rules"]["verdict"] = verdict.__doc__.strip()
        rows = report(res)
        payload.update(summary=rows, findings=findings(res))
        payload["machine"]["loadavg_end_of_run"] = payload["machine"].get("loadavg_end")
        payload["regenerated_from_json"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        json_path = _common.save_json(payload, args.from_json)
        png_path = Path(args.from_json).with_suffix(".png")
    else:
        parts = set(args.parts.split(","))
        size = SIZES["quick" if args.quick else "full"]
        print(f"robustness: n={size['n_components']} m={size['n_features']} "
              f"N={size['n_samples']} stages<={size['n_stages']}, load {loadavg()}", flush=True)
        compile_s = warmup()
        res = {}
        t0 = time.perf_counter()
        if "b1" in parts:
            res["B1"] = part_b1(size, args.seed)
        if "b2" in parts:
            res["B2"] = part_b2(size, args.seed)
        if "variants" in parts:
            res["variants"] = part_variants(size, args.seed)
        if "init" in parts:
            res["init"] = part_init(size)
        total = time.perf_counter() - t0
        rows = report(res)
        print(f"\ntotal {total:.0f} s (+ {compile_s:.1f} s warm-up), load {loadavg()}")
        stem = _common.output_stem("robustness", args.quick, args.out, canonical)
        payload = dict(
            benchmark="robustness", quick=args.quick, sizes=size, seed=args.seed,
            methods={k: dict(v) for k, v in METHODS.items()},
            rules=dict(recovered_ln=RECOVERED, rate_window=RATE_WINDOW,
                       converging_rate=CONVERGING_RATE, stall_window=STALL_WINDOW,
                       stall_drop=0.5, verdict=verdict.__doc__.strip()),
            values=dict(in_span=list(IN_SPAN), out_of_span=list(OUT_OF_SPAN),
                        dir_sparsity=list(SPARSITY)),
            paper=PAPER, warmup_seconds=compile_s, total_seconds=total,
            findings=findings(res), summary=rows, results=res,
        )
        json_path = _common.save_json(payload, stem.with_suffix(".json"))
        png_path = stem.with_suffix(".png")

    def part_png(part, alone):  # <stem>.png for a part run alone, else <stem>_<part>.png
        return png_path if alone else png_path.with_name(f"{png_path.stem}_{part}.png")

    if "variants" in res:
        plot_variants(res, part_png("variants", set(res) == {"variants"}),
            f"Adaptive-rule variants, n={size['n_components']}, m={size['n_features']}, "
            f"N={size['n_samples']}")
    if "init" in res:
        plot_variants(res, part_png("init", not ("B1" in res or "B2" in res)),
                      f"AND from init='spa', n={size['n_components']}, "
                      f"m={size['n_features']}, N={size['n_samples']}", part="init")
    if "B1" in res or "B2" in res:
        plot(res, png_path, f"AND robustness (paper appendix B.1/B.2), DIR, "
             f"n={size['n_components']}, m={size['n_features']}, N={size['n_samples']}")
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
