"""The ``streamnmf`` command line: generate, fit, evaluate, demo.

Every command prints a short human summary, or one JSON object with ``--json`` (for scripts).
Progress bars (tqdm) appear only on a terminal.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

from . import __version__


def _thresholds(text):
    if text in ("adaptive", "geometric"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'adaptive', 'geometric' or a number (a constant threshold), got {text!r}"
        ) from None


def _blas_threads(text):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a count >= 1, got {text!r}")
    return value


def _checkpoint_every(text):
    """``60`` or ``60s``: seconds; ``5000n``: samples."""
    try:
        if text.endswith("n"):
            return int(text[:-1])
        return float(text.rstrip("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds ('60', '60s') or samples ('5000n'), got {text!r}"
        ) from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="streamnmf",
        description="Streaming NMF with provable recovery (AND, Purification), out of core.",
    )
    parser.add_argument("--version", action="version", version=f"streamnmf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    shown = dict(formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    g = sub.add_parser("generate", help="write one of the papers' data sets to HDF5", **shown)
    g.add_argument("name", help="dir, ctm-ref, ctm, neg, noise or binary")
    g.add_argument("out", help="HDF5 file to create (dense data: samples x features x 8 bytes, "
                               "4 with --float32)")
    g.add_argument("--n-samples", type=int, default=5000, help="rows to write")
    g.add_argument("--n-components", type=int, default=100, help="true components (topics)")
    g.add_argument("--n-features", type=int, default=1000, help="columns")
    g.add_argument("--noise", type=float, default=None,
                   help="noise level gamma (None: the data set's own)")
    g.add_argument("--sparse", action="store_true", help="store as a CSR group")
    g.add_argument("--float32", action="store_true", help="store float32 values")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--overwrite", action="store_true", help="replace an existing file")
    g.add_argument("--json", action="store_true", help="print one JSON object")

    f = sub.add_parser("fit", help="fit a model to an HDF5 data set, out of core", **shown)
    f.add_argument("data", help="HDF5 file: 'file.h5' reads the dataset (or CSR group) "
                                "named 'data'; 'file.h5:/name' another one")
    f.add_argument("--rank", type=int, required=True, help="number of components")
    f.add_argument("--algorithm", choices=["and", "purification"], default="and",
                   help="AND (Li & Liang 2017) or Purification (Li, Liang & Risteski 2016)")
    f.add_argument("--update", choices=["stagewise", "gd", "sgd"], default=None,
                   help="AND only: stage update (None: stagewise)")
    f.add_argument("--components", choices=["auto", "nonnegative", "signed"], default=None,
                   help="AND only: non-negative or signed components (None: auto, "
                        "non-negative on non-negative data)")
    f.add_argument("--thresholds", type=_thresholds, default=None,
                   help="AND: adaptive, geometric or a constant (None: adaptive); "
                        "Purification: a constant (None: 0.1)")
    f.add_argument("--n-stages", type=int, default=200,
                   help="most stages (Purification: the paper's iterations)")
    f.add_argument("--stage-length", type=int, default=None,
                   help="samples per stage (None: one pass over the file)")
    f.add_argument("--init", default="spa",
                   help="spa, nndsvda, random, or 'warm:RL' for the papers' A*(I+U) start "
                        "built from the file's true 'components' (RL scales U; 1 is the "
                        "paper's)")
    f.add_argument("--checkpoint", default=None,
                   help="checkpoint file (HDF5) written at every stage end; never the data "
                        "file or a file this fit did not write")
    f.add_argument("--checkpoint-every", type=_checkpoint_every, default=60.0,
                   help="seconds ('60') or samples ('5000n') between checkpoints within a stage")
    f.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    f.add_argument("--shuffle", action="store_true", help="shuffle block order every pass")
    f.add_argument("--out", default=None, help="model file to write (HDF5)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out, and start afresh over an existing "
                        "--checkpoint of this same fit")
    f.add_argument("--seed", type=int, default=0, help="random seed of the start")
    f.add_argument("--blas-threads", type=_blas_threads, default="auto",
                   help="BLAS threads: 'auto' (the cores other processes leave free) or a "
                        "count")
    f.add_argument("--scheduler", default=None, help="Dask scheduler address")
    f.add_argument("--workers", type=int, default=None,
                   help="start a local Dask cluster with this many worker processes")
    f.add_argument("--json", action="store_true", help="print one JSON object")

    e = sub.add_parser("evaluate", help="recovery error of a model against true components",
                       **shown)
    e.add_argument("model", help="model file written by 'streamnmf fit --out'")
    e.add_argument("truth", help="HDF5 file with a 'components' dataset (from 'generate')")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    d = sub.add_parser("demo", help="generate a corpus, fit it out of core, print the error",
                       **shown)
    d.add_argument("--quick", action="store_true", help="a smaller problem (seconds)")
    d.add_argument("--workdir", default=None,
                   help="keep the files (dir.h5, fit.ckpt.h5) here (None: a temporary folder)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier demo in --workdir")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


class UsageError(ValueError):
    """A command-line mistake: reported in one line, exit status 2."""


#: the Python spellings in the library's messages and the flags that say the same here
_FLAG_WORDING = (("resume=True", "--resume"), ("overwrite=True", "--overwrite"),
                 ("the checkpoint parameter", "--checkpoint"))


def _cli_wording(message):
    for python, flag in _FLAG_WORDING:
        message = message.replace(python, flag)
    return message


# -- helpers ------------------------------------------------------------------------------------

def _emit(args, result, lines):
    if args.json:
        print(json.dumps(result, default=float))
    else:
        print("\n".join(lines))


def _progress(total, enabled, initial=0):
    """A tqdm bar on a terminal, nothing otherwise (or without tqdm)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, unit="stage", disable=None, leave=False,
                file=sys.stderr)


