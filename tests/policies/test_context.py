"""What checks read about the episode: drug resolution and views of the case."""

from __future__ import annotations

from policy_helpers import make_case

from clinicgym.policies.context import EpisodeContext, drug_index


def test_drugs_resolve_by_name_synonym_and_with_a_dose(policy_kb) -> None:
    idx = drug_index(policy_kb)
    assert idx.resolve("Amoxicillin 500 mg tds").id == "amoxicillin"
    assert idx.resolve("albuterol inhaler").id == "salbutamol"
    assert idx.resolve("salbutamol inhaler 2 puffs").id == "salbutamol"
    assert idx.resolve("please start cephalexin").id == "cefalexin"
    assert idx.resolve("unobtainium 5 mg") is None


def test_case_views(policy_kb) -> None:
    case = make_case(
        policy_kb,
        allergies=("penicillin",),
        meds=("simvastatin", "not_a_kb_drug"),
        pmh=("chronic_kidney_disease",),
        genes={"CYP2C19": "*2/*2"},
    )
    ctx = EpisodeContext(case, policy_kb)
    assert ctx.allergies == {"penicillin"}
    assert ctx.medications == {"simvastatin"}
    assert ctx.renal_impairment and ctx.genes == {"CYP2C19": "CYP2C19 *2/*2"}
    assert case.phi.name in ctx.identifiers["name"]
