"""The history wordings a generated case can hold (patients/cases/realise.py `history_wordings`), and
the encoder's cache filled from embeddings computed earlier (`SentenceEncoder.remember`): what
lets a run embed those texts once, before its workers fork, instead of case by case in every
process (scoring's fault look-up, issue 22)."""

from __future__ import annotations

import numpy as np
import pytest

from clinicgym.patients.cases.presentation import make_sampler
from clinicgym.patients.cases.realise import history_wordings
from clinicgym.patients.patient.encoder import SentenceEncoder
from clinicgym.scoring.patient_fidelity import _ASKED_CATEGORIES


def test_every_history_finding_of_a_generated_case_is_worded_as_listed(small_kb):
    listed = set(history_wordings(small_kb))
    assert len(listed) == len(history_wordings(small_kb))  # once each
    seen = 0
    for case in make_sampler(small_kb).sample_many(40, 3):
        for f in case.facts:
            if (f.source or "").startswith("kb:findings.") and f.category != "exam":
                assert f.text in listed, (case.id, f.concept, f.text)
                seen += 1
    assert seen > 200


def test_most_facts_the_fault_look_up_embeds_are_listed(small_kb):
    listed = set(history_wordings(small_kb))
    texts = [
        f.text
        for case in make_sampler(small_kb).sample_many(40, 3)
        for f in case.facts
        if f.category in _ASKED_CATEGORIES and f.text.strip()
    ]
    assert sum(t in listed for t in texts) / len(texts) > 0.8


def test_remembered_embeddings_are_used_without_a_forward_pass():
    enc = SentenceEncoder()
    texts = ["No cough.", "I've had a fever for three days."]
    vecs = enc._forward(texts)
    fresh = SentenceEncoder()
    fresh.remember(texts, vecs)
    got = fresh.encode([texts[1], texts[0], texts[1]])
    assert fresh.calls == 0
    assert np.array_equal(got, vecs[[1, 0, 1]])
    with pytest.raises(ValueError):
        fresh.remember(texts, vecs[:1])


def test_remembering_keeps_the_cache_bounded():
    enc = SentenceEncoder(cache_size=3)
    texts = [f"text {i}" for i in range(5)]
    enc.remember(texts, np.zeros((5, enc.dim), dtype=np.float32))
    assert list(enc._cache) == texts[-3:]
