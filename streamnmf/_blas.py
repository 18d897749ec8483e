"""How many BLAS threads a fit uses: all of them on an idle machine, fewer on a busy one.

OpenBLAS threads spin while they wait for each other. When other processes keep the cores
busy, a spinning thread is descheduled in the middle of a product and the others wait for it:
on 2 cores with 2 other busy processes, the README's Purification example took 43 s with the
default 2 BLAS threads and 9.5 s with one (2.0 s idle). With ``blas_threads="auto"`` the fit
measures the load that *other* processes put on the cores it may run on, from ``/proc/stat``
less its own CPU time, every ``INTERVAL`` seconds, and limits BLAS to the cores they leave
free (at least one). On an idle machine, and during the first interval, it leaves the BLAS
library as configured, so the results and the speed are those of a fit without the policy. Where ``/proc/stat`` does not exist (macOS, Windows) "auto" leaves
BLAS as it is.

Fewer threads can change results in the last bits (a product split over other threads rounds
differently): pass an int to fix the count where runs must agree bit for bit.
"""

import os
import time

#: seconds between two decisions: long enough for the jiffy counters (10 ms) to mean something
INTERVAL = 0.5
#: a core counts as free when other processes leave at least this much of it
FREE_MARGIN = 0.5


def _usable_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def read_cpu_times(cpus):
    """Busy and total jiffies of the given CPUs, from /proc/stat.

    Returns None where /proc/stat cannot be read.
    """
    wanted = {f"cpu{i}" for i in cpus}
    busy = total = 0
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                fields = line.split()
                if fields and fields[0] in wanted:
                    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq
                    total += sum(values)                    # softirq steal
                    busy += sum(values) - values[3] - values[4]  # steal: another VM's time
    except (OSError, ValueError, IndexError):
        return None
    return busy, total


class BlasThreads:
    """The BLAS thread count of one fit, re-decided as the load of the machine changes.

    Parameters
    ----------
    setting : "auto", int or None
        ``"auto"``: limit BLAS to the cores other processes leave free; an int: that many
        threads; None: leave the BLAS library as configured.
    """

    def __init__(self, setting):
        self.setting = setting
        self.threads = None  # the limit set now (None: the library's own)
        self._controller = None
        self._limiter = None
        self._last = None

    def __enter__(self):
        """Set the limit; entered again (``partial_fit``'s next call) it re-decides."""
        if self.setting is None:
            return self
        if self._controller is not None:  # entered before: the load measured since then
            threads, self.threads = self.threads, None
            self._apply(threads)
            self.update()
            return self
        from ._engine import _BLAS  # one controller for the process (building one scans)

        self._controller = _BLAS
        blas = [lib for lib in self._controller.lib_controllers if lib.user_api == "blas"]
        self.configured = max([lib.num_threads for lib in blas], default=1)
        if self.setting != "auto":
            self._apply(int(self.setting))
            return self
        self._cpus = _usable_cpus()
        self._clock = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        reading = read_cpu_times(self._cpus)
        if reading is None:  # no /proc: leave BLAS as it is
            self.setting = None
            return self
        # The first decision waits for a measured interval: an instant count of runnable
        # threads also sees BLAS threads that spin after a product (this process's or a
        # finished one's), and a fit shorter than the interval then runs exactly as without
        # the policy.
        self._last = (time.monotonic(), self._own_seconds(), reading)
        return self

    def update(self):
        """Re-decide from the load since the last decision (cheap: call it every block)."""
        if self.setting != "auto" or self._last is None:
            return
        now = time.monotonic()
        then, own_then, (busy_then, _) = self._last
        if now - then < INTERVAL:
            return
        reading = read_cpu_times(self._cpus)
        if reading is None:
            return
        own = self._own_seconds()
        busy_seconds = (reading[0] - busy_then) / self._clock
        others = max(0.0, (busy_seconds - (own - own_then)) / (now - then))
        self._last = (now, own, reading)
        self._apply(self._threads_for(others))

    def _threads_for(self, others_busy):
        free = len(self._cpus) - others_busy
        return max(1, min(self.configured, int(free + FREE_MARGIN)))

    @staticmethod
    def _own_seconds():
        times = os.times()
        return times.user + times.system

    def _apply(self, threads):
        if threads == self.threads or (self.threads is None and threads >= self.configured
                                       and self.setting == "auto"):
            return
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        if not (self.setting == "auto" and threads >= self.configured):
            self._limiter = self._controller.limit(limits=threads, user_api="blas")
        self.threads = threads

    def __getstate__(self):
        # a copy (pickle, deepcopy, a Dask task) starts afresh: the controller holds ctypes
        return {"setting": self.setting}

    def __setstate__(self, state):
        self.__init__(state["setting"])

    def __exit__(self, *exc):
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        return False


