"""Drifting streams: AND's partial_fit against online NMF peers when the truth changes.

A stream of blocks (``--block`` rows, 2000) of samples ``y = x A_t`` with topic matrices
``A_t`` from ``streamnmf.datasets.make_topic_components`` (``--components`` 50 topics over
``--features`` 1000 words) and Dirichlet(5/n) weights; every method sees every block once,
through its streaming API, from its own default start. Scenarios (the truth changes after
``--converge`` blocks, 150):

* ``abrupt``: half of the topics replaced by fresh ones, then ``--after`` blocks (100);
* ``rotation``: every topic moves linearly from its old to a new distribution over
  ``--rotate`` blocks (200), then ``--after`` blocks at the new truth;
* ``weights``: the weights become Dirichlet(20/n) (denser), topics unchanged;
* ``stationary``: ``--stationary`` blocks (500: 10^6 samples) of one truth, AND only.

Methods: ``AND(update="stagewise")`` and ``AND(update="sgd")`` with every default
(``drift="reseed"``), ``MiniBatchNMF.partial_fit`` with its default ``forget_factor`` (0.7)
and 0.3, ``gensim.models.Nmf.update`` (if gensim imports). The error is the ln total
correlation error (``streamnmf.metrics.log_total_correlation_error``) against the truth of
the block just consumed, every ``--every`` blocks (5); generating blocks and measuring are
outside the fit clock.

Outputs ``drift.json`` and ``.png`` (ln error against samples, one panel per scenario) in
``bench/results`` (``bench/results/tmp`` for ``--quick`` and non-default options; ``--out``
overrides) and prints the acceptance figures: ln before the change and 50 blocks
after it (abrupt); whether AND is below every peer at every point after its first
convergence (rotation), with the truth's own movement per block that bounds the lag; the
largest rise over the error before the change (weights); the final error against the best
reached (stationary).

Usage: ``python bench/drift.py [--quick] [--scenarios abrupt rotation weights stationary]``
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
from streamnmf.datasets import make_topic_components, make_weights  # noqa: E402
from streamnmf.metrics import log_total_correlation_error  # noqa: E402

SCENARIOS = ("abrupt", "rotation", "weights", "stationary")
METHODS = ("stagewise", "sgd", "minibatch", "minibatch-0.3", "gensim")
LABELS = {
    "stagewise": "AND stagewise (defaults)",
    "sgd": "AND sgd (defaults)",
    "minibatch": "MiniBatchNMF.partial_fit (forget 0.7)",
    "minibatch-0.3": "MiniBatchNMF.partial_fit (forget 0.3)",
    "gensim": "gensim Nmf.update",
}
DIR_SPARSITY, DIR_SPARSITY_AFTER = 5.0, 20.0


class Stream:
    """The truth and the weights of every block of a scenario (the same for every method)."""

    def __init__(self, scenario, n, m, block, converge, after, rotate, stationary, seed):
        self.scenario, self.n, self.block, self.seed = scenario, n, block, seed
        self.converge = converge
        self.old = make_topic_components(n, m, random_state=seed)
        self.new = make_topic_components(n, m, random_state=seed + 1)
        self.rotate = rotate if scenario == "rotation" else 0
        self.n_blocks = stationary if scenario == "stationary" else converge + self.rotate + after

    def truth(self, b):
        if self.scenario in ("stationary", "weights") or b < self.converge:
            return self.old
        if self.scenario == "abrupt":
            truth = self.old.copy()
            truth[self.n // 2:] = self.new[self.n // 2:]
            return truth
        s = min(1.0, (b - self.converge + 1) / self.rotate)
        return (1 - s) * self.old + s * self.new

    def samples(self, b):
        sparsity = DIR_SPARSITY_AFTER if (self.scenario == "weights" and b >= self.converge) \
            else DIR_SPARSITY
        X = make_weights("dir", self.block, self.n, random_state=np.random.default_rng([self.seed, b]),
                         dir_sparsity=sparsity)
        return X @ self.truth(b)


def make_method(method, n, m, block):
    """(fit one block, current components) of a method."""
    if method in ("stagewise", "sgd"):
        est = streamnmf.AND(n, update=method, random_state=0, blas_threads=1)
        return est.partial_fit, lambda: est.components_
    if method.startswith("minibatch"):
        from sklearn.decomposition import MiniBatchNMF

        forget = 0.3 if method == "minibatch-0.3" else 0.7
        est = MiniBatchNMF(n, batch_size=block, forget_factor=forget, random_state=0)
        warnings.filterwarnings("ignore", module="sklearn")
        return est.partial_fit, lambda: est.components_
    if method == "gensim":
        import logging

        import scipy.sparse as sp
        from gensim.models import Nmf

        logging.getLogger("gensim").setLevel(logging.WARNING)
        est = Nmf(corpus=None, num_topics=n, id2word={i: str(i) for i in range(m)},
                  chunksize=block, passes=1, eval_every=0, normalize=False, random_state=0)
        # gensim takes (features, documents); its first update draws its own start
        return (lambda Y: est.update(sp.csc_matrix(Y.T), passes=1, eval_every=0),
                lambda: est.get_topics(normalize=False))
    raise ValueError(method)


def run(stream, method, every):
    fit, components = make_method(method, stream.n, stream.old.shape[1], stream.block)
    seconds, points = 0.0, []
    for b in range(stream.n_blocks):
        Y = stream.samples(b)
        t0 = time.perf_counter()
        fit(Y)
        seconds += time.perf_counter() - t0
        last = b == stream.n_blocks - 1
        if b % every == every - 1 or b == stream.converge - 1 or last:
            points.append(dict(block=b + 1, samples=(b + 1) * stream.block, seconds=seconds,
                               ln_error=log_total_correlation_error(components(),
                                                                    stream.truth(b))))
    return dict(label=LABELS[method], points=points, seconds=seconds)


def summarize(scenario, stream, runs):
    """The acceptance figures of a scenario, from the error curves."""
    def at(points, block):
        return next(p["ln_error"] for p in points if p["block"] >= block)

    out = {}
    c = stream.converge
    for method, result in runs.items():
        pts = result["points"]
        before = at(pts, c)
        if scenario == "abrupt":
            window = min(50, stream.n_blocks - c)  # 50 blocks, fewer in a --quick run
            out[method] = dict(before=before, after_blocks=window,
                               after=at(pts, c + window),
                               blocks_to_minus_20=next(
                                   (p["block"] - c for p in pts
                                    if p["block"] > c and p["ln_error"] <= -20), None))
        elif scenario == "weights":
            out[method] = dict(before=before,
                               largest_rise=max(p["ln_error"] for p in pts if p["block"] > c)
                               - before)
        elif scenario == "stationary":
            out[method] = dict(best=min(p["ln_error"] for p in pts),
                               final=pts[-1]["ln_error"])
        else:
            out[method] = dict(before=before, final=pts[-1]["ln_error"])
    if scenario == "rotation":
        # after the change starts: is each AND variant below every peer at every point?
        peers = [m for m in runs if m not in ("stagewise", "sgd")]
        movement = log_total_correlation_error(stream.truth(c + 1), stream.truth(c))
        out["truth_movement_per_block_ln"] = movement
        for method in ("stagewise", "sgd"):
            if method in runs and peers:
                ours = {p["block"]: p["ln_error"] for p in runs[method]["points"]}
                worst = max(
                    ours[p["block"]] - p["ln_error"]
                    for peer in peers for p in runs[peer]["points"] if p["block"] > c
                )
                out[method]["largest_gap_to_best_peer"] = worst
                out[method]["below_every_peer"] = bool(worst < 0)
    return out


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(result["scenarios"])
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        data = result["scenarios"][scenario]
        for method, run_ in data["runs"].items():
            pts = run_["points"]
            ax.plot([p["samples"] for p in pts], [p["ln_error"] for p in pts],
                    label=run_["label"])
        ax.axvline(data["change_at_samples"], color="grey", ls=":", lw=1)
        ax.set(title=scenario, xlabel="samples", ylabel="ln error against the current truth")
        ax.legend(fontsize=7)
    _common.save_figure(fig, path, "Drifting streams")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small shapes and few blocks (results to an ignored folder)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                        help="default: all (gensim only if it imports)")
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--block", type=int, default=2000)
    parser.add_argument("--converge", type=int, default=150)
    parser.add_argument("--after", type=int, default=100)
    parser.add_argument("--rotate", type=int, default=200)
    parser.add_argument("--stationary", type=int, default=500)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    args = parser.parse_args(argv)
    stem = _common.output_stem("drift", args.quick, args.out,
                               _common.canonical_run(parser, args))
    if args.quick:
        args.components, args.features, args.block = 20, 300, 1000
        args.converge, args.after, args.rotate, args.stationary = 60, 40, 60, 120
    methods = args.methods
    if methods is None:
        import peers

        ok, _ = peers.gensim_available()
        methods = [m for m in METHODS if ok or m != "gensim"]
    t_start = time.perf_counter()
    result = dict(
        benchmark="drift",
        settings=dict(n_components=args.components, n_features=args.features,
                      block=args.block, converge=args.converge, after=args.after,
                      rotate=args.rotate, stationary=args.stationary, every=args.every,
                      seed=args.seed, weights=f"Dirichlet({DIR_SPARSITY:g}/n)",
                      weights_after=f"Dirichlet({DIR_SPARSITY_AFTER:g}/n)", blas_threads=1),
        scenarios={},
    )
    for scenario in args.scenarios:
        stream = Stream(scenario, args.components, args.features, args.block, args.converge,
                        args.after, args.rotate, args.stationary, args.seed)
        chosen = [m for m in methods if scenario != "stationary" or m in ("stagewise", "sgd")]
        runs = {}
        for method in chosen:
            runs[method] = run(stream, method, args.every)
            print(f"{scenario:10s} {LABELS[method]:40s} final ln "
                  f"{runs[method]['points'][-1]['ln_error']:7.2f}  "
                  f"{runs[method]['seconds']:6.1f} s", flush=True)
        summary = summarize(scenario, stream, runs)
        result["scenarios"][scenario] = dict(
            runs=runs, summary=summary,
            change_at_samples=args.converge * args.block if scenario != "stationary" else 0)
        print(f"{scenario}: {summary}", flush=True)
    result["total_seconds"] = time.perf_counter() - t_start
    _common.write_results(result, stem, plot)


if __name__ == "__main__":
    main()
