"""Diagnosis matching: code, name and synonyms, insensitive to case and punctuation, not gameable."""

from __future__ import annotations

import pytest

from clinicgym.patients.case import Diagnosis
from clinicgym.scoring.diagnosis import matches, rank_of

DX = Diagnosis(
    code="I21.4", name="Non-ST elevation myocardial infarction", synonyms=["NSTEMI", "heart attack"]
)


@pytest.mark.parametrize(
    "guess",
    [
        "I21.4",
        "i214",
        "I21",
        "non-ST-elevation myocardial infarction",
        "NON ST ELEVATION MYOCARDIAL INFARCTION.",
        "nstemi",
        "Heart attack",
        "acute NSTEMI",
        "likely heart attack",
    ],
)
def test_accepted(guess):
    assert matches(guess, DX)


@pytest.mark.parametrize(
    "guess",
    [
        "I20",
        "I",
        "I21.9",
        "angina",
        "",
        "STEMI",
        "pneumonia / NSTEMI",
        "heart attack or pulmonary embolism",
        "NSTEMI, PE, pneumonia, aortic dissection",
        "possibly a heart attack but could be many other things entirely",
    ],
)
def test_rejected(guess):
    assert not matches(guess, DX)


def test_rank():
    assert rank_of(["angina", "NSTEMI"], DX) == 2
    assert rank_of(["angina"], DX) is None
