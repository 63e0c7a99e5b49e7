"""Presentation-first generation: what a case starts from, what its opening may say, and that the
baselines' model (patients/cases/posterior.py) is the generator's own."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.plausibility import violations
from clinicgym.patients.cases.posterior import (
    Belief,
    demographic_weights,
    fitting_members,
    model_for,
)
from clinicgym.patients.cases.presentation import PresentationSampler, _result, make_sampler
from clinicgym.patients.cases.record import TestOutcome
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.kb import LabTest, default_kb


@pytest.fixture(scope="module")
def sampler() -> PresentationSampler:
    return PresentationSampler(default_kb())


@pytest.fixture(scope="module")
def cases(sampler: PresentationSampler) -> list[Case]:
    return sampler.sample_many(150, seed=11)


def test_the_bundled_kb_has_enough_clusters() -> None:
    kb = default_kb()
    assert len(kb.presentations) >= 15
    for p in kb.presentations.values():
        assert len(p.members) >= 4, p.id


def test_same_seed_and_index_give_the_same_case(sampler: PresentationSampler) -> None:
    a = sampler.sample(5, 3)
    b = sampler.sample(5, 3)
    assert a.content_hash() == b.content_hash()
    assert sampler.sample(5, 4).content_hash() != a.content_hash()


def test_a_case_starts_from_a_presentation_and_a_setting(cases: list[Case]) -> None:
    kb = default_kb()
    for c in cases:
        assert c.presentation is not None and c.difficulty is not None
        pres = kb.presentations[c.presentation]
        assert c.setting in pres.settings
        members = {m.condition for m in pres.members_in(c.setting)}
        assert c.diagnosis.condition_id in members
        assert pres.age[0] <= c.age <= pres.age[1]
        (cc,) = [f for f in c.facts if f.category == "chief_complaint"]
        assert cc.concept == pres.complaint and cc.present


def test_the_opening_volunteers_only_what_cannot_single_out_a_member(cases: list[Case]) -> None:
    m = model_for(default_kb())
    volunteered = 0
    for c in cases:
        safe = m.opening_safe(c.presentation, c.setting)  # type: ignore[arg-type]
        by_id = {f.id: f for f in c.facts}
        for fid in c.persona.volunteer:
            volunteered += 1
            assert by_id[fid].concept in safe, (c.id, by_id[fid].concept)
    assert volunteered > 0  # the rule is exercised, not vacuous


def test_generated_cases_are_plausible(cases: list[Case]) -> None:
    kb = default_kb()
    found = {c.id: violations(c, kb) for c in cases}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_validator_finds_planted_implausibilities(cases: list[Case]) -> None:
    kb = default_kb()
    child = next(c for c in cases if c.age < 5)
    smoker = child.facts[0].model_copy(
        update={"id": "fx", "category": "social", "concept": "smoker", "text": "I smoke."}
    )
    lab = next(
        f
        for f in child.facts
        if f.category == "lab" and isinstance(f.value, float) and kb.tests[f.concept].ranges
    )
    wrong_flag = lab.model_copy(update={"abnormal": not lab.abnormal})
    first_person = child.facts[0].model_copy(
        update={"id": "fy", "category": "hpi", "text": "I've got a sore tummy.", "present": True}
    )
    planted = child.model_copy(
        update={
            "facts": [f for f in child.facts if f.id != lab.id]
            + [smoker, wrong_flag, first_person],
            "persona": child.persona.model_copy(update={"speaker": "patient"}),
        }
    )
    kinds = {v.split(":")[0] for v in violations(planted, kb)}
    assert {"child-social", "lab-flag", "speaker", "child-first-person"} <= kinds


def test_false_positives_come_at_one_minus_specificity() -> None:
    """A test the member does not cause (no spec) is abnormal at 1 - specificity, with a value
    beyond the reference range; otherwise within it."""
    test = LabTest(
        id="probe_test",
        name="probe",
        kind="lab",
        unit="u",
        normal=(10.0, 20.0),
        cost=1,
        specificity=0.8,
    )
    rng = np.random.default_rng(0)
    results = [TestOutcome(**_result(test, None, 40, "female", rng)) for _ in range(4000)]
    rate = sum(r.abnormal for r in results) / len(results)
    assert 0.18 < rate < 0.22
    assert all(r.value > 20.0 for r in results if r.abnormal)  # type: ignore[operator]
    assert all(10.0 <= r.value <= 20.0 for r in results if not r.abnormal)  # type: ignore[operator]


def test_the_prior_is_the_generators_own(sampler: PresentationSampler) -> None:
    """E[P(c | opening)] over generated records is the generator's frequency of c (law of
    total probability), per presentation and setting."""
    m = model_for(sampler.kb)
    rng = np.random.default_rng(3)
    pres, setting = sampler.slots[0]
    counts: Counter[str] = Counter()
    mean = np.zeros(len(m.conditions))
    n = 3000
    for _ in range(n):
        cond, age, sex = sampler._member(pres, setting, rng)
        counts[cond.id] += 1
        post, _ = m.prior(age, sex, setting, pres.complaint)
        mean += post
    mean /= n
    for cid, k in counts.items():
        assert abs(mean[m.cond_index[cid]] - k / n) < 0.03, cid


def test_difficulty_tiers_follow_the_steps_needed(cases: list[Case]) -> None:
    tiers: dict[str, list[int | None]] = defaultdict(list)
    for c in cases:
        assert c.difficulty is not None
        tiers[c.difficulty.tier].append(c.difficulty.steps_to_90)
    assert all(s is not None and s <= 3 for s in tiers["easy"])
    assert all(s is not None and 3 < s <= 8 for s in tiers["medium"])
    assert all(s is None or s > 8 for s in tiers["hard"])
    assert len(tiers) == 3  # every tier occurs in 150 cases


def test_belief_puts_zero_outside_the_presentation(sampler: PresentationSampler) -> None:
    m = model_for(sampler.kb)
    pres, setting = sampler.slots[0]
    b = Belief.start(m, 40, "female", setting, pres.complaint)
    live = {m.conditions[i] for i in np.flatnonzero(b.posterior() > 0)}
    members = {
        x.condition
        for p, s in sampler.slots
        if p.complaint == pres.complaint
        for x in p.members_in(s)
        if s == setting
    }
    assert live <= members
    assert abs(b.posterior().sum() - 1) < 1e-9


def test_unknown_presentation_and_weighting_are_named() -> None:
    with pytest.raises(CaseError, match="unknown presentation id"):
        PresentationSampler(default_kb(), presentations=["no_such"])
    with pytest.raises(CaseError, match="unknown weighting 'prevalence'"):
        make_sampler(default_kb(), "prevalence")


def test_symptoms_come_at_the_models_rates_within_the_floor(sampler: PresentationSampler) -> None:
    """Each symptom of a member appears in generated records at the rate the baselines' model
    gives it (the modes' mixture), and no drawn symptom is rarer than `symptom_floor` or
    commoner than 1 minus it: no single answer tells more than history features do."""
    kb, m = sampler.kb, model_for(sampler.kb)
    floor = kb.generation.symptom_floor  # type: ignore[union-attr]
    assert floor > 0
    pres, setting = next(
        (p, s) for p, s in sampler.slots if p.id.startswith("chest_pain") and p.age[0] <= 40
    )
    cid = pres.members_in(setting)[0].condition
    rows, weights, liks = m.cluster_modes(pres.id, setting)
    mine = rows == m.cond_index[cid]
    expected = (weights[mine, None] * liks[mine]).sum(axis=0) / weights[mine].sum()
    rng = np.random.default_rng(5)
    n = 3000
    seen: Counter[str] = Counter()
    drawn: set[str] = set()
    for _ in range(n):
        rec = sampler.presented(pres, setting, kb.conditions[cid], 40, "male", rng)
        drawn.update(rec.findings)
        seen.update(f for f, present in rec.findings.items() if present)
    symptoms = [
        f
        for f in drawn
        if f != pres.complaint and m.symptom[m.feature_index[f]] and f not in m.background
    ]
    assert len(symptoms) >= 5
    for f in symptoms:
        j = m.feature_index[f]
        assert floor - 1e-9 <= expected[j] <= 1 - floor + 1e-9, f
        assert abs(seen[f] / n - expected[j]) < 0.035, (f, seen[f] / n, expected[j])


def test_a_patient_is_drawn_only_where_enough_members_fit(cases: list[Case]) -> None:
    """With one or two candidate members for the age and sex, the demographics would name the
    condition: the generator redraws such patients (`min_fitting`)."""
    kb = default_kb()
    least = kb.generation.min_fitting  # type: ignore[union-attr]
    assert least >= 3
    fits = [
        len(demographic_weights(kb, kb.presentations[c.presentation], c.setting, c.age, c.sex))
        for c in cases
        if c.presentation is not None
    ]
    assert len(fits) == len(cases) and min(fits) >= least
    # the rule bites: without it, some patients of these presentations have fewer candidates
    few = sum(
        not fitting_members(kb, p, s, a, sx)
        for p, s in PresentationSampler(kb).slots
        for a in range(p.age[0], p.age[1] + 1, 3)
        for sx in ("female", "male")
    )
    assert few > 0
