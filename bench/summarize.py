"""Regenerate the tables of bench/README.md from the canonical result files.

Usage::

    python bench/summarize.py                 # rewrite the generated tables in bench/README.md
    python bench/summarize.py --check         # exit 1 if bench/README.md is out of date
    python bench/summarize.py --print recovery [--json FILE]   # print one table

Every generated table sits in bench/README.md between ``<!-- begin table: NAME -->`` and
``<!-- end table: NAME -->``; the text around the markers is written by hand. Tables (NAME,
source in ``bench/results``):

* ``recovery`` (``recovery.json``): for every data set and method, the fitting seconds needed
  to reach ln error -5, -15, -25 and -45 ("-" = not reached), the best ln error reached within
  the run's budget and the seconds run;
* ``real_table`` (``real_table.json``): one table per data set, as ``bench/real_table.py``
  prints it (its ``markdown`` function);
* ``real_table_heldout`` (``real_table_heldout.json``): the same for the held-out data sets
  (``bench/real_table.py --heldout``), with the acceptance checks;
* ``drift`` (``drift.json``): the acceptance figures of every scenario and method.

A table whose JSON is missing is left as it is (and reported).
"""

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bench scripts import each other from this folder
README = HERE / "README.md"
RESULTS = HERE / "results"

LEVELS = (-5, -15, -25, -45)


# -- recovery ----------------------------------------------------------------------------------
def first_time(trace, level):
    for point in trace:
        if point["ln_error"] is not None and point["ln_error"] <= level:
            return point["seconds"]
    return None


def table(results):
    """The recovery table (markdown) of ``recovery.json``'s ``results``."""
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


def recovery_table(result):
    return table(result["results"])


# -- real data -----------------------------------------------------------------------------------
def real_table_tables(result):
    import real_table  # bench/real_table.py, beside this script

    return real_table.markdown(result, fenced=True)


# -- drift ---------------------------------------------------------------------------------------
DRIFT_METHODS = {"stagewise": "AND stagewise", "sgd": "AND sgd",
                 "minibatch": "MiniBatchNMF 0.7", "minibatch-0.3": "MiniBatchNMF 0.3",
                 "gensim": "gensim"}


def _cell(value, fmt="{:.1f}"):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return fmt.format(value)
    return str(value)


def drift_table(result):
    """The acceptance figures of ``drift.json``: one row per scenario and figure."""
    settings, scenarios = result["settings"], result["scenarios"]
    methods = [m for m in DRIFT_METHODS if any(m in s["runs"] for s in scenarios.values())]
    methods += sorted({m for s in scenarios.values() for m in s["runs"]} - set(methods))
    rows = []  # (scenario, figure, {method: cell})

    def add(scenario, figure, key, fmt="{:.1f}"):
        summary = scenarios[scenario]["summary"]
        cells = {m: _cell(summary[m].get(key), fmt) for m in methods
                 if isinstance(summary.get(m), dict) and key in summary[m]}
        if cells:
            rows.append((scenario, figure, cells))

    if "abrupt" in scenarios:
        summary = scenarios["abrupt"]["summary"]
        window = next((v["after_blocks"] for v in summary.values()
                       if isinstance(v, dict) and "after_blocks" in v), None)
        add("abrupt", "ln before the change", "before")
        add("abrupt", f"ln {window} blocks after", "after")
        add("abrupt", "blocks to ln -20", "blocks_to_minus_20", "{:d}")
    if "rotation" in scenarios:
        add("rotation", "ln before the rotation", "before")
        add("rotation", f"final ln ({settings['after']} blocks after the rotation)", "final")
        add("rotation", "largest gap to any peer (ln)", "largest_gap_to_best_peer")
    if "weights" in scenarios:
        add("weights", "largest rise of ln", "largest_rise")
    if "stationary" in scenarios:
        samples = settings["stationary"] * settings["block"]
        add("stationary", f"best ln ({samples:,} samples)", "best")
        add("stationary", "final ln", "final")
    lines = ["| scenario | figure | " + " | ".join(DRIFT_METHODS.get(m, m) for m in methods)
             + " |", "|---|---|" + "---:|" * len(methods)]
    for scenario, figure, cells in rows:
        lines.append(f"| {scenario} | {figure} | "
                     + " | ".join(cells.get(m, "-") for m in methods) + " |")
    movement = scenarios.get("rotation", {}).get("summary", {}).get(
        "truth_movement_per_block_ln")
    if movement is not None:
        lines += ["", f"Rotation: the truth moves by ln {movement:.1f} per block; a negative "
                  "gap means below every peer",
                  "at every point after the change."]
    return "\n".join(lines)


#: name -> (result file in bench/results, function of the loaded JSON -> markdown)
TABLES = {
    "recovery": ("recovery.json", recovery_table),
    "real_table": ("real_table.json", real_table_tables),
    "real_table_heldout": ("real_table_heldout.json", real_table_tables),
    "drift": ("drift.json", drift_table),
}


def render(name, path=None):
    """The markdown of table ``name`` from ``path`` (default: its canonical result file), or
    None when the file does not exist."""
    filename, fn = TABLES[name]
    path = Path(path) if path else RESULTS / filename
    if not path.exists():
        return None
    with open(path) as f:
        return fn(json.load(f))


def update(text, tables):
    """``text`` with the body between every ``begin/end table: NAME`` marker pair replaced by
    ``tables[NAME]``; returns (new text, names of markers without a table)."""
    missing = []

    def replace(match):
        name = match.group(1)
        body = tables.get(name)
        if body is None:
            missing.append(name)
            return match.group(0)
        return f"<!-- begin table: {name} -->\n{body}\n<!-- end table: {name} -->"

    pattern = re.compile(r"<!-- begin table: ([\w-]+) -->\n.*?<!-- end table: \1 -->", re.S)
    return pattern.sub(replace, text), missing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 if bench/README.md is out of date")
    parser.add_argument("--print", dest="show", choices=TABLES, default=None,
                        help="print one table instead of updating the README")
    parser.add_argument("--json", default=None, help="with --print: the result file to read")
    parser.add_argument("--readme", default=str(README), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.show:
        body = render(args.show, args.json)
        if body is None:
            parser.error(f"no result file for {args.show}")
        print(body)
        return 0
    readme = Path(args.readme)
    text = readme.read_text()
    found = set(re.findall(r"<!-- begin table: ([\w-]+) -->", text))
    for name in sorted(found - set(TABLES)):
        print(f"{readme}: unknown table {name!r}", file=sys.stderr)
    tables = {name: render(name) for name in TABLES if name in found}
    new, missing = update(text, {k: v for k, v in tables.items() if v is not None})
    for name in missing:
        print(f"{name}: no {TABLES[name][0] if name in TABLES else 'result file'}; "
              "table left as it is", file=sys.stderr)
    for name in sorted(set(TABLES) - found):
        print(f"{readme}: no markers for table {name!r}", file=sys.stderr)
    if args.check:
        if new != text:
            print(f"{readme} is out of date: run python bench/summarize.py", file=sys.stderr)
            return 1
        print(f"{readme} is up to date ({', '.join(sorted(found & set(TABLES)))})")
        return 0
    if new != text:
        readme.write_text(new)
        print(f"updated {readme}")
    else:
        print(f"{readme} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
