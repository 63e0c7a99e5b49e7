"""The private Ray's reaper (runs/ray_reaper.py): after `kill -9` of the driver, what it started
is killed; after a clean shutdown nothing is. Real processes; the Ray test is slow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinicgym.runs.ray_reaper import Reaper, _stat, descendants

DRIVER = """
import subprocess, sys, time
child = subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 600"])  # a child, a grandchild
print(child.pid, flush=True)
time.sleep(600)
"""


def _driver_with_two_descendants() -> tuple[subprocess.Popen, dict[int, int]]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    driver.stdout.readline()
    while len(found := descendants(driver.pid)) < 2:  # the shell forks its background sleep
        time.sleep(0.01)
    return driver, found


def _gone(pids) -> bool:
    return all(_stat(p) is None for p in pids)


def test_a_killed_drivers_descendants_are_killed():
    driver, found = _driver_with_two_descendants()
    reaper = Reaper(driver.pid)
    reaper.note()
    assert set(reaper.seen) == set(found)
    driver.kill()  # kill -9: the driver can clean up nothing
    driver.wait()
    assert not _gone(found)  # orphaned, still running
    assert reaper.kill() == 2
    while not _gone(found):  # reparented to init, which reaps them
        time.sleep(0.01)


def test_a_clean_shutdown_kills_nothing():
    driver, found = _driver_with_two_descendants()
    reaper = Reaper(driver.pid)
    reaper.note()
    try:
        assert reaper.kill() == 0 and not _gone(found)
    finally:
        for pid in [*found, driver.pid]:
            os.kill(pid, signal.SIGKILL)
        driver.wait()


RAY_DRIVER = """
import os, time
from clinicgym.runs.executors import RayExecutor, import_ray
ray = import_ray()
RayExecutor()._init(ray)
print(ray.get(ray.remote(lambda: os.getpid()).remote()), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.integration
def test_ray_processes_follow_a_killed_driver(tmp_path):
    """Without the reaper the dashboard and runtime-env agents outlive the driver by a minute
    (they try to tell the dead GCS first); with it they are killed as soon as it notices."""
    pytest.importorskip("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-c", RAY_DRIVER],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        worker = int(driver.stdout.readline())  # Ray is up and has run a task
        started = descendants(driver.pid)
        names = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:60] for p in started}
        assert worker in started and any(b"RuntimeEnvAgent" in n for n in names.values())
        time.sleep(1.5)  # let the reaper's half-second poll note the latest of them
    finally:
        driver.kill()
        driver.wait()
    ray_pids = [p for p, n in names.items() if b"ray_reaper" not in n]
    deadline = time.monotonic() + 30  # well under the agents' own 60 s
    while not _gone(ray_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {p: names[p] for p in ray_pids if _stat(p) is not None}
    for p in left:  # do not leave them to the next test
        os.kill(p, signal.SIGKILL)
    assert not left, left
