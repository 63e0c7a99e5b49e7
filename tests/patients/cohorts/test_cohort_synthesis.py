"""Synthesis: seeded SDV sampling, clinical constraints, fair plans, counted rejection, save/load.

SDV fits are integration tests (small: a few hundred rows of the small KB, about a second each);
CTGAN and TVAE train for a few epochs only and are also marked slow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinicgym.patients.cohorts.cohort import CohortSchema
from clinicgym.patients.cohorts.synthesis import (
    CohortSynthesizer,
    SynthesizerConfig,
    generate,
    parse_balance,
    plan_sampling,
    subgroup_shares,
)
from clinicgym.patients.errors import SynthesisError


@pytest.fixture(scope="module")
def schema(small_kb):
    return CohortSchema.for_kb(small_kb)


@pytest.fixture(scope="module")
def seed_table(schema, sampler):
    records = [sampler.sample_record(np.random.default_rng([5, i])) for i in range(400)]
    return schema.table(records)


@pytest.fixture(scope="module")
def gc(schema, seed_table):
    return CohortSynthesizer(schema).fit(seed_table)


# ---- plans (no fitting) -----------------------------------------------------------------------


def test_parse_balance():
    assert parse_balance("sex,age_band") == {"sex": None, "age_band": None}
    assert parse_balance("sex=female:0.7/male:0.3") == {"sex": {"female": 0.7, "male": 0.3}}
    with pytest.raises(SynthesisError, match="unknown attribute 'race'"):
        parse_balance("race")
    with pytest.raises(SynthesisError, match=r"must be >= 0 and sum to 1; got 0\.9"):
        parse_balance("sex=female:0.5/male:0.4")
    with pytest.raises(SynthesisError, match=r"'female' in 'sex=female' is not VALUE:SHARE"):
        parse_balance("sex=female")


def test_balanced_plan_has_exact_joint_counts(schema, seed_table):
    plan = plan_sampling(1000, seed_table, schema, balance=parse_balance("sex,age_band"))
    counts = {tuple(c.where.values()): c.count for c in plan.cells}
    assert sum(counts.values()) == 1000 and len(counts) == 10
    assert set(counts.values()) == {100}


def test_impossible_targets_are_named(schema, seed_table):
    with pytest.raises(SynthesisError, match=r"--balance sex: value 'other' has no seed rows"):
        plan_sampling(100, seed_table, schema, balance={"sex": {"female": 0.5, "other": 0.5}})
    uti = {"condition_id": ["lower_urinary_tract_infection"]}
    with pytest.raises(SynthesisError, match=r"--balance sex: value 'male' has no seed rows with"):
        plan_sampling(
            100, seed_table, schema, balance={"sex": {"female": 0.5, "male": 0.5}}, filters=uti
        )
    # each value exists, but not together: the joint target is impossible
    no_old_men = seed_table[~((seed_table["sex"] == "male") & (seed_table["age_band"] == "65+"))]
    with pytest.raises(
        SynthesisError, match=r"the subgroup sex='male', age_band='65\+' has no seed rows"
    ):
        plan_sampling(100, no_old_men, schema, balance=parse_balance("sex,age_band"))
    with pytest.raises(SynthesisError, match=r"--rare-floor 0.5 x 3 conditions = 1.50 > 1"):
        plan_sampling(100, seed_table, schema, rare_floor=0.5)
    with pytest.raises(SynthesisError, match=r"--where sex: unknown value 'other'"):
        plan_sampling(100, seed_table, schema, filters={"sex": ["other"]})
    with pytest.raises(SynthesisError, match=r"--where: unknown column 'colour'"):
        plan_sampling(100, seed_table, schema, filters={"colour": ["red"]})


def test_rare_floor_carves_cells(schema, seed_table):
    shares = seed_table["condition_id"].value_counts(normalize=True)
    floor = 0.33
    assert shares.min() < floor
    plan = plan_sampling(500, seed_table, schema, rare_floor=floor)
    floor_rows = {}
    for c in plan.cells:
        if c.reason == "rare_floor":
            floor_rows[c.where["condition_id"]] = (
                floor_rows.get(c.where["condition_id"], 0) + c.count
            )
    assert floor_rows and all(v >= floor * 500 - 1e-9 for v in floor_rows.values())
    assert sum(c.count for c in plan.cells) == 500


# ---- fitted synthesizers -------------------------------------------------------------------


@pytest.mark.integration
def test_same_seed_same_rows(gc):
    a, b, c = gc.sample(60, 7), gc.sample(60, 7), gc.sample(60, 8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


@pytest.mark.integration
def test_constraints_hold_on_raw_draws(gc, schema):
    raw = gc.sample(1500, 1)
    kb = schema.kb
    for cid, rows in raw.groupby("condition_id"):
        cond = kb.conditions[cid]
        assert rows["age"].between(*cond.age).all(), cid  # KB age range, by construction
        assert (rows["icd10"] == cond.icd10).all()  # fixed combinations
        if cond.sex != "any":
            assert (rows["sex"] == cond.sex).all()
        assert rows["chief_complaint"].isin(cond.chief_complaint).all()
    # vitals land inside the KB range of the row's condition and band
    reasons = schema.violations(raw).dropna()
    assert not any(r.startswith("implausible") for r in reasons)


@pytest.mark.integration
def test_generation_counts_rejections_and_hits_balance(gc, schema, seed_table):
    plan = plan_sampling(400, seed_table, schema, balance=parse_balance("sex,age_band"))
    table, stats = generate(gc, plan, seed=3, train=seed_table)
    assert len(table) == 400 and table["patient_id"].is_unique
    assert schema.violations(table).isna().all()
    assert (
        stats.drawn
        == stats.kept + sum(stats.rejected.values()) + stats.surplus + stats.exact_copies
    )
    shares = subgroup_shares(table, ["sex", "age_band"])
    assert all(abs(v - 0.1) < 1e-9 for v in shares.values()) and len(shares) == 10
    again, _ = generate(gc, plan, seed=3, train=seed_table)
    pd.testing.assert_frame_equal(table, again)


@pytest.mark.integration
def test_conditional_sampling_and_floor(gc, schema, seed_table):
    only = plan_sampling(
        120,
        seed_table,
        schema,
        filters={"condition_id": ["migraine_without_aura"], "sex": ["male"]},
    )
    table, _ = generate(gc, only, seed=1, train=seed_table)
    assert (table["condition_id"] == "migraine_without_aura").all() and (
        table["sex"] == "male"
    ).all()
    floored = plan_sampling(300, seed_table, schema, rare_floor=0.3)
    table, _ = generate(gc, floored, seed=1, train=seed_table)
    assert table["condition_id"].value_counts(normalize=True).min() >= 0.3


class _Copier:
    """A 'synthesizer' that hands back training rows: generation must drop every one."""

    def __init__(self, schema, rows):
        self.schema, self.rows = schema, rows

    def sample(self, n, seed):
        rows = self.rows.drop(columns=["patient_id"])
        return rows.sample(n, replace=True, random_state=seed % 1000).reset_index(drop=True)


def test_exact_copies_of_training_rows_are_dropped(schema, seed_table):
    plan = plan_sampling(10, seed_table, schema)
    with pytest.raises(SynthesisError, match="could not fill"):
        generate(_Copier(schema, seed_table), plan, seed=0, train=seed_table, max_draws=2000)
    _, stats = generate(_Copier(schema, seed_table), plan, seed=0, train=None)
    assert stats.exact_copies == 0  # nothing to compare against: kept


@pytest.mark.integration
def test_save_and_load_sample_the_same(gc, schema, tmp_path):
    gc.save(tmp_path)
    again = CohortSynthesizer.load(tmp_path, schema, gc.config)
    pd.testing.assert_frame_equal(gc.sample(50, 4), again.sample(50, 4))
    assert (tmp_path / "metadata.json").exists()


def test_neural_options_are_checked():
    with pytest.raises(SynthesisError, match="apply to ctgan and tvae only"):
        SynthesizerConfig(name="gaussian_copula", epochs=5).sdv_kwargs()
    assert SynthesizerConfig(name="ctgan", epochs=5).sdv_kwargs() == {
        "enable_gpu": False,
        "epochs": 5,
    }


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("name", ["ctgan", "tvae"])
def test_neural_synthesizers_fit_and_sample(name, schema, seed_table):
    seed = seed_table.head(200)
    config = SynthesizerConfig(name=name, epochs=2, batch_size=100)
    synth = CohortSynthesizer(schema, config).fit(seed)
    raw = synth.sample(150, 1)
    assert len(raw) == 150 and list(raw.columns) == list(schema.columns)
    pd.testing.assert_frame_equal(raw, synth.sample(150, 1))
    table, stats = generate(synth, plan_sampling(80, seed, schema), seed=2, train=seed)
    assert len(table) == 80 and schema.violations(table).isna().all()
    assert stats.drawn >= 80 and type(synth.sdv).__name__.lower().startswith(name)
