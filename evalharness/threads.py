"""How many intra-op threads torch should use while other processes share the cores.

torch starts one intra-op thread per core and splits every large op between them; an op ends when its slowest share
does. When another CPU-bound process holds a core, the share scheduled on that core waits for it, and every op runs at
the pace of the descheduled thread: with 2 cores and one competitor a step takes several times longer than with one
thread. So a process asks for the cores nobody else is running on (at least one), and asks again as the load changes.

``EVALHARNESS_THREADS=N`` fixes the count; an ``OMP_NUM_THREADS`` the user set is left alone.
"""

from __future__ import annotations

import os
import time

RECHECK_S = 10.0  # how often a long job looks at the load again: a competitor that starts later is seen within this


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def runnable_others(samples: int = 5, interval_s: float = 0.01) -> int:
    """Runnable tasks other than this one, the median of a few looks at ``/proc/loadavg`` (0 where there is none)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - _own_running())  # this process's threads (the reader, spinning workers) aside
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(sorted(counts)[len(counts) // 2], 0)


def _own_running() -> int:
    """This process's threads now runnable (at least 1: the one reading)."""
    n = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                n += f.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):
        return 1
    return max(n, 1)


def pick_threads() -> int | None:
    """The intra-op thread count for now, or None where the user fixed it (``OMP_NUM_THREADS``)."""
    fixed = os.environ.get("EVALHARNESS_THREADS")
    if fixed and fixed.isdigit() and int(fixed) > 0:
        return int(fixed)
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, usable_cores() - runnable_others())


class ThreadGovernor:
    """Sets torch's intra-op threads from the load, at most every ``RECHECK_S`` (``tick`` is cheap to call often)."""

    def __init__(self, recheck_s: float = RECHECK_S):
        self.recheck_s = recheck_s
        self.threads: int | None = None
        self._last = float("-inf")

    def tick(self) -> int | None:
        now = time.monotonic()
        if now - self._last < self.recheck_s:
            return self.threads
        self._last = now
        n = pick_threads()
        if n is not None and n != self.threads:
            import torch

            torch.set_num_threads(n)
            self.threads = n
        return self.threads
