"""Aggregates with honest intervals: seeded percentile-bootstrap 95% intervals of means and of
other statistics (pass^k over repeated seeds, expected calibration error, subgroup gaps)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

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


def bootstrap_ci(
    data: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float | None],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float | list[float] | int | None]:
    """{'mean': statistic(data), 'ci95', 'n'}: a seeded percentile bootstrap of any statistic of
    a list of items (resampled with replacement; resamples where it is None are skipped)."""
    items = list(data)
    value = statistic(items) if items else None
    if value is None:
        return {"mean": None, "ci95": None, "n": len(items)}
    rng = np.random.default_rng(seed)
    boots = []
    for idx in rng.integers(0, len(items), size=(resamples, len(items))):
        v = statistic([items[i] for i in idx])
        if v is not None:
            boots.append(v)
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (value, value)
    return {"mean": float(value), "ci95": [float(lo), float(hi)], "n": len(items)}


def pass_hat_k(successes: Sequence[tuple[int, int]], k: int) -> float | None:
    """pass^k as tau2-bench defines it: per task with n trials and c successes, C(c, k) / C(n, k)
    (the chance that k trials drawn without replacement all succeed), averaged over the tasks
    with at least k trials; None if there are none."""
    if k < 1:
        raise ValueError(f"pass^k needs k >= 1, got {k}")
    vals = [math.comb(c, k) / math.comb(n, k) for n, c in successes if n >= k]
    return float(np.mean(vals)) if vals else None


def pass_hat_k_ci(
    successes: Sequence[tuple[int, int]], k: int, **kw: Any
) -> dict[str, float | list[float] | int | None]:
    """pass^k with a bootstrap interval over tasks."""
    return bootstrap_ci([s for s in successes if s[0] >= k], lambda s: pass_hat_k(s, k), **kw)


ECE_BINS = 10


def ece(pairs: Sequence[tuple[float, float]], bins: int = ECE_BINS) -> float | None:
    """Expected calibration error of (confidence, correct) pairs: the mean over equal-width
    confidence bins of |accuracy - mean confidence|, weighted by the bin's share of pairs."""
    if not pairs:
        return None
    conf = np.clip(np.array([p[0] for p in pairs], dtype=float), 0.0, 1.0)
    hit = np.array([p[1] for p in pairs], dtype=float)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(hit[sel].mean() - conf[sel].mean())
    return float(total)


def ece_ci(
    pairs: Sequence[tuple[float, float]], bins: int = ECE_BINS, **kw: Any
) -> dict[str, float | list[float] | int | None]:
    """ECE with a bootstrap interval over episodes."""
    return bootstrap_ci(list(pairs), lambda p: ece(p, bins), **kw)


def gap_ci(
    groups: dict[str, Sequence[float]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any] | None:
    """The gap between the largest and smallest group mean, with a bootstrap interval (each
    group resampled on its own); which groups are highest and lowest. None with < 2 groups.

    The interval is of the signed difference between the two groups observed highest and
    lowest, so it includes 0 (or goes below it) when they do not really differ; the max-minus-
    min of each resample would never reach 0 and would flag a gap that is only noise."""
    arrays = {k: np.array(v, dtype=float) for k, v in groups.items() if len(v)}
    if len(arrays) < 2:
        return None
    means = {k: float(a.mean()) for k, a in arrays.items()}
    hi = max(means, key=lambda k: means[k])
    lo = min((k for k in means if k != hi), key=lambda k: means[k])
    rng = np.random.default_rng(seed)
    boots = {
        k: a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
        for k, a in arrays.items()
    }
    gaps = boots[hi] - boots[lo]
    ci = np.percentile(gaps, [2.5, 97.5])
    return {
        "mean": means[hi] - means[lo],
        "ci95": [float(ci[0]), float(ci[1])],
        "highest": hi,
        "lowest": lo,
        "n": {k: int(a.size) for k, a in arrays.items()},
    }


def format_ci(m: Any, *, pct: bool = False, spec: str = ".2f", sep: str = "-") -> str:
    """A metric `{"mean", "ci95"}` as `mean [lo-hi]`, or "-" when it has no value; `pct`:
    whole percents. The one formatter behind every table and report, so that they print an
    interval alike (-0 and float noise are rounded away)."""
    if not isinstance(m, dict) or m.get("mean") is None:
        return "-"
    mean, lo, hi = (round(float(v), 12) + 0.0 for v in (m["mean"], *m["ci95"]))
    if pct:
        return f"{mean * 100:.0f}% [{lo * 100:.0f}-{hi * 100:.0f}]"
    return f"{mean:{spec}} [{lo:{spec}}{sep}{hi:{spec}}]"
