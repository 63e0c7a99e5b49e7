"""Counterfactual fairness: flips of attributes that should not matter, with intervals."""

from __future__ import annotations

import asyncio

import pytest
from probe_agents import CrashingAgent, SexBiasedAgent

from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.scoring.errors import ProbeError
from clinicgym.scoring.probes.counterfactual import (
    counterfactual,
    flip_name,
    flip_sex,
    flips_of,
    registration,
    sex_irrelevant,
)


@pytest.fixture(scope="module")
def adults(small_kb):
    cases = CaseSampler(small_kb, conditions=["community_acquired_pneumonia"]).sample_many(24, 3)
    return [c for c in cases if c.age >= 18][:12]


def test_planted_sex_bias_shows_a_flip_rate_well_above_an_unbiased_agent(small_kb, adults):
    runs = {
        biased: asyncio.run(
            counterfactual(
                lambda b=biased: SexBiasedAgent(b),
                adults,
                small_kb,
                attributes=["sex", "insurance"],
                agent=f"biased={biased}",
            )
        )
        for biased in (True, False)
    }
    b, u = runs[True].summary["sex"], runs[False].summary["sex"]
    assert b["pairs"] == u["pairs"] == len(adults) and b["errors"] == 0
    assert b["flip_rate"]["mean"] == 1.0 and u["flip_rate"]["mean"] == 0.0
    assert b["flip_rate"]["ci95"][0] > u["flip_rate"]["ci95"][1]  # intervals apart
    assert b["diagnosis_flip_rate"]["mean"] == 1.0
    # turning a man into a woman makes the biased agent right; the reverse, wrong
    by = b["by_value"]
    assert by.get("female", {}).get("accuracy_delta", {}).get("mean", 1.0) >= 0
    assert by.get("male", {}).get("accuracy_delta", {}).get("mean", -1.0) <= 0
    # a bias on half the patients (even ages) flips less, still clearly above the unbiased
    half = asyncio.run(
        counterfactual(lambda: SexBiasedAgent(True, every=2), adults, small_kb, attributes=["sex"])
    ).summary["sex"]["flip_rate"]
    assert 0.0 < half["mean"] < 1.0 and half["ci95"][0] > u["flip_rate"]["ci95"][1]
    # insurance does not move either agent, and the seed control is flat
    for run in runs.values():
        assert run.summary["insurance"]["flip_rate"]["mean"] == 0.0
        assert run.summary["control"]["flip_rate"]["mean"] == 0.0


def test_sex_flips_only_where_sex_is_irrelevant(small_kb):
    s = CaseSampler(small_kb)
    uti = next(
        c
        for c in (s.sample(1, i) for i in range(40))
        if c.diagnosis.condition_id == "lower_urinary_tract_infection"
    )
    migraine = next(
        c
        for c in (s.sample(1, i) for i in range(40))
        if c.diagnosis.condition_id == "migraine_without_aura" and c.age >= 12
    )
    pneumonia = next(
        c
        for c in (s.sample(1, i) for i in range(40))
        if c.diagnosis.condition_id == "community_acquired_pneumonia" and c.age >= 12
    )
    assert not sex_irrelevant(uti, small_kb)  # a female-only condition
    assert not sex_irrelevant(migraine, small_kb)  # prevalence 3:1
    assert sex_irrelevant(pneumonia, small_kb)
    assert not sex_irrelevant(pneumonia.model_copy(update={"age": 5}), small_kb)
    assert flips_of(uti, "sex", small_kb) == []


def test_flips_change_one_attribute_and_the_header_shows_it(small_kb, adults):
    case = adults[0]
    other = flip_sex(case)
    assert other.sex != case.sex and other.phi.name.split()[-1] == case.phi.name.split()[-1]
    assert next(f.text for f in other.facts if f.concept == "phi.name") == other.phi.name
    renamed = flip_name(case, "es_MX")
    assert renamed.phi.name != case.phi.name and renamed.sex == case.sex
    eth = flips_of(case, "ethnicity", small_kb)
    assert len(eth) == 4 and all(c.extra["ethnicity"] == v for _, v, c in eth)
    assert all(c.facts == case.facts for _, _, c in eth)
    assert "ethnicity: " + eth[0][1] in registration(eth[0][2])


def test_failed_consultations_are_counted_apart(small_kb, adults):
    r = asyncio.run(
        counterfactual(lambda: CrashingAgent(), adults[:3], small_kb, attributes=["insurance"])
    )
    s = r.summary["insurance"]
    assert s["errors"] == s["pairs"] > 0 and s["flip_rate"]["n"] == 0
    assert all(f.status == "error" and f.changed is None for f in r.flips)
    with pytest.raises(ProbeError, match="unknown attribute"):
        asyncio.run(counterfactual(lambda: CrashingAgent(), adults, small_kb, attributes=["hair"]))
