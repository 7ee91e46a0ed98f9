"""How many of this process's CPUs other processes keep busy (Linux ``/proc``).

ggml's threads spin-wait for each other, so a generation whose threads outnumber the cores
left to it crawls: on 2 cores with another process busy on one, a short prompt took 22 ms
with 1 thread and 0.04 to 5.8 s with 2. The threads budget (``worker.threads``) counts the
host's workers itself; this covers everything else (a build, a browser, another service).

``HostLoad.sample()`` measures the cores that other processes used since the previous
sample, on the CPUs of this process's affinity mask: their busy time (user, nice, system,
interrupts, steal) from ``/proc/stat`` less this process's own (``/proc/self/stat``), and
returns the lower of the last two windows, so only a load that lasts counts. A generation
that is starting (``starting=True``) also asks what is runnable right now
(``procs_running``, less itself): a process that was busy a moment ago and now waits does
not cost it its threads. Jiffies are 10 ms, so a window needs a few tenths of a second to
mean anything; a shorter one is not taken.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

MIN_WINDOW_S = 0.2
# /proc/stat cpu columns: user nice system idle iowait irq softirq steal (guest time is
# already counted in user and nice).
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


class HostLoad:
    """Samples the cores other processes keep busy; 0 where ``/proc`` is not there."""

    def __init__(
        self,
        cpus: set[int] | None = None,
        *,
        proc: Path = Path("/proc"),
        clock: float | None = None,
    ) -> None:
        self.cpus = cpus if cpus is not None else affinity()
        self.proc = proc
        self.ticks_per_s = clock or float(os.sysconf("SC_CLK_TCK"))
        self.busy_elsewhere = 0.0
        self._windows: deque[float] = deque(maxlen=2)
        self._lock = threading.Lock()
        self._last = self._read()
        self._last_at = time.monotonic()

    def sample(self, starting: bool = False) -> float:
        """Cores other processes kept busy in both of the last two windows (the previous
        figure if the last sample was under ``MIN_WINDOW_S`` ago; 0 without ``/proc``);
        ``starting``: at most what other processes can run right now."""
        busy = self._sample()
        if starting:
            busy = min(busy, self.runnable_elsewhere())
            with self._lock:  # the generation's own windows decide from here on
                self._windows.clear()
                self._windows.append(busy)
                self.busy_elsewhere = busy
        return busy

    def runnable_elsewhere(self) -> float:
        """Threads runnable right now besides the caller (``procs_running`` of
        ``/proc/stat``, host-wide); 0 where it cannot be read."""
        try:
            for line in (self.proc / "stat").read_text().splitlines():
                if line.startswith("procs_running "):
                    return float(max(int(line.split()[1]) - 1, 0))
        except (OSError, ValueError, IndexError):
            pass
        return 0.0

    def _sample(self) -> float:
        with self._lock:
            now = time.monotonic()
            window = now - self._last_at
            if window < MIN_WINDOW_S:
                return self.busy_elsewhere
            reading = self._read()
            if reading is not None and self._last is not None:
                busy = reading[0] - self._last[0]
                mine = reading[1] - self._last[1]
                used = (busy - mine) / self.ticks_per_s / window
                self._windows.append(min(max(used, 0.0), float(len(self.cpus) or 1)))
                self.busy_elsewhere = min(self._windows)
            self._last, self._last_at = reading, now
            return self.busy_elsewhere

    def _read(self) -> tuple[int, int] | None:
        """(busy jiffies of our CPUs, this process's jiffies), or None."""
        try:
            busy = 0
            for line in (self.proc / "stat").read_text().splitlines():
                name, _, rest = line.partition(" ")
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if int(name[3:]) in self.cpus:
                    columns = [int(x) for x in rest.split()]
                    busy += sum(columns[i] for i in _BUSY_COLUMNS if i < len(columns))
            # Fields after the command's closing parenthesis: utime and stime are the 12th
            # and 13th (fields 14 and 15 of the whole line).
            own = (self.proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
            return busy, int(own[11]) + int(own[12])
        except (OSError, ValueError, IndexError) as exc:
            log.debug("host load unavailable: %s", exc)
            return None


def affinity() -> set[int]:
    """The CPUs this process may run on (its affinity mask, not the host's count)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return set(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """How many CPUs this process may run on."""
    return len(affinity())


def cores_taken(busy_elsewhere: float) -> int:
    """Whole cores to leave to other processes: a core counts once it is 70 % used (the
    web tier, Redis and the kernel's accounting beside a busy worker come to a few tenths;
    a build or a second model uses whole cores)."""
    return int(busy_elsewhere + 0.3)
