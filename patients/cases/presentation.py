"""Presentation-first case generation: a complaint and a setting, then a condition, then findings.

A real clinician meets a complaint, not a diagnosis. So a case starts from a presentation (chest
pain, fever in a child, ...: `knowledge/presentations/*.yaml`) and a setting, draws one member
of that complaint's differential by prevalence for the patient's age and sex, then the member's
findings and test results, each independently:
- linked findings with the KB's probability, scaled down in an atypical case;
- the look-alikes' findings (every member's and differential's) present by chance at
  `distractor_p`, else recorded as pertinent negatives;
- a symptom's chance, either way, kept within `symptom_floor` of 0 and 1;
- tests with the KB's sensitivity for the member and the test's specificity otherwise, values
  flagged against the reference range for the patient's age and sex;
- only findings and tests that apply to the patient's age and sex.
The opening is the complaint plus what the persona volunteers from findings that cannot single
out a member (`KBModel.opening_safe`). `patients/cases/posterior.py` holds the same model inverted;
each case records its difficulty measured with it (`posterior.difficulty`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clinicgym.patients.cases.plausibility import ADULT_ONLY_AGE
from clinicgym.patients.cases.posterior import (
    distractor_ids,
    fitting_members,
    usable_settings,
)
from clinicgym.patients.cases.record import PatientRecord
from clinicgym.patients.cases.sampler import CaseSampler, uniform_draw
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.bands import AGE_BANDS, POPULATION_AGE_BANDS, age_band
from clinicgym.patients.knowledge.kb import (
    CHILD_AGE,
    SYMPTOM_CATEGORIES,
    Condition,
    Finding,
    KnowledgeBase,
    LabTest,
    Presentation,
    TestResult,
)


class PresentationSampler(CaseSampler):
    """Draws cases presentation-first; `settings` and `conditions` narrow the pool."""

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        *,
        settings: Sequence[str] | None = None,
        conditions: Sequence[str] | None = None,
        presentations: Sequence[str] | None = None,
    ) -> None:
        # settings narrow the (presentation, setting) pairs, not the conditions: a member is
        # seen where its presentation says, whatever settings its own KB entry lists
        super().__init__(kb, weighting="balanced", conditions=conditions)
        kb = self.kb
        if not kb.presentations:
            raise CaseError(
                "this KB has no presentations (knowledge/presentations/*.yaml); use "
                "weighting 'balanced' or 'population' for it"
            )
        if kb.generation is None:
            raise CaseError("this KB has presentations but no generation.yaml")
        unknown = sorted(set(presentations or ()) - set(kb.presentations))
        if unknown:
            raise CaseError(
                f"unknown presentation id(s) {unknown}; known: "
                + ", ".join(sorted(kb.presentations))
            )
        allowed = {c.id for c in self.pool}
        self.slots: list[tuple[Presentation, str]] = []
        """(presentation, setting) pairs a case can start from, in a fixed order."""
        for p in sorted(kb.presentations.values(), key=lambda p: p.id):
            if presentations and p.id not in presentations:
                continue
            for s in usable_settings(kb, p):
                if settings and s not in settings:
                    continue
                if any(m.condition in allowed for m in p.members_in(s)):
                    self.slots.append((p, s))
        if not self.slots:
            raise CaseError(
                f"no presentation matches settings={settings} conditions={conditions} "
                f"presentations={presentations}"
            )
        self._allowed = allowed

    # ---- step 1: what is true -------------------------------------------------------------

    def sample_record(self, rng: np.random.Generator) -> PatientRecord:
        """Presentation and setting, then condition, age and sex, then findings and tests."""
        pres_ids = sorted({p.id for p, _ in self.slots})
        pid = pres_ids[int(rng.integers(len(pres_ids)))]
        settings = [s for p, s in self.slots if p.id == pid]
        setting = settings[int(rng.integers(len(settings)))]
        pres = self.kb.presentations[pid]
        cond, age, sex = self._member(pres, setting, rng)
        return self.presented(pres, setting, cond, age, sex, rng)

    def _member(
        self, pres: Presentation, setting: str, rng: np.random.Generator
    ) -> tuple[Condition, int, str]:
        """A patient presenting this way: age from the population's age bands within the
        presentation's range, sex at even odds (redrawn until enough members fit:
        `fitting_members`), then a member by their demographic weights."""
        lo_p, hi_p = pres.age
        bands = [
            b for b in POPULATION_AGE_BANDS if AGE_BANDS[b][0] <= hi_p and AGE_BANDS[b][1] >= lo_p
        ]
        shares = np.array([POPULATION_AGE_BANDS[b] for b in bands])
        for _ in range(1000):
            band = bands[int(rng.choice(len(bands), p=shares / shares.sum()))]
            age = int(
                rng.integers(max(AGE_BANDS[band][0], lo_p), min(AGE_BANDS[band][1], hi_p) + 1)
            )
            sex = "female" if rng.random() < 0.5 else "male"
            fitting = fitting_members(self.kb, pres, setting, age, sex)
            weights = {c: w for c, w in fitting.items() if c in self._allowed}
            if weights:
                ids = sorted(weights)
                w = np.array([weights[c] for c in ids])
                cid = ids[int(rng.choice(len(ids), p=w / w.sum()))]
                return self.kb.conditions[cid], age, sex
        raise CaseError(f"presentation '{pres.id}' found no member for 1000 patients in {setting}")

    def presented(
        self,
        pres: Presentation,
        setting: str,
        cond: Condition,
        age: int,
        sex: str,
        rng: np.random.Generator,
    ) -> PatientRecord:
        """The record of a patient with `cond` who presents with `pres` in `setting` (the
        random draws in a fixed order: atypia, findings, tests, vitals, background)."""
        gen = self.kb.generation
        assert gen is not None
        atypical = bool(rng.random() < gen.atypical_share)
        scale = gen.atypical_factor if atypical else 1.0
        findings = self._drawn_findings(pres, setting, cond, age, sex, scale, rng)
        specs: dict[str, TestResult] = {}
        for r in cond.tests:
            specs.setdefault(r.id, r)
        tests = {  # plain fields, which the record validates into `TestOutcome`s in one go
            t.id: _result(t, specs.get(t.id), age, sex, rng)
            for t in self.kb.tests.values()
            if t.applies is None or t.applies.admits(age, sex)
        }
        band = age_band(age)
        return PatientRecord(
            age=age,
            sex=sex,  # type: ignore[arg-type]
            condition_id=cond.id,
            chief_complaint=pres.complaint,
            findings=findings,
            vitals=self._vitals(cond, band, rng),
            tests=tests,
            setting=setting,
            presentation=pres.id,
            atypical=atypical,
            **self.background(cond, age, rng),
        )

    def _drawn_findings(
        self,
        pres: Presentation,
        setting: str,
        cond: Condition,
        age: int,
        sex: str,
        scale: float,
        rng: np.random.Generator,
    ) -> dict[str, bool]:
        """The complaint, the condition's findings (each at its probability times `scale`),
        chance findings of the presentation (raised where the patient mimics a look-alike)
        and the age band's background findings, drawn in that order."""
        kb, gen = self.kb, self.kb.generation
        assert gen is not None

        def applies(fid: str) -> bool:
            return speakable(kb.findings[fid], age, sex)

        def draw(fid: str, p: float) -> bool:
            if kb.findings[fid].category in SYMPTOM_CATEGORIES:
                p = gen.symptom_p(p)
            return bool(rng.random() < p)

        findings: dict[str, bool] = {pres.complaint: True}
        for link in cond.findings:
            if link.id != pres.complaint and applies(link.id):
                findings[link.id] = draw(link.id, link.p * scale)
        siblings = sorted(m.condition for m in pres.members_in(setting) if m.condition != cond.id)
        mimic: dict[str, float] = {}
        if rng.random() < gen.mimic_share and siblings:  # presents like a look-alike
            like = kb.conditions[siblings[int(rng.integers(len(siblings)))]]
            mimic = {link.id: gen.mimic_factor * link.p for link in like.findings}
        d = gen.distractor_p
        for fid in distractor_ids(kb, pres, setting):
            if fid not in findings and applies(fid):
                findings[fid] = draw(fid, 1 - (1 - d) * (1 - mimic.get(fid, 0.0)))
        band = age_band(age)
        for bf in kb.background.findings:
            if bf.id not in findings and applies(bf.id) and bf.p.get(band, 0.0) > 0:
                findings[bf.id] = bool(rng.random() < bf.p[band])
        return findings


