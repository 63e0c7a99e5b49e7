"""Import what a run's finalise needs while its episodes play, so the tail of a run does not
wait on pandas, pyarrow and scipy (about 1.5 s on 2 cores)."""

from __future__ import annotations

import contextlib
import importlib
import threading

FINALISE_IMPORTS = (
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "scipy.stats",
    "clinicgym.runs.summary",
    "clinicgym.scoring.aggregate",
    "clinicgym.scoring.compliance",
    "clinicgym.policies.rescore",
)
"""What `finalise` imports on first use: about 1.5 s of a run's tail (scipy.stats 1.1 s, pandas
0.4 s on 2 cores), when nothing else is waiting on them."""


def preload_finalise() -> threading.Thread:
    """Import what `finalise` needs on a daemon thread while the episodes play, so a run's tail
    does not wait on them (the loop only stores episodes meanwhile; finalise waits on a module
    still importing). Call it after any fork: a child forked while this thread imports would
    inherit a held import lock."""

    def load() -> None:
        for name in FINALISE_IMPORTS:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="clinicgym-preload", daemon=True)
    thread.start()
    return thread
