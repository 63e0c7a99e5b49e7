"""Grounding: the clinician's claims about the patient checked against the record."""

from __future__ import annotations

from clinicgym.scoring.grounding import claims


def test_claims_of_presence_and_absence_against_the_record(sampler, play):
    case = sampler.sample(0, 0)  # migraine: nausea present, no fever, no cough (closed world)
    assert any(f.concept == "nausea" and f.present for f in case.facts)
    ep, c = play(
        case,
        [
            "Given your nausea, I think this is a migraine. You have a high fever too.",
            "You don't have a cough, which is reassuring.",
            "Do you have a fever?",  # a question, not a claim
            "DIAGNOSIS: migraine",
        ],
    )
    got = {(x.concept, x.present): x.supported for x in claims(ep, c, sampler.kb)}
    assert got[("nausea", True)] is True
    assert got[("fever", True)] is False
    assert got[("cough", False)] is True
    assert len(got) == 3


def test_claims_must_be_about_the_patient(sampler, play):
    case = sampler.sample(0, 0)
    ep, c = play(case, ["Fever is common in winter.", "DIAGNOSIS: migraine"])
    assert claims(ep, c, sampler.kb) == []


def test_metric_counts_unsupported_claims(sampler, play):
    from clinicgym.scoring.metrics import episode_metrics

    case = sampler.sample(0, 0)
    ep, c = play(case, ["Your fever and your cough worry me.", "DIAGNOSIS: migraine"])
    m = episode_metrics(ep, c, sampler.kb)
    assert m["claims"] == 2 and m["ungrounded_claims"] == 2 and m["ungrounded_claim_rate"] == 1