def speakable(fd: Finding, age: int, sex: str) -> bool:
    """Can this patient have, and tell of, `fd`? It must apply to their age and sex; a young
    child has no social history of their own, and a caregiver can only tell what the KB words
    for a caregiver (`text_child`)."""
    if fd.applies is not None and not fd.applies.admits(age, sex):
        return False
    if fd.category == "social" and age < ADULT_ONLY_AGE and fd.text_child is None:
        return False
    return fd.category == "exam" or age >= CHILD_AGE or fd.text_child is not None


def _result(
    t: LabTest, spec: TestResult | None, age: int, sex: str, rng: np.random.Generator
) -> dict[str, Any]:
    """One test's result for this patient, as `TestOutcome`'s fields: abnormal with the
    member's sensitivity (`spec`: the member's result for the test), or falsely abnormal with
    1 - specificity; numeric values are flagged against the patient's range."""
    ref = t.reference(age, sex)
    if spec is not None:
        abnormal = bool(rng.random() < spec.p)
        if ref is None:
            return dict(abnormal=abnormal, text=spec.text if abnormal else t.normal_text)
        if abnormal and spec.value is not None:
            value = uniform_draw(rng, _beyond(spec.value, ref, t.decimals), t.decimals)
        else:
            value = uniform_draw(rng, ref, t.decimals, shrink=0.1)
        return dict(abnormal=_outside(value, ref), value=value)
    false_positive = bool(rng.random() < 1 - t.specificity)
    if ref is None:
        if false_positive:
            return dict(abnormal=True, text=t.false_positive_text)
        return dict(abnormal=False, text=t.normal_text)
    if not false_positive:
        return dict(abnormal=False, value=uniform_draw(rng, ref, t.decimals, shrink=0.1))
    lo, hi = ref
    width = max(hi - lo, 10.0**-t.decimals)
    step = 10.0**-t.decimals
    if t.abnormal_side == "low" and lo > 0:
        bounds = (max(lo - 0.25 * width, 0.0), lo - step)
    else:
        bounds = (hi + step, hi + 0.25 * width)
    value = uniform_draw(rng, (min(bounds), max(bounds)), t.decimals)
    return dict(abnormal=_outside(value, ref), value=value)