def _stages_in_checkpoint(args):
    """Stages the checkpoint to resume from has done (0 when there is none yet)."""
    from .io.records import peek_stage

    return peek_stage(args.checkpoint) if os.path.exists(args.checkpoint) else 0


def _make_estimator(args, init, callback):
    from . import AND

    common = dict(init=init, random_state=args.seed, callback=callback,
                  checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                  blas_threads=getattr(args, "blas_threads", "auto"))
    if args.algorithm == "purification":
        from . import Purification

        for flag in ("update", "components"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} applies to --algorithm and only. Leave it out "
                                 "with --algorithm purification.")
        if isinstance(args.thresholds, str):
            raise UsageError(f"--thresholds {args.thresholds} applies to --algorithm and "
                             "only; Purification takes a constant threshold (a number).")
        estimator = Purification(args.rank, **common)
    else:
        estimator = AND(args.rank, update=args.update or "stagewise",
                        components=args.components or "auto", **common)
    # one vocabulary: the flags name the estimators' own parameters
    if args.thresholds is not None:
        estimator.set_params(thresholds=args.thresholds)
    return estimator.set_params(n_stages=args.n_stages, stage_length=args.stage_length)


def _same_file(a, b):
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.abspath(a) == os.path.abspath(b)


def _check_targets(args, data_path):
    """Refuse, before any work, outputs that would replace a file they should not."""
    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint: the file to continue from.")
    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--scheduler and --workers exclude each other: --scheduler uses a "
                         "running Dask cluster, --workers starts one on this machine.")
    if args.out is not None:
        for other, what in ((data_path, "the input data"), (args.checkpoint, "--checkpoint")):
            if other is not None and _same_file(args.out, other):
                raise UsageError(f"--out {args.out} is {what}: give the model another name.")
        from .io.records import check_output_path

        check_output_path(args.out, args.overwrite, flag="--overwrite", what="--out")
    if args.out is None and args.checkpoint is None:
        warnings.warn("neither --out nor --checkpoint is given: the fitted model will not be "
                      "saved. Add --out model.h5 to keep it.", stacklevel=2)


def _init_from(spec, data_spec, rank, seed):
    if not spec.startswith("warm:"):
        return spec
    from .datasets import load_hdf5_truth, make_init

    path = data_spec.split(":", 1)[0] if not os.path.exists(data_spec) else data_spec
    truth = load_hdf5_truth(path)
    if truth.shape[0] != rank:
        raise SystemExit(f"--init {spec}: the file has {truth.shape[0]} true components, "
                         f"--rank is {rank}.")
    return make_init(truth, in_span=float(spec[5:]), random_state=seed + 1)


