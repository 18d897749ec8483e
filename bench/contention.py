"""BLAS threads on a busy machine: the default policy against one thread and the library's own.

Each fit runs in a fresh process (so BLAS starts as configured) while ``--busy`` other
processes spin on the cores, and on an idle machine. Three settings of ``blas_threads``:
``auto`` (the default: the cores other processes leave free), ``1``, and ``None`` (BLAS as
configured: all cores, what a fit did before the policy existed). The settings run
round-robin, so a burst of outside load hits them alike; medians over ``--repeats``, ratios
against ``None`` and ``1`` of the same round.

Workloads: the README's Purification example (200 000 x 120, 30 components, 50 iterations)
and AND stagewise on DIR (20 000 x 1000, 100 components, 15 stages).

    python bench/contention.py [--quick] [--busy 2] [--repeats 3]
"""

import argparse
import multiprocessing
import subprocess
import sys
import time

import numpy as np

from _common import canonical_run, machine_info, output_stem, save_json, table

SETTINGS = ("auto", "1", "None")

WORKLOAD = r"""
import sys, time
import numpy as np
from streamnmf import AND, Purification
from streamnmf.datasets import make_dataset, make_init, make_purification_data
which, setting, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
blas_threads = None if setting == "None" else ("auto" if setting == "auto" else int(setting))
if which == "purification":
    n_samples = 50_000 if quick else 200_000
    data, truth, _ = make_purification_data(n_samples, n_components=30, n_features=120,
                                            weights="a2'", sparsity=3, random_state=0)
    make = lambda n: Purification(30, init=make_init(truth, in_span=0.55, random_state=1),
                                  stage_length=n_samples // 10, n_stages=n, step_decay=1.0,
                                  blas_threads=blas_threads)
    full = 20 if quick else 50
else:
    data, truth, _ = make_dataset("dir", 5000 if quick else 20000, 100, 1000, random_state=0)
    make = lambda n: AND(100, init=make_init(truth, random_state=1), n_stages=n, tol=0,
                         n_iter_no_change=None, blas_threads=blas_threads)
    full = 5 if quick else 15
make(1).fit(data)  # compiles the kernels: not timed
t0 = time.perf_counter()
make(full).fit(data)
print(time.perf_counter() - t0)
"""


def spin(stop):
    x = 0
    while not stop.is_set():
        x += 1


def run_one(which, setting, quick):
    out = subprocess.run([sys.executable, "-c", WORKLOAD, which, setting, "1" if quick else "0"],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(which, busy, repeats, quick):
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=spin, args=(stop,), daemon=True)
                for _ in range(busy)]
    for p in spinners:
        p.start()
    time.sleep(0.5 if busy else 0.0)
    try:
        seconds = {s: [] for s in SETTINGS}
        for _ in range(repeats):
            for setting in SETTINGS:
                seconds[setting].append(run_one(which, setting, quick))
    finally:
        stop.set()
        for p in spinners:
            p.join()
    med = {s: float(np.median(v)) for s, v in seconds.items()}
    return dict(workload=which, busy_processes=busy, seconds=seconds, median=med,
                auto_over_one=med["auto"] / med["1"], auto_over_none=med["auto"] / med["None"],
                one_over_none=med["1"] / med["None"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller fits (a minute)")
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the busy case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None,
                        help="output folder (default: bench/results, or bench/results/tmp "
                             "for --quick and non-default options)")
    args = parser.parse_args()
    stem = output_stem("contention", args.quick, args.out, canonical_run(parser, args))
    t0 = time.perf_counter()
    rows = []
    for which in ("purification", "and"):
        for busy in (0, args.busy):
            row = measure(which, busy, args.repeats, args.quick)
            rows.append(row)
            print(f"{which:12s} busy={busy}: " + "  ".join(
                f"{s}={row['median'][s]:.2f}s" for s in SETTINGS)
                + f"  auto/1={row['auto_over_one']:.2f} auto/None={row['auto_over_none']:.2f}",
                flush=True)
    result = dict(benchmark="contention", quick=args.quick, repeats=args.repeats, rows=rows,
                  total_seconds=time.perf_counter() - t0, machine=machine_info())
    path = save_json(result, stem.with_suffix(".json"))
    print(table([{"workload": r["workload"], "busy": r["busy_processes"],
                  **{f"{s} s": r["median"][s] for s in SETTINGS},
                  "auto/1": r["auto_over_one"], "auto/None": r["auto_over_none"]}
                 for r in rows],
                [(c, c) for c in ("workload", "busy", "auto s", "1 s", "None s", "auto/1",
                                  "auto/None")]))
    print(f"wrote {path} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
