"""Print the summary table of bench/README.md from saved recovery results.

Usage: python bench/summarize.py [bench/results/recovery.json]

For every data set and method: the fitting seconds needed to reach ln error -5, -15, -25 and
-45 ("-" = not reached) and the best ln error reached within the run's budget.
"""

import json
import sys

LEVELS = (-5, -15, -25, -45)


def first_time(trace, level):
    for point in trace:
        if point["ln_error"] is not None and point["ln_error"] <= level:
            return point["seconds"]
    return None


def table(results):
    lines = ["| data set | method | " + " | ".join(f"s to ln {v}" for v in LEVELS)
             + " | best ln error | seconds run |",
             "|---" * (len(LEVELS) + 4) + "|"]
    for dataset, entry in results.items():
        for method, run in entry["methods"].items():
            trace = run["trace"]
            times = [first_time(trace, level) for level in LEVELS]
            best = min(p["ln_error"] for p in trace if p["ln_error"] is not None)
            cells = ["-" if t is None else f"{t:.2f}" for t in times]
            lines.append(f"| {dataset} | {method} | " + " | ".join(cells)
                         + f" | {best:.1f} | {trace[-1]['seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/results/recovery.json"
    with open(path) as f:
        print(table(json.load(f)["results"]))