def _beyond(
    values: tuple[float, float], ref: tuple[float, float], decimals: int
) -> tuple[float, float]:
    """The part of a condition's abnormal range that lies outside this patient's reference
    range (the larger side), so an abnormal result reads abnormal at the KB's sensitivity; the
    whole range if none of it does (then the result reads normal, as it would)."""
    step = 10.0**-decimals
    above = (max(values[0], ref[1] + step), values[1])
    below = (values[0], min(values[1], ref[0] - step))
    sides = [b for b in (above, below) if b[1] >= b[0]]
    return max(sides, key=lambda b: b[1] - b[0]) if sides else values


def _outside(value: float, ref: tuple[float, float]) -> bool:
    return not ref[0] <= value <= ref[1]


def make_sampler(
    kb: KnowledgeBase,
    weighting: str = "auto",
    *,
    settings: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> CaseSampler:
    """The sampler a run's `weighting` names: 'presentation' (presentation-first), the
    condition-first 'balanced' and 'population' samplers of earlier suite versions, or 'auto'
    (presentation where the KB has presentations, else balanced)."""
    if weighting == "auto":
        weighting = "presentation" if kb.presentations else "balanced"
    if weighting == "presentation":
        return PresentationSampler(kb, settings=settings, conditions=conditions)
    if weighting not in ("balanced", "population"):
        raise CaseError(
            f"unknown weighting '{weighting}'; use 'auto', 'presentation', 'balanced' or "
            "'population'"
        )
    return CaseSampler(kb, weighting=weighting, settings=settings, conditions=conditions)  # type: ignore[arg-type]


def default_sampler(kb: KnowledgeBase) -> CaseSampler:
    """Presentation-first where the KB has presentations, else the balanced sampler."""
    return make_sampler(kb)
