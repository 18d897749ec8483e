"""Out-of-core benchmarks: bounded memory, read/compute overlap, sparse corpora.

The three measurements live in their own scripts; this module holds what they share (thread
settings, measured subprocesses, peak RSS) and, run as a script, runs all three in turn:

* ``bench/memory.py``  -- peak RSS of ``streamnmf fit`` when the HDF5 file grows tenfold
  (target: < 10 % growth);
* ``bench/overlap.py`` -- a stagewise pass over a dense file in the page cache against the bare
  read and the bare compute of the same blocks (target: <= 1.25x the larger of the two);
* ``bench/sparse.py``  -- pass time against nnz on bag-of-words-like CSR corpora, and one pass
  against one epoch of scikit-learn's ``MiniBatchNMF``.

The machine is small and shared: OpenBLAS's two threads spin badly when other processes take a
core, so every measurement runs twice in fresh subprocesses, once with the default thread count
and once with ``OPENBLAS_NUM_THREADS=1`` (the variable must be set before numpy loads), the two
alternating so that a burst of load hits both. Every result row carries the load average.

Usage: ``python bench/out_of_core.py [--quick] [--only memory,overlap,sparse] [--out DIR]``
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import loadavg  # noqa: E402

#: thread settings every measurement runs under: name -> OPENBLAS_NUM_THREADS (None: unset)
THREAD_MODES = {"default": None, "1thread": "1"}
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(mode, extra=None):
    """The environment of a subprocess running under thread setting ``mode``."""
    env = dict(os.environ)
    for name in _THREAD_VARS:
        env.pop(name, None)
    value = THREAD_MODES[mode]
    if value is not None:
        env["OPENBLAS_NUM_THREADS"] = value
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if extra:
        env.update(extra)
    return env


def mode_order(repeat):
    """Thread settings in alternating order (A B, B A, ...) so drifts in load hit both."""
    modes = list(THREAD_MODES)
    return modes if repeat % 2 == 0 else modes[::-1]


def run_measured(cmd, env=None, poll_seconds=0.02, cwd=None, timeout=None):
    """Run ``cmd`` in a subprocess; return its output, wall time and peak RSS.

    The peak RSS is the kernel's (``ru_maxrss`` of this very child via ``os.wait4``, so earlier
    children do not mix in); a psutil thread also samples the RSS every ``poll_seconds`` for a
    trace (seconds since start, MiB). stdout/stderr go through temporary files (no pipe
    deadlock on long outputs).
    """
    try:
        import psutil
    except ImportError:  # the trace is optional, the kernel's peak is not
        psutil = None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        load0 = loadavg()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        trace = []
        done = threading.Event()

        def poll():
            if psutil is None:
                return
            try:
                ps = psutil.Process(proc.pid)
                while not done.is_set():
                    trace.append((round(time.perf_counter() - t0, 3),
                                  round(ps.memory_info().rss / 2**20, 1)))
                    done.wait(poll_seconds)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                pass

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        killer = None
        if timeout is not None:
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if killer is not None:
                killer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        poller.join()
        out.seek(0)
        err.seek(0)
        return dict(
            cmd=[str(c) for c in cmd], rc=proc.returncode, wall_s=wall,
            maxrss_mib=usage.ru_maxrss / 1024.0,  # Linux: KiB
            user_s=usage.ru_utime, sys_s=usage.ru_stime,
            stdout=out.read(), stderr=err.read(), rss_trace=trace,
            loadavg_start=load0, loadavg_end=loadavg(),
        )


def last_json(text):
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def run_worker(script, spec, mode, timeout=None):
    """Run ``script --worker SPEC_JSON`` under thread setting ``mode``; return its JSON result
    with ``mode``, the child's peak RSS and wall time added. Raises on a failed worker."""
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    res = run_measured(cmd, env=thread_env(mode), timeout=timeout)
    if res["rc"] != 0:
        raise RuntimeError(f"worker {script} ({mode}) failed (rc {res['rc']}):\n"
                           f"{res['stderr'][-4000:]}")
    result = last_json(res["stdout"])
    if result is None:
        raise RuntimeError(f"worker {script} ({mode}) printed no JSON:\n{res['stdout'][-2000:]}")
    result.update(mode=mode, worker_maxrss_mib=res["maxrss_mib"], worker_wall_s=res["wall_s"])
    return result


def blas_threads():
    """Thread counts of the BLAS libraries loaded in this process (to prove the env took)."""
    try:
        from threadpoolctl import threadpool_info

        return [dict(api=p.get("internal_api"), threads=p.get("num_threads"),
                     version=p.get("version")) for p in threadpool_info()]
    except Exception as exc:  # pragma: no cover
        return repr(exc)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="memory,overlap,sparse")
    parser.add_argument("--out", default=None,
                        help="output folder of every script (default: each script's own "
                             "choice, bench/results or bench/results/tmp)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    failed = []
    for name in args.only.split(","):
        cmd = [sys.executable, str(HERE / f"{name}.py")]
        if args.out:
            cmd += ["--out", args.out]
        if args.quick:
            cmd.append("--quick")
        if args.workdir:
            cmd += ["--workdir", args.workdir]
        print(f"\n=== {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"=== {name}: rc {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
