"""The record ceiling: what a generated case's whole record points to (bench/validity.py)."""

from __future__ import annotations

import numpy as np

from clinicgym.patients.cases.posterior import Belief, model_for, record_verdict
from clinicgym.patients.cases.presentation import PresentationSampler
from clinicgym.patients.knowledge.kb import default_kb


def test_the_whole_record_decides_far_more_cases_than_the_opening() -> None:
    """Every finding, examination and test in, the generator's own model names the truth in most
    cases; from the opening alone, in few. If the verdict ignored tests or findings, or read the
    truth, these bounds would fail."""
    kb = default_kb()
    sampler = PresentationSampler(kb)
    m = model_for(kb)
    n, whole, opening = 30, 0, 0
    for i in range(n):
        r = sampler.sample_record(np.random.default_rng([0, i]))
        whole += record_verdict(kb, r) == r.condition_id
        start = Belief.start(m, r.age, r.sex, r.setting, r.chief_complaint)
        opening += start.top(1)[0][0] == r.condition_id
    assert whole >= 0.8 * n
    assert opening <= 0.5 * n


def test_a_record_with_every_finding_and_test_negative_is_not_read_as_its_condition() -> None:
    """The verdict follows the record, not the condition it was drawn from."""
    kb = default_kb()
    sampler = PresentationSampler(kb)
    changed = 0
    for i in range(10):
        r = sampler.sample_record(np.random.default_rng([1, i]))
        truth = record_verdict(kb, r)
        blank = r.model_copy(
            update={
                "findings": {f: f == r.chief_complaint for f in r.findings},
                "tests": {t: o.model_copy(update={"abnormal": False}) for t, o in r.tests.items()},
            }
        )
        changed += record_verdict(kb, blank) != truth
    assert changed >= 3