def _fit(args, evaluate_against=None, progress=True):
    """Run a fit from an HDF5 source; returns (estimator, per-stage log, seconds)."""
    from .io import HDF5Source
    from .metrics import log_total_correlation_error

    path, _, name = args.data.partition(":") if not os.path.exists(args.data) else (
        args.data, "", "")
    _check_targets(args, path)
    source = HDF5Source(path, name or None, shuffle=args.shuffle, random_state=args.seed,
                        prefetch=True)
    init = _init_from(args.init, args.data, args.rank, args.seed)
    log = []
    args.stages_done = _stages_in_checkpoint(args) if args.resume else 0

    def callback(est, row):
        entry = {k: row[k] for k in ("stage", "seconds", "alpha", "objective", "change")}
        if evaluate_against is not None:
            entry["ln_error"] = log_total_correlation_error(est.components_, evaluate_against)
        log.append(entry)
        args.stages_done = int(row["stage"]) + 1
        if bar is not None:
            bar.update(args.stages_done - bar.n)
            bar.set_postfix(alpha=f"{row['alpha']:.1e}", change=f"{row['change']:.1e}")
        return False

    est = _make_estimator(args, init, callback)
    bar = _progress(args.n_stages, progress and not args.json, initial=args.stages_done)
    client, cluster = _dask_client(args)
    t0 = time.perf_counter()
    try:
        if client is not None:
            est.set_params(client=client)
        est.fit(source, resume=args.resume, overwrite=args.overwrite)
    finally:
        if bar is not None:
            bar.close()
        source.close()
        if client is not None:  # the client made here; a scheduler given by address runs on
            client.close()
        if cluster is not None:
            cluster.close()
    return est, log, time.perf_counter() - t0


def _dask_client(args):
    if args.scheduler is None and args.workers is None:
        return None, None
    try:
        from dask.distributed import Client
    except ImportError:
        raise SystemExit("--scheduler/--workers need Dask: pip install 'streamnmf[dask]'") \
            from None
    if args.scheduler is not None:
        return Client(args.scheduler), None
    from ._dask import local_cluster

    cluster = local_cluster(args.workers)
    return Client(cluster), cluster


# -- commands -----------------------------------------------------------------------------------

def cmd_generate(args):
    from .io.records import check_output_path
    from .datasets import write_hdf5

    check_output_path(args.out, args.overwrite, flag="--overwrite", what="output file")
    if not args.sparse:  # dense values: the size is known before writing
        size = args.n_samples * args.n_features * (4 if args.float32 else 8)
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(args.out))).free
        if size > free:
            raise UsageError(
                f"{args.out} would take {size / 1e9:.1f} GB and its disk has {free / 1e9:.1f} "
                "GB free: lower --n-samples or --n-features, or add --sparse or --float32.")
        if size >= 1 << 30 and not args.json:
            print(f"writing {size / 1e9:.1f} GB to {args.out} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    write_hdf5(args.out, args.name, args.n_samples, args.n_components, args.n_features,
               noise=args.noise, sparse=args.sparse, overwrite=args.overwrite,
               random_state=args.seed, dtype=np.float32 if args.float32 else np.float64)
    seconds = time.perf_counter() - t0
    result = dict(command="generate", out=args.out, name=args.name, n_samples=args.n_samples,
                  n_features=args.n_features, n_components=args.n_components,
                  bytes=os.path.getsize(args.out), seconds=seconds)
    _emit(args, result, [
        f"wrote {args.out}: {args.name}, {args.n_samples} x {args.n_features} "
        f"({'CSR' if args.sparse else 'dense'}), {args.n_components} true components, "
        f"{result['bytes'] / 2**20:.1f} MiB in {seconds:.1f} s",
    ])


def cmd_fit(args):
    est, log, seconds = _fit(args)
    if args.out:
        est.save(args.out, overwrite=args.overwrite)
    result = dict(command="fit", data=args.data, n_stages=est.n_stages_,
                  samples_seen=est.samples_seen_, seconds=seconds,
                  fit_seconds=float(est.history_["seconds"][-1]) if est.n_stages_ else 0.0,
                  alpha=est.alpha_, out=args.out, checkpoint=args.checkpoint)
    _emit(args, result, [
        f"fitted {args.rank} components in {est.n_stages_} stages, "
        f"{est.samples_seen_} samples, {seconds:.1f} s"
        + (f"; model written to {args.out}" if args.out else ""),
    ])


def cmd_evaluate(args):
    from . import load
    from .datasets import load_hdf5_truth
    from .metrics import log_total_correlation_error, matched_correlation_error

    model = load(args.model)
    truth = load_hdf5_truth(args.truth)
    ln_error = log_total_correlation_error(model.components_, truth)
    matched = matched_correlation_error(model.components_, truth)
    result = dict(command="evaluate", ln_error=ln_error,
                  ln_matched_error=float(np.log(matched)) if matched > 0 else -np.inf)
    _emit(args, result, [
        f"ln total correlation error (paper's measure): {ln_error:.2f}",
        f"ln one-to-one matched error:                  {result['ln_matched_error']:.2f}",
    ])


def cmd_demo(args):
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="streamnmf-demo-") as workdir:
            return _demo(args, workdir)
    os.makedirs(args.workdir, exist_ok=True)
    if not args.overwrite:
        from .io.records import check_output_path

        for name in _DEMO_FILES:
            check_output_path(os.path.join(args.workdir, name), flag="--overwrite",
                              what="demo file")
    return _demo(args, args.workdir)


