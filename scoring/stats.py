"""Aggregates with honest intervals: the mean and a seeded percentile-bootstrap 95% interval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261122


def mean_ci(
    values: Sequence[float | None],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float | list[float] | int | None]:
    """{'mean', 'ci95': [lo, hi], 'n'} over the non-None values; None mean when there are none.

    The bootstrap is seeded, so the same values give the same interval in every run.
    """
    x = np.array([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return {"mean": mean, "ci95": [mean, mean], "n": int(x.size)}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    boots = x[idx].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": mean, "ci95": [float(lo), float(hi)], "n": int(x.size)}
