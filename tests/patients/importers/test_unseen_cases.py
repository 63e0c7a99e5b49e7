"""The held-out unseen set (bench/data/unseen): its synthetic clinician-written cases import with
no problem reported, and its question bank is well formed against them (issue 18).

These are format checks on the set itself, not a measure of the patient: the patient's agreement
with the bank is measured by `clinicgym patients ask` and bench/patient_bank.py.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from clinicgym.patients.importers.external import import_cases
from clinicgym.patients.knowledge.kb import default_kb

UNSEEN = Path(__file__).resolve().parents[3] / "bench" / "data" / "unseen"
CASES = UNSEEN / "cases.jsonl"
QUESTIONS = UNSEEN / "questions.jsonl"
EXPECT = {"affirmed", "denied", "unknown", "deflected"}
KINDS = {
    "symptom",
    "history",
    "medication",
    "social",
    "family",
    "onset",
    "timing",
    "compound",
    "diagnosis",
    "not_in_record",
}


def _lines() -> list[bytes]:
    """The case file's lines as bytes, trailing newline stripped (as `case_sha` hashes them)."""
    return CASES.read_bytes().rstrip(b"\n").split(b"\n")


def _at(record: dict, field: str) -> str:
    """The text at a dotted field path under OSCE_Examination (lists joined)."""
    value = record["OSCE_Examination"]
    for key in field.split("."):
        value = value[key]
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


@pytest.mark.slow  # imports 30 written cases with the KB's linker: about 30 s on this machine
def test_every_unseen_case_imports_with_no_problem() -> None:
    report = import_cases(CASES, default_kb())
    assert not report.problems, [str(p) for p in report.problems]
    assert len(report.cases) == len(_lines()) == 30


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]


def test_every_question_names_an_existing_case_and_a_valid_expect(rows: list[dict]) -> None:
    lines = _lines()
    records = [json.loads(line) for line in lines]
    assert len({r["id"] for r in rows}) == len(rows)
    assert Counter(r["case"] for r in rows) == {i: 10 for i in range(len(lines))}
    for r in rows:
        where = r["id"]
        assert isinstance(r["case"], int) and 0 <= r["case"] < len(lines), where
        assert hashlib.sha256(lines[r["case"]]).hexdigest()[:12] == r["case_sha"], where
        assert r["id"].startswith(f"{r['case']}-"), where
        assert r["expect"] in EXPECT, where
        assert r["kind"] in KINDS and r["wording"] in {"clinical", "lay"}, where
        assert ("expect_second" in r) == (r["kind"] == "compound"), where
        if "expect_second" in r:
            assert r["expect_second"] in EXPECT - {"deflected"}, where
        record = records[r["case"]]
        if r["expect"] == "deflected":
            assert r["fact"] == "" and r["field"] == "Correct_Diagnosis", where
            assert record["OSCE_Examination"]["Correct_Diagnosis"] in r["question"], where
            continue
        if r["expect"] == "unknown":
            assert r["fact"] == "" and r["field"] == "", where
            continue
        parts = r["fact"].split(" | ")
        fields = r["field"].split(" | ")
        fields = fields * len(parts) if len(fields) == 1 else fields
        assert all(parts) and len(fields) == len(parts), where
        for part, field in zip(parts, fields, strict=True):
            assert field.startswith("Patient_Actor."), where  # history only
            assert part in _at(record, field), (where, part, field)


def test_the_bank_keeps_its_mix(rows: list[dict]) -> None:
    """One deflection per case and every expectation represented: a bank of one kind measures little."""
    by = Counter(r["expect"] for r in rows)
    assert by["deflected"] == 30
    assert min(by["affirmed"], by["denied"], by["unknown"]) >= 30
    assert sum(r["wording"] == "lay" for r in rows) >= len(rows) * 0.4
