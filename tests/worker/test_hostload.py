"""The host-load sampler: other processes' busy cores from /proc, a fake one and the real."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from worker.hostload import HostLoad, cores_taken

STAT = """cpu  {total} 0 0 0 0 0 0 0 0 0
cpu0 {a} 0 {a_sys} 900 10 0 0 {a_steal} 0 0
cpu1 {b} 0 0 900 0 0 0 0 0 0
cpu2 {c} 0 0 900 0 0 0 0 0 0
intr 1 2 3
procs_running {running}
"""


def write(
    proc: Path, *, a: int, a_sys: int, a_steal: int, b: int, c: int, own: int, running: int = 1
) -> None:
    (proc / "stat").write_text(
        STAT.format(total=a + b + c, a=a, a_sys=a_sys, a_steal=a_steal, b=b, c=c, running=running)
    )
    (proc / "self").mkdir(exist_ok=True)
    # pid (comm with a space) state ... utime (14th) stime (15th)
    fields = ["S", *["0"] * 10, str(own), "0", *["0"] * 30]
    (proc / "self" / "stat").write_text("123 (celery worker) " + " ".join(fields) + "\n")


def test_busy_time_of_other_processes_on_our_cpus(tmp_path: Path) -> None:
    write(tmp_path, a=100, a_sys=0, a_steal=0, b=100, c=100, own=50)
    load = HostLoad({0, 1}, proc=tmp_path, clock=100.0)
    # One second later: cpu0 +60 user +20 system +10 steal, cpu1 +90, cpu2 (not ours) +100;
    # this process used 80 of those jiffies.
    write(tmp_path, a=160, a_sys=20, a_steal=10, b=190, c=200, own=130)
    load._last_at -= 1.0
    assert load.sample() == pytest.approx((60 + 20 + 10 + 90 - 80) / 100, abs=0.02)


def test_a_short_window_keeps_the_previous_figure(tmp_path: Path) -> None:
    write(tmp_path, a=100, a_sys=0, a_steal=0, b=100, c=0, own=0)
    load = HostLoad({0, 1}, proc=tmp_path, clock=100.0)
    write(tmp_path, a=300, a_sys=0, a_steal=0, b=100, c=0, own=0)
    assert load.sample() == 0.0  # jiffies are 10 ms: too short to judge
    load._last_at -= 1.0
    assert load.sample() == pytest.approx(2.0, abs=0.05)  # capped at our CPUs


def test_only_a_load_that_lasts_counts(tmp_path: Path) -> None:
    write(tmp_path, a=0, a_sys=0, a_steal=0, b=0, c=0, own=0)
    load = HostLoad({0, 1}, proc=tmp_path, clock=100.0)
    figures = []
    for a, b in ((10, 10), (110, 110), (210, 210), (220, 220)):  # quiet, busy, busy, quiet
        write(tmp_path, a=a, a_sys=0, a_steal=0, b=b, c=0, own=0)
        load._last_at -= 1.0
        figures.append(round(load.sample(), 1))
    assert figures == [0.2, 0.2, 2.0, 0.2]


def test_a_starting_generation_counts_only_what_runs_now(tmp_path: Path) -> None:
    write(tmp_path, a=0, a_sys=0, a_steal=0, b=0, c=0, own=0)
    load = HostLoad({0, 1}, proc=tmp_path, clock=100.0)
    for a in (100, 200):  # another process kept both cores busy for two windows...
        write(tmp_path, a=a, a_sys=0, a_steal=0, b=a, c=0, own=0, running=1)
        load._last_at -= 1.0
        load.sample()
    assert load.sample() == pytest.approx(2.0, abs=0.05)
    assert load.sample(starting=True) == 0.0  # ...and now waits: only we are runnable
    for a in (300, 400):  # busy again for two windows, two runnable besides us
        write(tmp_path, a=a, a_sys=0, a_steal=0, b=a, c=0, own=0, running=3)
        load._last_at -= 1.0
        load.sample()
    assert load.sample(starting=True) == pytest.approx(
        2.0, abs=0.05
    )  # still busy, two runnable besides us


def test_a_generation_decides_on_its_own_windows_after_it_starts(tmp_path: Path) -> None:
    write(tmp_path, a=0, a_sys=0, a_steal=0, b=0, c=0, own=0)
    load = HostLoad({0, 1}, proc=tmp_path, clock=100.0)
    for a in (100, 200):  # busy before it started, nothing runnable when it starts
        write(tmp_path, a=a, a_sys=0, a_steal=0, b=a, c=0, own=0)
        load._last_at -= 1.0
        load.sample()
    load._last_at -= 1.0
    assert load.sample(starting=True) == 0.0
    # Its first window still sees the old load: one window is not enough to take a core.
    write(tmp_path, a=300, a_sys=0, a_steal=0, b=300, c=0, own=0)
    load._last_at -= 1.0
    assert load.sample() == 0.0
    write(tmp_path, a=400, a_sys=0, a_steal=0, b=400, c=0, own=0)
    load._last_at -= 1.0
    assert load.sample() == pytest.approx(2.0, abs=0.05)  # two windows: it lasts


def test_no_proc_means_no_load(tmp_path: Path) -> None:
    load = HostLoad({0}, proc=tmp_path / "missing", clock=100.0)
    load._last_at -= 1.0
    assert load.sample() == 0.0


@pytest.mark.parametrize(
    ("busy", "taken"), [(0.0, 0), (0.3, 0), (0.6, 0), (0.75, 1), (1.2, 1), (1.75, 2)]
)
def test_a_core_counts_once_mostly_used(busy: float, taken: int) -> None:
    assert cores_taken(busy) == taken


def test_a_busy_process_beside_us_is_seen() -> None:
    load = HostLoad()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        child = psutil.Process(spinner.pid)
        time.sleep(0.3)
        load.sample()
        before = child.cpu_times()
        time.sleep(1.0)
        seen = load.sample()
        after = child.cpu_times()
    finally:
        spinner.kill()
        spinner.wait()
    spun = (after.user + after.system - before.user - before.system) / 1.0
    # At least what the spinner itself used in the window (anything else busy adds to it).
    assert seen >= 0.8 * spun > 0
