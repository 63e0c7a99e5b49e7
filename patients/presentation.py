"""Presentation-first case generation: a complaint and a setting, then a condition, then findings.

A real clinician meets a complaint, not a diagnosis. So a case starts from a presentation (chest
pain, fever in a child, ...: `knowledge/presentations/*.yaml`) and a setting, draws one member
of that complaint's differential by prevalence for the patient's age and sex, then the member's
findings and test results, each independently:
- linked findings with the KB's probability, scaled down in an atypical case;
- the look-alikes' findings (every member's and differential's) present by chance at
  `distractor_p`, else recorded as pertinent negatives;
- tests with the KB's sensitivity for the member and the test's specificity otherwise, values
  flagged against the reference range for the patient's age and sex;
- only findings and tests that apply to the patient's age and sex.
The opening is the complaint plus what the persona volunteers from findings that cannot single
out a member (`KBModel.opening_safe`). `patients/posterior.py` holds the same model inverted;
each case records its difficulty measured with it (`posterior.difficulty`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clinicgym.patients.errors import CaseError
from clinicgym.patients.kb import (
    AGE_BANDS,
    Condition,
    KnowledgeBase,
    LabTest,
    Presentation,
    age_band,
)
from clinicgym.patients.posterior import distractor_ids, member_weights, model_for
from clinicgym.patients.sampler import CaseSampler, PatientRecord, TestOutcome, _uniform


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
        super().__init__(kb, weighting="balanced", settings=settings, conditions=conditions)
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
            for s in p.settings:
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
        self.model = model_for(kb)

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
        weights = {
            c: w for c, w in member_weights(self.kb, pres, setting).items() if c in self._allowed
        }
        options: list[tuple[Condition, str, float]] = []
        for cid, w in weights.items():
            c = self.kb.conditions[cid]
            lo_all, hi_all = max(c.age[0], pres.age[0]), min(c.age[1], pres.age[1])
            bands = {
                b: bw
                for b, bw in c.prevalence.age_bands.items()
                if bw > 0 and AGE_BANDS[b][0] <= hi_all and AGE_BANDS[b][1] >= lo_all
            }
            total = sum(bands.values())
            options += [(c, b, w * bw / total) for b, bw in bands.items()]
        if not options:
            raise CaseError(f"presentation '{pres.id}' has no member for setting '{setting}'")
        p = np.array([o[2] for o in options])
        cond, band, _ = options[int(rng.choice(len(options), p=p / p.sum()))]
        lo = max(AGE_BANDS[band][0], cond.age[0], pres.age[0])
        hi = min(AGE_BANDS[band][1], cond.age[1], pres.age[1])
        age = int(rng.integers(lo, hi + 1))
        if cond.sex != "any":
            return cond, age, cond.sex
        sw = cond.prevalence.sex
        p_female = sw.get("female", 0.0) / (sw.get("female", 0.0) + sw.get("male", 0.0))
        return cond, age, "female" if rng.random() < p_female else "male"

    def presented(
        self,
        pres: Presentation,
        setting: str,
        cond: Condition,
        age: int,
        sex: str,
        rng: np.random.Generator,
    ) -> PatientRecord:
        """The record of a patient with `cond` who presents with `pres` in `setting`."""
        kb, gen = self.kb, self.kb.generation
        assert gen is not None
        atypical = bool(rng.random() < gen.atypical_share)
        scale = gen.atypical_factor if atypical else 1.0

        def applies(fid: str) -> bool:
            a = kb.findings[fid].applies
            return a is None or a.admits(age, sex)

        findings: dict[str, bool] = {pres.complaint: True}
        for link in cond.findings:
            if link.id != pres.complaint and applies(link.id):
                findings[link.id] = bool(rng.random() < link.p * scale)
        for fid in distractor_ids(kb, pres, setting):
            if fid not in findings and applies(fid):
                findings[fid] = bool(rng.random() < gen.distractor_p)
        band = age_band(age)
        for bf in kb.background.findings:
            if bf.id not in findings and applies(bf.id) and bf.p.get(band, 0.0) > 0:
                findings[bf.id] = bool(rng.random() < bf.p[band])
        tests = {
            t.id: _result(t, cond, age, sex, rng)
            for t in kb.tests.values()
            if t.applies is None or t.applies.admits(age, sex)
        }
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


def _result(
    t: LabTest, cond: Condition, age: int, sex: str, rng: np.random.Generator
) -> TestOutcome:
    """One test's result for this patient: abnormal with the member's sensitivity, or falsely
    abnormal with 1 - specificity; numeric values are flagged against the patient's range."""
    spec = next((r for r in cond.tests if r.id == t.id), None)
    ref = t.reference(age, sex)
    if spec is not None:
        abnormal = bool(rng.random() < spec.p)
        if ref is None:
            return TestOutcome(abnormal=abnormal, text=spec.text if abnormal else t.normal_text)
        if abnormal and spec.value is not None:
            value = _uniform(rng, spec.value, t.decimals)
        else:
            value = _uniform(rng, ref, t.decimals, shrink=0.1)
        return TestOutcome(abnormal=_outside(value, ref), value=value)
    false_positive = bool(rng.random() < 1 - t.specificity)
    if ref is None:
        if false_positive:
            return TestOutcome(abnormal=True, text=t.false_positive_text)
        return TestOutcome(abnormal=False, text=t.normal_text)
    if not false_positive:
        return TestOutcome(abnormal=False, value=_uniform(rng, ref, t.decimals, shrink=0.1))
    lo, hi = ref
    width = max(hi - lo, 10.0**-t.decimals)
    step = 10.0**-t.decimals
    if t.abnormal_side == "low" and lo > 0:
        bounds = (max(lo - 0.25 * width, 0.0), lo - step)
    else:
        bounds = (hi + step, hi + 0.25 * width)
    value = _uniform(rng, (min(bounds), max(bounds)), t.decimals)
    return TestOutcome(abnormal=_outside(value, ref), value=value)


def _outside(value: float, ref: tuple[float, float]) -> bool:
    return not ref[0] <= value <= ref[1]


def make_sampler(
    kb: KnowledgeBase,
    weighting: str = "presentation",
    *,
    settings: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> CaseSampler:
    """The sampler a run's `weighting` names: 'presentation' (presentation-first, the default),
    or the condition-first 'balanced' and 'population' samplers of earlier suite versions."""
    if weighting == "presentation":
        return PresentationSampler(kb, settings=settings, conditions=conditions)
    if weighting not in ("balanced", "population"):
        raise CaseError(
            f"unknown weighting '{weighting}'; use 'presentation', 'balanced' or 'population'"
        )
    return CaseSampler(kb, weighting=weighting, settings=settings, conditions=conditions)  # type: ignore[arg-type]


def default_sampler(kb: KnowledgeBase) -> CaseSampler:
    """Presentation-first where the KB has presentations, else the balanced sampler."""
    return PresentationSampler(kb) if kb.presentations else CaseSampler(kb)