#: what the demo writes in its folder
_DEMO_FILES = ("dir.h5", "fit.ckpt.h5", "fit.ckpt.h5.prev")


def _demo(args, workdir):
    from .datasets import load_hdf5_truth, write_hdf5
    from .metrics import log_total_correlation_error

    n, m, N = (30, 300, 2000) if args.quick else (100, 1000, 5000)
    data_path = os.path.join(workdir, "dir.h5")
    t0 = time.perf_counter()
    # the paper's DIR prior Dirichlet(0.05) whatever n (dir_sparsity / n)
    write_hdf5(data_path, "dir", N, n, m, weight_params={"dir_sparsity": 0.05 * n},
               random_state=0, overwrite=True)
    generate_seconds = time.perf_counter() - t0
    truth = load_hdf5_truth(data_path)
    checkpoint = os.path.join(workdir, "fit.ckpt.h5")
    for stale in (checkpoint, checkpoint + ".prev"):
        if os.path.exists(stale):
            os.remove(stale)
    fit_args = build_parser().parse_args([
        "fit", data_path, "--rank", str(n), "--init", f"warm:{0.1 * np.sqrt(n):.6f}",
        "--checkpoint", checkpoint, "--n-stages", "200",
    ])
    fit_args.json = args.json
    est, log, seconds = _fit(fit_args, evaluate_against=truth)
    ln_start = log_total_correlation_error(_init_from(fit_args.init, data_path, n, 0), truth)
    result = dict(
        command="demo", n_samples=N, n_features=m, n_components=n, data=data_path,
        generate_seconds=generate_seconds, fit_seconds=float(est.history_["seconds"][-1]),
        wall_seconds=seconds, n_stages=est.n_stages_, ln_error_start=ln_start,
        ln_error=log[-1]["ln_error"], checkpoint=checkpoint,
        checkpoint_bytes=os.path.getsize(checkpoint), log=log,
    )
    lines = [
        f"streamnmf {__version__} demo: AND (stagewise, adaptive thresholds) on the paper's DIR "
        f"data set",
        f"  data: {N} samples x {m} features, {n} true topics, written to {data_path} "
        f"in {generate_seconds:.1f} s and read back out of core in blocks",
        f"  start: the paper's warm start A*(I + U), U ~ U[-0.05, 0.05); "
        f"ln error {ln_start:.2f}",
        "  stage   fit s     alpha   ln error",
    ]
    for entry in log:
        if entry["stage"] % 20 == 0 or entry is log[-1]:
            lines.append(f"  {entry['stage']:5d} {entry['seconds']:7.2f} {entry['alpha']:9.1e} "
                         f"{entry['ln_error']:10.2f}")
    lines += [
        f"  final ln error {log[-1]['ln_error']:.2f} after {est.n_stages_} stages "
        f"(float64 round-off is near -60); fitting {result['fit_seconds']:.1f} s, "
        f"{est.samples_seen_ / max(result['fit_seconds'], 1e-9):,.0f} samples/s",
        f"  a checkpoint ({result['checkpoint_bytes'] / 2**20:.1f} MiB) was written atomically "
        "at every stage; 'streamnmf fit ... --checkpoint F --resume' continues from one",
    ]
    _emit(args, result, lines)


def main(argv=None):
    """Run a command; returns the exit status (0, 2 for an error, 130 when interrupted)."""
    from .io.records import CheckpointError

    args = build_parser().parse_args(argv)
    commands = dict(generate=cmd_generate, fit=cmd_fit, evaluate=cmd_evaluate, demo=cmd_demo)
    prefix = f"streamnmf {args.command}"

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{prefix}: warning: {_cli_wording(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line_warning
        try:
            commands[args.command](args)
        except KeyboardInterrupt:
            print(f"{prefix}: {_interrupted(args)}", file=sys.stderr)
            return 130
        except (ValueError, OSError, KeyError, CheckpointError, ImportError,
                FloatingPointError) as exc:
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            print(f"{prefix}: error: {_cli_wording(text)}", file=sys.stderr)
            return 2
    return 0


def _interrupted(args):
    """What an interrupted command left and how to go on."""
    if args.command != "fit":
        return "interrupted."
    done = getattr(args, "stages_done", 0)
    if args.checkpoint is None:
        return (f"interrupted at stage {done}; nothing was saved. Add --checkpoint FILE to be "
                "able to resume an interrupted fit.")
    return (f"interrupted at stage {done}; the checkpoint {args.checkpoint} holds the last "
            "state written. Rerun the same command with --resume to continue from it.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
