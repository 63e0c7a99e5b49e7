"""Seeded case sampling over the KB: demographics -> condition -> findings -> Case.

Two steps, kept apart so synthetic cohorts (SDV) can reuse the second:
`sample_record` draws a flat `PatientRecord` (what is true of the patient), and `realise` turns a
record into a `Case` (fact wording, pertinent negatives, vitals and test reports, synthetic PHI,
persona, lineage). Same (seed, index): the same case, whatever else was sampled before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from clinicgym.patients.cases.case import Case, Lineage
from clinicgym.patients.cases.realise import Records, realise, realise_draws
from clinicgym.patients.cases.record import PatientRecord, TestOutcome
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.bands import AGE_BANDS, POPULATION_AGE_BANDS, age_band
from clinicgym.patients.knowledge.kb import Condition, KnowledgeBase, default_kb, name_pattern

ETHNICITIES = {
    "White": 0.58,
    "Hispanic": 0.19,
    "Black": 0.12,
    "Asian": 0.06,
    "Mixed or other": 0.05,
}
"""US Census 2020 shares (rounded); demographic only, it never changes a fact."""
Weighting = Literal["balanced", "population"]


class CaseSampler:
    """Draws cases from the KB; `weighting='balanced'` gives every condition an equal chance."""

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        *,
        weighting: Weighting = "balanced",
        settings: Sequence[str] | None = None,
        conditions: Sequence[str] | None = None,
    ) -> None:
        self.kb = kb or default_kb()
        self.weighting = weighting
        pool = list(self.kb.conditions.values())
        if settings:
            pool = [c for c in pool if set(c.settings) & set(settings)]
        if conditions:
            unknown = sorted(set(conditions) - set(self.kb.conditions))
            if unknown:
                raise CaseError(
                    f"unknown condition id(s) {unknown}; see `clinicgym kb list` for the KB's ids"
                )
            pool = [c for c in pool if c.id in set(conditions)]
        if not pool:
            raise CaseError(f"no KB condition matches settings={settings} conditions={conditions}")
        self.pool = sorted(pool, key=lambda c: c.id)

    # ---- step 1: what is true -------------------------------------------------------------

    def sample_record(self, rng: np.random.Generator) -> PatientRecord:
        """Demographics and condition, then findings, vitals and tests given the condition."""
        if self.weighting == "balanced":
            cond = self.pool[int(rng.integers(len(self.pool)))]
            age, sex = self._demographics_for(cond, rng)
        else:
            cond, age, sex = self._population_draw(rng)
        return self.record_for(cond, age, sex, rng)

    def record_for(
        self, cond: Condition, age: int, sex: str, rng: np.random.Generator
    ) -> PatientRecord:
        """The findings, vitals, tests and background of a patient known to have `cond`."""
        kb = self.kb
        findings = {link.id: bool(rng.random() < link.p) for link in cond.findings}
        weights = np.array(
            [next(f.p for f in cond.findings if f.id == cc) for cc in cond.chief_complaint]
        )
        cc = cond.chief_complaint[int(rng.choice(len(weights), p=weights / weights.sum()))]
        findings[cc] = True
        for fid in self.pertinent_negatives(cond, age, sex):
            findings.setdefault(fid, False)
        band = age_band(age)
        for bf in kb.background.findings:
            if bf.id not in findings:
                findings[bf.id] = bool(rng.random() < bf.p.get(band, 0.0))
        vitals = self._vitals(cond, band, rng)
        tests: dict[str, TestOutcome] = {}
        abnormal = {t.id: t for t in cond.tests}
        for test in kb.tests.values():
            spec = abnormal.get(test.id)
            if spec is not None and rng.random() < spec.p:
                value = uniform_draw(rng, spec.value, test.decimals) if spec.value else None
                tests[test.id] = TestOutcome(abnormal=True, value=value, text=spec.text)
            else:
                value = (
                    uniform_draw(rng, test.normal, test.decimals, shrink=0.1)
                    if test.normal
                    else None
                )
                tests[test.id] = TestOutcome(abnormal=False, value=value, text=test.normal_text)
        return PatientRecord(
            age=age,
            sex=sex,  # type: ignore[arg-type]
            condition_id=cond.id,
            chief_complaint=cc,
            findings=findings,
            vitals=vitals,
            tests=tests,
            **self.background(cond, age, rng),
        )

    def background(self, cond: Condition, age: int, rng: np.random.Generator) -> dict[str, Any]:
        """Comorbidities (never the condition itself or one naming it), drug allergies,
        ethnicity and insurance: what a patient carries whatever brought them in."""
        kb, band = self.kb, age_band(age)
        leak = name_pattern([cond.name, *cond.synonyms])
        comorbidities = [
            c.id
            for c in kb.background.comorbidities
            if rng.random() < c.p.get(band, 0.0)
            and c.id != cond.id
            and not (leak and (leak.search(c.name) or leak.search(c.text)))
        ]
        allergies = [a.group for a in kb.background.allergies if rng.random() < a.p]
        ethnicity = str(rng.choice(list(ETHNICITIES), p=_norm(ETHNICITIES.values())))
        return {
            "comorbidities": comorbidities,
            "allergies": allergies,
            "ethnicity": ethnicity,
            "insurance": _insurance(age, rng),
        }

    def pertinent_negatives(self, cond: Condition, age: int, sex: str) -> list[str]:
        """Must-ask findings of the look-alikes this patient could have: denied unless the
        condition itself has them (a hook shared with cohort decoding,
        patients/cohorts/cohort.py)."""
        out: list[str] = []
        for d in cond.differential:
            other = self.kb.conditions[d]
            if other.sex not in ("any", sex) or not other.age[0] <= age <= other.age[1]:
                continue  # a look-alike this patient cannot have raises no pertinent negatives
            out += [link.id for link in other.findings if link.salience == "must_ask"]
        return out

    def _demographics_for(self, cond: Condition, rng: np.random.Generator) -> tuple[int, str]:
        bands = [b for b, w in cond.prevalence.age_bands.items() if w > 0]
        w = np.array([cond.prevalence.age_bands[b] for b in bands])
        band = bands[int(rng.choice(len(bands), p=w / w.sum()))]
        lo = max(AGE_BANDS[band][0], cond.age[0])
        hi = min(AGE_BANDS[band][1], cond.age[1])
        age = int(rng.integers(lo, hi + 1))
        if cond.sex != "any":
            return age, cond.sex
        sw = cond.prevalence.sex
        p_female = sw.get("female", 0.0) / (sw.get("female", 0.0) + sw.get("male", 0.0))
        return age, "female" if rng.random() < p_female else "male"

    def _population_draw(self, rng: np.random.Generator) -> tuple[Condition, int, str]:
        for _ in range(1000):
            band = str(
                rng.choice(list(POPULATION_AGE_BANDS), p=_norm(POPULATION_AGE_BANDS.values()))
            )
            lo, hi = AGE_BANDS[band]
            age = int(rng.integers(lo, hi + 1))
            sex = "female" if rng.random() < 0.5 else "male"
            options = [
                c for c in self.pool if c.age[0] <= age <= c.age[1] and c.sex in ("any", sex)
            ]
            w = np.array(
                [
                    c.prevalence.age_bands.get(band, 0.0) * c.prevalence.sex.get(sex, 0.0)
                    for c in options
                ]
            )
            if options and w.sum() > 0:
                return options[int(rng.choice(len(options), p=w / w.sum()))], age, sex
        raise CaseError("population weighting found no condition for 1000 draws; check prevalences")

    def _vitals(self, cond: Condition, band: str, rng: np.random.Generator) -> dict[str, float]:
        out: dict[str, float] = {}
        for v in self.kb.vitals.values():
            rng_range = cond.vitals.get(v.id)
            if rng_range is not None:
                out[v.id] = uniform_draw(rng, rng_range, v.decimals)
            else:
                out[v.id] = uniform_draw(rng, v.normal[band], v.decimals, shrink=0.1)  # type: ignore[index]
        if "systolic_bp" in out and "diastolic_bp" in out:
            out["diastolic_bp"] = min(out["diastolic_bp"], out["systolic_bp"] - 20)
        return out

    # ---- step 2: how it is told ----------------------------------------------------------

    def realise(
        self,
        record: PatientRecord,
        *,
        case_id: str,
        seed: int,
        rng: np.random.Generator,
        lineage: Lineage | None = None,
    ) -> Case:
        """Turn a record into a Case (patients/cases/realise.py): worded facts, synthetic PHI,
        persona and pharmacogenomic results drawn from `rng`, lineage."""
        records = Records.from_records(self.kb, [record])
        draws = rng.random((1, realise_draws()))
        table = realise(records, [case_id], draws, lineage and (lambda _: lineage), seed=seed)
        return table[0]

    # ---- the whole thing ------------------------------------------------------------------

    def sample(self, seed: int, index: int = 0, *, prefix: str = "kb") -> Case:
        """Case `index` of the stream for `seed`: independent of how many others were drawn."""
        rng = np.random.default_rng([seed, index])
        record = self.sample_record(rng)
        case = self.realise(record, case_id=f"{prefix}{seed}-{index:04d}", seed=seed, rng=rng)
        case.lineage.index = index
        return case

    def sample_many(self, n: int, seed: int, *, prefix: str = "kb") -> list[Case]:
        """The first `n` cases of the stream for `seed`."""
        return [self.sample(seed, i, prefix=prefix) for i in range(n)]


def uniform_draw(
    rng: np.random.Generator, bounds: tuple[float, float], decimals: int, shrink: float = 0.0
) -> float:
    """A value drawn uniformly within `bounds` (narrowed by `shrink` of their width at each
    end), rounded to `decimals`."""
    lo, hi = bounds
    pad = (hi - lo) * shrink
    return round(float(rng.uniform(lo + pad, hi - pad)), decimals)


def _norm(weights: object) -> np.ndarray:
    w = np.array(list(weights), dtype=float)  # type: ignore[call-overload]
    return w / w.sum()


def _insurance(age: int, rng: np.random.Generator) -> str:
    if age >= 65:
        options, p = ["Medicare", "Medicare + private"], [0.7, 0.3]
    elif age < 18:
        options, p = ["Private", "Medicaid/CHIP", "Uninsured"], [0.55, 0.4, 0.05]
    else:
        options, p = ["Private", "Medicaid", "Uninsured"], [0.66, 0.22, 0.12]
    return str(rng.choice(options, p=p))
