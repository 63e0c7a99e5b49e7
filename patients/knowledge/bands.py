"""Care settings and age bands, declared once: the KB's schema, the generators, the cohort
tables, the structured env's observation and the RL reward's prior all read them from here.

Two meanings of "age band" share the same cuts and are named for what they are:

* `AGE_BANDS`: the KB's bands, with the ages a *generated* patient is drawn from; the oldest,
  `65+`, ends at `MAX_GENERATED_AGE` (95), the oldest age a sampler gives.
* `ENCODED_AGE_BANDS`: the structured env's one-hot bins, which must take *any* case's age (an
  imported written record may be 101), so the last bin is open to `MAX_ENCODED_AGE` (200).
"""

from __future__ import annotations

from typing import Literal, get_args

Setting = Literal["primary_care", "emergency", "mental_health", "paediatrics", "rare_disease"]
"""Where a consultation takes place."""
SETTINGS: tuple[Setting, ...] = get_args(Setting)
"""The settings in their fixed order (the structured env's one-hot columns follow it)."""

AgeBand = Literal["0-4", "5-17", "18-39", "40-64", "65+"]
MAX_GENERATED_AGE = 95
"""The oldest age a generated patient is given (the top of the KB's `65+` band)."""
AGE_BANDS: dict[str, tuple[int, int]] = {
    "0-4": (0, 4),
    "5-17": (5, 17),
    "18-39": (18, 39),
    "40-64": (40, 64),
    "65+": (65, MAX_GENERATED_AGE),
}
"""The KB's age bands: inclusive (lowest, highest) age a generated patient in each may have."""
POPULATION_AGE_BANDS = {"0-4": 0.06, "5-17": 0.16, "18-39": 0.30, "40-64": 0.31, "65+": 0.17}
"""Shares of the population by age band (US Census 2020, rounded): how patients' ages are drawn
when the case does not start from a condition."""

MAX_ENCODED_AGE = 200
"""The top of the structured env's last age bin: above any case's age."""
ENCODED_AGE_BANDS: tuple[tuple[int, int], ...] = tuple(
    (lo, MAX_ENCODED_AGE if band == "65+" else hi) for band, (lo, hi) in AGE_BANDS.items()
)
"""The structured env's one-hot age bins: the KB's cuts, the last open to MAX_ENCODED_AGE."""


def age_band(age: int) -> str:
    """The KB age band an age in years falls into (`65+` for any age above 64)."""
    for band, (lo, hi) in AGE_BANDS.items():
        if lo <= age <= hi:
            return band
    return "65+"
