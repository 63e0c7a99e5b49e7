"""Aggregates with honest 95% intervals: means of per-episode metrics, differences of means,
and other statistics (pass^k over repeated seeds, expected calibration error, subgroup gaps).

Which interval (docs/scoring.md, "Intervals"):

* a proportion, i.e. a mean of 0/1 values: the Wilson score interval (`wilson_ci`). Whether a
  metric is a proportion is decided from its values (every value is 0 or 1) unless the caller
  says so (`proportion=`), e.g. for turns or signed differences, where 0 and 1 are not no/yes;
* the difference of two independent proportions: Newcombe's hybrid score interval, built from
  the two Wilson intervals (`newcombe_diff_ci`);
* any other mean, difference of means or statistic: `scipy.stats.bootstrap`, seeded. BCa (bias
  corrected and accelerated) up to `BCA_MAX_N` items; percentile above that (BCa's jackknife
  costs O(n^2), and with that many items the two agree) and wherever BCa is undefined;
* never a zero-width interval for finite n. A proportion always has width (Wilson: 5 of 5 is
  about [0.57, 1]). Where bootstrap resamples all give the same value (n equal values, n = 1)
  the data say nothing about the spread, so the interval is *undefined*: `ci95` is None,
  `method` is "undefined" and `format_ci` prints `[undefined]`. It is not widened by a rule,
  because most such metrics (turns, tokens, costs) have no upper bound to widen towards.

Every result is a dict `{"mean", "ci95": [lo, hi] | None, "n", "method"}`; all are seeded
(`BOOTSTRAP_SEED`), so the same values give the same intervals in every run.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261122
BCA_MAX_N = 1000
"""Largest sample (per group) bootstrapped with BCa; larger ones use the percentile method."""
_BATCH_CELLS = 1 << 20
"""Resampled values held at once (scipy's `batch`): bounds memory for large runs."""
Z95 = NormalDist().inv_cdf(0.975)
"""The standard normal quantile of a two-sided 95% interval, 1.959963984540054."""

UNDEFINED = "undefined"


# ---- proportions --------------------------------------------------------------------------


def wilson_ci(successes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: `successes` of `n`.

    Why Wilson and not Clopper-Pearson: Clopper-Pearson ("exact") guarantees at least 95%
    coverage for every true proportion, which makes it conservative, often near 98-99% for the
    small n of a benchmark run, so it would hide real differences between agents. Wilson's
    coverage stays close to 95% on average even at small n (Brown, Cai & DasGupta 2001,
    Agresti & Coull 1998), it has a closed form, and unlike the normal (Wald) interval it never
    collapses to zero width at 0 of n or n of n: 5 of 5 gives about [0.566, 1], 0 of 5 about
    [0, 0.434]. Its end points never leave [0, 1].

    Computed by `scipy.stats.binomtest(successes, n).proportion_ci(method="wilson")` (no
    continuity correction), which agrees with the closed form
    centre = (p + z^2/2n) / (1 + z^2/n),  half = z * sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    to 4e-16 for every k of n <= 200. `z` other than Z95 sets the confidence level it implies.
    """
    from scipy.stats import binomtest  # here: importing scipy.stats costs every command startup

    if n < 1:
        raise ValueError(f"a proportion needs n >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    level = 2 * NormalDist().cdf(z) - 1
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    lo = 0.0 if successes == 0 else max(0.0, float(ci.low))
    hi = 1.0 if successes == n else min(1.0, float(ci.high))
    return lo, hi


def newcombe_diff_ci(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, z: float = Z95
) -> tuple[float, float]:
    """The 95% interval of p_b - p_a for two independent proportions: Newcombe's hybrid score
    interval (1998, method 10), which combines the two Wilson intervals:

    lo = d - sqrt((p_b - lo_b)^2 + (hi_a - p_a)^2),  hi = d + sqrt((hi_b - p_b)^2 + (p_a - lo_a)^2)

    Like Wilson it has width for every n, also when both groups are all 0 or all 1."""
    pa, pb = successes_a / n_a, successes_b / n_b
    la, ua = wilson_ci(successes_a, n_a, z=z)
    lb, ub = wilson_ci(successes_b, n_b, z=z)
    d = pb - pa
    return (
        max(-1.0, d - math.hypot(pb - lb, ua - pa)),
        min(1.0, d + math.hypot(ub - pb, pa - la)),
    )


def is_binary(x: np.ndarray) -> bool:
    """Every value is 0 or 1 (and there is at least one): a sample of a proportion."""
    return bool(x.size) and bool(np.all((x == 0) | (x == 1)))


# ---- the bootstrap (scipy) ----------------------------------------------------------------


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    *,
    vectorized: bool,
    paired: bool = False,
    resamples: int,
    seed: int,
) -> tuple[list[float] | None, str]:
    """(ci95 or None, method) of `statistic` over `data` by `scipy.stats.bootstrap`.

    BCa up to BCA_MAX_N items, else percentile; percentile also where BCa is undefined (scipy
    returns NaN and warns: a jackknife without spread, an observed value outside the resamples).
    Undefined (None) where the resamples do not vary, or the interval would have no width."""
    from scipy import stats as sps  # here: importing scipy.stats costs every command startup

    n = max(len(d) for d in data)
    method = "BCa" if n <= BCA_MAX_N else "percentile"
    kw: dict[str, Any] = {
        "n_resamples": resamples,
        "vectorized": vectorized,
        "paired": paired,
        "batch": max(1, min(resamples, _BATCH_CELLS // max(n, 1))),
    }
    with warnings.catch_warnings():
        # scipy's DegenerateDataWarning and NaN arithmetic warnings: handled below
        warnings.simplefilter("ignore")
        res = sps.bootstrap(data, statistic, method=method, rng=np.random.default_rng(seed), **kw)
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        finite = dist[np.isfinite(dist)]
        if finite.size == 0 or np.ptp(finite) == 0:
            return None, UNDEFINED
        lo, hi = (float(v) for v in res.confidence_interval)
        if finite.size < dist.size:  # the statistic had no value on some resamples: skip them
            lo, hi = (float(v) for v in np.percentile(finite, [2.5, 97.5]))
            method = "percentile"
        elif not (math.isfinite(lo) and math.isfinite(hi)):
            kw["n_resamples"] = 0
            res = sps.bootstrap(
                data,
                statistic,
                method="percentile",
                bootstrap_result=res,
                rng=np.random.default_rng(seed),
                **kw,
            )
            lo, hi = (float(v) for v in res.confidence_interval)
            method = "percentile"
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        return None, UNDEFINED
    return [lo, hi], method.lower()


def _values(values: Sequence[float | None]) -> np.ndarray:
    x = np.array([v for v in values if v is not None], dtype=float)
    return x[~np.isnan(x)]


# ---- means --------------------------------------------------------------------------------


def mean_ci(
    values: Sequence[float | None],
    *,
    proportion: bool | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """{'mean', 'ci95': [lo, hi] or None, 'n', 'method'} over the non-missing values (None and
    NaN are left out); mean None when there are none.

    `proportion` None decides from the values: every value 0 or 1 is a proportion, with a Wilson
    interval; anything else gets a scipy bootstrap interval (BCa). True insists on Wilson (the
    values must be 0/1); False always bootstraps (turns, signed differences: quantities where
    0 and 1 are not no and yes). A bootstrap of n equal values has no interval: ci95 None,
    method "undefined" (never a zero-width interval)."""
    x = _values(values)
    if x.size == 0:
        return {"mean": None, "ci95": None, "n": 0, "method": None}
    mean = float(x.mean())
    out: dict[str, Any] = {"mean": mean, "ci95": None, "n": int(x.size), "method": UNDEFINED}
    binary = is_binary(x)
    if proportion and not binary:
        raise ValueError("proportion=True needs values that are all 0 or 1")
    if binary if proportion is None else proportion:
        out["ci95"] = list(wilson_ci(int(x.sum()), int(x.size)))
        out["method"] = "wilson"
    elif np.ptp(x) > 0:
        out["ci95"], out["method"] = _bootstrap(
            (x,), _mean, vectorized=True, resamples=resamples, seed=seed
        )
    return out


def mean_diff_ci(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    paired: bool,
    proportion: bool | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any] | None:
    """mean(b) - mean(a) with a 95% interval: {'mean', 'ci95' (None: undefined), 'n': [n_a,
    n_b], 'method', 'paired'}; None when either side has no values. `proportion` as for
    `mean_ci`: None decides from the values, False never reads them as proportions.

    Paired (`a[i]` and `b[i]` are the same case): a scipy bootstrap over the pairs, which drops
    the pairs with a missing side. If every pair differs by the same amount the pairs carry no
    spread; the interval is then the independent-samples one below (the pairs are perfectly
    correlated, and ignoring a positive correlation only widens an interval), and 'paired' says
    False. Independent: Newcombe's interval when both sides are all 0/1, else a two-sample
    scipy bootstrap (each side resampled on its own); undefined when both sides are constant
    (or one has a single value)."""
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
        pairs = np.array(
            [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None],
            dtype=float,
        ).reshape(-1, 2)
        pairs = pairs[~np.isnan(pairs).any(axis=1)]
        xa, xb = pairs[:, 0], pairs[:, 1]
    else:
        xa, xb = _values(a), _values(b)
    if xa.size == 0 or xb.size == 0:
        return None
    out: dict[str, Any] = {
        "mean": float(xb.mean() - xa.mean()),
        "ci95": None,
        "n": [int(xa.size), int(xb.size)],
        "method": UNDEFINED,
        "paired": False,
    }
    if paired and xa.size >= 2 and np.ptp(xb - xa) > 0:
        out["ci95"], out["method"] = _bootstrap(
            (xa, xb), _mean_diff, vectorized=True, paired=True, resamples=resamples, seed=seed
        )
        out["paired"] = True
    elif proportion is not False and is_binary(xa) and is_binary(xb):
        out["ci95"] = list(
            newcombe_diff_ci(int(xa.sum()), int(xa.size), int(xb.sum()), int(xb.size))
        )
        out["method"] = "newcombe"
    elif min(xa.size, xb.size) >= 2 and (np.ptp(xa) > 0 or np.ptp(xb) > 0):
        out["ci95"], out["method"] = _bootstrap(
            (xa, xb), _mean_diff, vectorized=True, resamples=resamples, seed=seed
        )
    return out


def bootstrap_ci(
    data: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float | None],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """{'mean': statistic(data), 'ci95', 'n', 'method'}: a seeded scipy bootstrap (BCa) of any
    statistic of a list of items, resampled with replacement (resamples where it is None are
    left out). ci95 None ("undefined") when every resample gives the same value."""
    items = list(data)
    value = statistic(items) if items else None
    if value is None:
        return {"mean": None, "ci95": None, "n": len(items), "method": None}

    def stat(idx: np.ndarray) -> float:
        v = statistic([items[i] for i in idx])
        return math.nan if v is None else float(v)

    return _index_bootstrap_ci(len(items), value, stat, resamples=resamples, seed=seed)


def _index_bootstrap_ci(
    n: int,
    value: float,
    statistic: Callable[[np.ndarray], float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The interval of `bootstrap_ci` for `n` items given their statistic's `value`, where
    `statistic` reads the resampled indices (so a statistic over arrays built once can index
    them instead of rebuilding them from items)."""
    out: dict[str, Any] = {"mean": float(value), "ci95": None, "n": n, "method": UNDEFINED}
    if n >= 2:
        out["ci95"], out["method"] = _bootstrap(
            (np.arange(n),), statistic, vectorized=False, resamples=resamples, seed=seed
        )
    return out


# ---- pass^k, calibration, gaps ------------------------------------------------------------


def pass_hat_k_per_task(successes: Sequence[tuple[int, int]], k: int) -> list[float]:
    """C(c, k) / C(n, k) for each task of n trials and c successes with n >= k."""
    if k < 1:
        raise ValueError(f"pass^k needs k >= 1, got {k}")
    return [math.comb(c, k) / math.comb(n, k) for n, c in successes if n >= k]


def pass_hat_k(successes: Sequence[tuple[int, int]], k: int) -> float | None:
    """pass^k as tau2-bench defines it: per task with n trials and c successes, C(c, k) / C(n, k)
    (the chance that k trials drawn without replacement all succeed), averaged over the tasks
    with at least k trials; None if there are none."""
    vals = pass_hat_k_per_task(successes, k)
    return float(np.mean(vals)) if vals else None


def pass_hat_k_ci(successes: Sequence[tuple[int, int]], k: int, **kw: Any) -> dict[str, Any]:
    """pass^k with a 95% interval over tasks: the tasks' C(c, k) / C(n, k) values are what is
    resampled (a scipy bootstrap); where each is 0 or 1 (k = n, or tasks that always or never
    pass) pass^k is the share of tasks that pass, and the interval is Wilson's over tasks."""
    return mean_ci(pass_hat_k_per_task(successes, k), **kw)


ECE_BINS = 10


def ece(pairs: Sequence[tuple[float, float]], bins: int = ECE_BINS) -> float | None:
    """Expected calibration error of (confidence, correct) pairs: the mean over equal-width
    confidence bins of |accuracy - mean confidence|, weighted by the bin's share of pairs."""
    if not pairs:
        return None
    return _ece(*_ece_arrays(pairs), bins)


def _ece_arrays(pairs: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' confidences (clipped to [0, 1]) and outcomes as arrays."""
    conf = np.clip(np.array([p[0] for p in pairs], dtype=float), 0.0, 1.0)
    return conf, np.array([p[1] for p in pairs], dtype=float)


def _ece(conf: np.ndarray, hit: np.ndarray, bins: int) -> float:
    """`ece` of confidences and outcomes as arrays."""
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(hit[sel].mean() - conf[sel].mean())
    return float(total)


def ece_ci(pairs: Sequence[tuple[float, float]], bins: int = ECE_BINS, **kw: Any) -> dict[str, Any]:
    """ECE with a bootstrap interval over episodes. The arrays are built once and each resample
    indexes them (the statistic of 2,000 resamples rebuilt them from lists: ~1 s at 3,000)."""
    items = list(pairs)
    if not items:
        return {"mean": None, "ci95": None, "n": 0, "method": None}
    conf, hit = _ece_arrays(items)
    value = _ece(conf, hit, bins)
    return _index_bootstrap_ci(len(items), value, lambda i: _ece(conf[i], hit[i], bins), **kw)


def gap_ci(
    groups: dict[str, Sequence[float]],
    *,
    proportion: bool | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any] | None:
    """The gap between the largest and smallest group mean, with a 95% interval (the two
    groups are independent: `mean_diff_ci`); which groups are highest and lowest. None with
    fewer than 2 groups.

    The interval is of the signed difference between the two groups observed highest and
    lowest, so it includes 0 (or goes below it) when they do not really differ; the max-minus-
    min of each resample would never reach 0 and would flag a gap that is only noise."""
    arrays = {k: _values(v) for k, v in groups.items()}
    arrays = {k: a for k, a in arrays.items() if a.size}
    if len(arrays) < 2:
        return None
    means = {k: float(a.mean()) for k, a in arrays.items()}
    hi = max(means, key=lambda k: means[k])
    lo = min((k for k in means if k != hi), key=lambda k: means[k])
    d = mean_diff_ci(
        arrays[lo], arrays[hi], paired=False, proportion=proportion, resamples=resamples, seed=seed
    )
    assert d is not None  # both groups have values
    return {
        "mean": means[hi] - means[lo],
        "ci95": d["ci95"],
        "method": d["method"],
        "highest": hi,
        "lowest": lo,
        "n": {k: int(a.size) for k, a in arrays.items()},
    }


# ---- printing -----------------------------------------------------------------------------


def _bounds(lo: float, hi: float, sign: str, digits: int, kind: str) -> tuple[str, str]:
    """lo and hi printed with enough digits (up to 4 more than asked) to stay apart."""
    for extra in range(5):
        spec = f"{sign}.{digits + extra}{kind}"
        a, b = f"{lo:{spec}}", f"{hi:{spec}}"
        if a != b:
            break
    return a, b


def format_interval(
    ci: Sequence[float | None] | None, *, pct: bool = False, spec: str = ".2f", sep: str = "-"
) -> str:
    """`[lo-hi]` (as `format_ci` prints it), or `[undefined]` when there is no interval."""
    if not ci or ci[0] is None or ci[1] is None:
        return f"[{UNDEFINED}]"
    lo, hi = (round(float(v), 12) + 0.0 for v in ci)
    parsed = re.fullmatch(r"([+\- ]?)\.(\d+)([fgeFGE])", spec)
    if pct:
        a, b = _bounds(lo * 100, hi * 100, "", 0, "f")
    elif parsed:
        a, b = _bounds(lo, hi, parsed[1], int(parsed[2]), parsed[3])
    else:  # another spec: printed as given
        a, b = f"{lo:{spec}}", f"{hi:{spec}}"
    return f"[{a}{sep}{b}]"


def format_ci(m: Any, *, pct: bool = False, spec: str = ".2f", sep: str = "-") -> str:
    """A metric `{"mean", "ci95"}` as `mean [lo-hi]`, or "-" when it has no value; `pct`:
    whole percents. The one formatter behind every table and report, so that they print an
    interval alike (-0 and float noise are rounded away). An undefined interval (ci95 None:
    n equal values, nothing to resample) prints as `mean [undefined]`; bounds that round to
    the same text get more digits, so an interval never looks zero-width."""
    if not isinstance(m, dict) or m.get("mean") is None:
        return "-"
    mean = round(float(m["mean"]), 12) + 0.0
    head = f"{mean * 100:.0f}%" if pct else f"{mean:{spec}}"
    return f"{head} {format_interval(m.get('ci95'), pct=pct, spec=spec, sep=sep)}"
