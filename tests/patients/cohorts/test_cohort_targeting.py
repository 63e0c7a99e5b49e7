"""Targeted generation: the mix leans towards the conditions, subgroups and findings where a
model failed, smoothed, and never drops a condition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinicgym.patients.cohorts.cohort import CohortSchema
from clinicgym.patients.cohorts.synthesis import plan_sampling
from clinicgym.patients.cohorts.targeting import target_mix
from clinicgym.patients.errors import SynthesisError

CAP, MIG, UTI = (
    "community_acquired_pneumonia",
    "migraine_without_aura",
    "lower_urinary_tract_infection",
)


@pytest.fixture(scope="module")
def schema(small_kb):
    return CohortSchema.for_kb(small_kb)


@pytest.fixture(scope="module")
def seed(schema, sampler):
    return schema.table([sampler.sample_record(np.random.default_rng([6, i])) for i in range(300)])


def _failures(rows):
    return pd.DataFrame(
        rows, columns=["condition_id", "sex", "age_band", "failed", "present", "absent"]
    )


def test_mix_moves_towards_failures(schema, seed):
    rows = []
    for i in range(20):
        # pneumonia is missed when there is no sputum; migraine and UTI are always right
        sputum = i % 2 == 0
        present, absent = (["productive_sputum"], []) if sputum else ([], ["productive_sputum"])
        rows.append((CAP, "male", "65+", 0.0 if sputum else 1.0, present, absent))
        rows.append((MIG, "female", "18-39", 0.0, [], []))
        rows.append((UTI, "female", "40-64", 0.0, [], []))
    mix = target_mix(_failures(rows), seed, schema, strength=0.7, min_finding_episodes=3)
    by = {c.condition_id: c for c in mix.conditions}
    assert by[CAP].target_share > 1 / 3 > by[MIG].target_share
    assert by[MIG].target_share >= 0.3 / 3 - 1e-9  # the uniform part keeps every condition
    assert abs(sum(c.target_share for c in mix.conditions) - 1) < 1e-9
    assert by[CAP].finding is not None and by[CAP].finding.finding_id == "productive_sputum"
    assert by[CAP].finding.present is False and by[CAP].finding.lift > 1.25
    # within pneumonia, the failing subgroup (men 65+) gains share over the seed's mix
    sub = {tuple(s.values.values()): s.share for s in by[CAP].subgroups}
    base = seed[seed["condition_id"] == CAP].groupby(["sex", "age_band"]).size()
    assert sub[("male", "65+")] > base[("male", "65+")] / base.sum()
    cells = mix.plan_cells(schema)["cells"]
    assert abs(sum(c["share"] for c in cells) - 1) < 1e-9
    links = [f.id for f in schema.kb.conditions[CAP].findings]
    slot = schema.finding_column(links.index("productive_sputum"))
    assert any(c["where"].get(slot) is False for c in cells)
    plan = plan_sampling(500, seed, schema, target=mix.plan_cells(schema))
    assert sum(c.count for c in plan.cells) == 500 and plan.target_shares[CAP] > 0.4


def test_no_failures_means_uniform(schema, seed):
    rows = [(c, "female", "18-39", 0.0, [], []) for c in (CAP, MIG, UTI) for _ in range(5)]
    mix = target_mix(_failures(rows), seed, schema)
    assert all(abs(c.target_share - 1 / 3) < 1e-9 for c in mix.conditions)


def test_bad_failure_tables_are_named(schema, seed):
    with pytest.raises(SynthesisError, match=r"missing columns \['failed'\]"):
        target_mix(
            pd.DataFrame({"condition_id": [CAP], "sex": ["male"], "age_band": ["65+"]}),
            seed,
            schema,
        )
    bad = _failures([(CAP, "male", "65+", 2.0, [], [])])
    with pytest.raises(SynthesisError, match=r"'failed' must lie in 0..1; found 2.0"):
        target_mix(bad, seed, schema)
    unknown = _failures([("scurvy", "male", "65+", 1.0, [], [])])
    with pytest.raises(SynthesisError, match=r"unknown condition id 'scurvy'"):
        target_mix(unknown, seed, schema)
