"""The question bank: the embedded patient answers paraphrased questions from the record."""

from __future__ import annotations

import pytest

from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.question_bank import evaluate_bank, load_bank


def test_bank_is_valid_and_large_enough():
    bank = load_bank(default_kb())
    assert bank.size() >= 200 and len(bank.findings) >= 50


@pytest.mark.slow
def test_embedded_patient_answers_at_least_90_percent_and_never_leaks():
    r = evaluate_bank(default_kb(), n_cases=20, seed=0)
    assert r.cases >= 20 and r.questions >= 300
    assert r.answer_accuracy >= 0.9, r.failures[:10]
    assert r.leaks == 0
    assert {"affirmed", "denied", "unknown"} <= set(r.by_expected)


def test_bank_errors_name_the_concept(tmp_path):
    bad = tmp_path / "bank.yaml"
    bad.write_text(
        "schema_version: 1\nfindings: {not_a_finding: ['Any?']}\nintents: {telepathy: ['x']}\n"
    )
    with pytest.raises(KBError) as e:
        load_bank(default_kb(), bad)
    assert "'not_a_finding' is not a KB history finding" in str(e.value)
    assert "'telepathy' is not a patient intent" in str(e.value)
