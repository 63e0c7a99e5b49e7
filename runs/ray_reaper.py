"""The reaper of a private Ray: kills what Ray started once the driver that started it is gone.

`RayExecutor` starts a private Ray as children of the driver (this CLI process): GCS, raylet,
monitors, dashboard and runtime-env agents, workers. If the driver is killed (`kill -9`, the
OOM killer) the GCS and raylet die with it, but the agents spend 60 s trying to tell the dead
GCS (Ray's `publish_error_to_driver` time-out) before they exit. `start_reaper()` spawns this
module as a watchdog in a session of its own: it notes the driver's descendants every half
second, and when the pipe the driver holds open closes with the driver dead (at a clean
shutdown `ray.shutdown()` has stopped them all) it kills each one still running. Linux only (it
reads /proc); elsewhere `ray stop` cleans up, but it stops every Ray of the user.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

POLL_S = 0.5
"""How often the driver's descendants are noted while it lives."""


def start_reaper() -> int | None:
    """Spawn the reaper for this process; returns the pipe end to close at a clean shutdown
    (None where /proc is missing). Keep it open while Ray runs: its closing is the signal."""
    if not Path("/proc/self/stat").exists():
        return None
    read_end, write_end = os.pipe()  # not inheritable: Ray's processes never hold it
    subprocess.Popen(
        [sys.executable, "-m", "clinicgym.runs.ray_reaper", str(os.getpid())],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C of the run must not kill the reaper first
        close_fds=True,
    )
    os.close(read_end)
    return write_end


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None if it is gone (or
    a zombie: killed, not yet waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of `root`: pid -> start time."""
    children: dict[int, list[int]] = {}
    start: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
                start[int(entry)] = st[1]
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out[c] = start[c]
                todo.append(c)
    return out


class Reaper:
    """Notes a driver's descendants while it lives; kills them once it is dead."""

    def __init__(self, driver: int) -> None:
        self.driver = driver
        self.born = _stat(driver)
        self.seen: dict[int, int] = {}
        """pid -> start time of every descendant noted so far."""

    def note(self) -> None:
        """Add the driver's live descendants (Ray starts workers as it goes)."""
        self.seen.update(descendants(self.driver))

    def driver_alive(self) -> bool:
        """Whether the driver this reaper watches is still the same live process."""
        st = _stat(self.driver)
        return self.born is not None and st is not None and st[1] == self.born[1]

    def kill(self) -> int:
        """SIGKILL every noted process still running if the driver is dead (a clean shutdown
        kills nothing); returns how many were killed."""
        if self.driver_alive():
            return 0
        killed = 0
        for pid, started in self.seen.items():
            st = _stat(pid)
            if pid != os.getpid() and st is not None and st[1] == started:  # not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        return killed


def reap(driver: int, watch_fd: int = 0) -> int:
    """Note the driver's descendants until `watch_fd` reaches end of file, then `kill`."""
    reaper = Reaper(driver)
    while True:
        reaper.note()
        ready, _, _ = select.select([watch_fd], [], [], POLL_S)
        if ready and not os.read(watch_fd, 1024):
            return reaper.kill()


if __name__ == "__main__":
    reap(int(sys.argv[1]))
