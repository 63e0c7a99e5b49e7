"""Multi-modal artefacts: lab and variant tables, generated images, the PGx panel, and how the
env shows them as text, image or both."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from clinicgym.envs import ConsultationEnv
from clinicgym.patients.cases.artefacts import (
    IMAGE_SHAPE,
    build_artefacts,
    parse_chest_report,
    parse_head_ct_report,
    render,
    text_table,
)
from clinicgym.patients.cases.case import Artefact
from clinicgym.patients.cases.pgx import default_panel, draw, load_panel
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.chart import Chart


def _image(generator: str, report: str, seed: int = 7, size: int = 128) -> np.ndarray:
    parse = parse_chest_report if generator == "chest_radiograph" else parse_head_ct_report
    findings, _ = parse(report)
    art = Artefact(
        id="a",
        kind="image",
        concept="x",
        title="x",
        report=report,
        image={"generator": generator, "seed": seed, "size": size, "findings": findings},
    )
    return render(art)


def _zone(img: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> float:
    n = img.shape[0]
    r0, r1 = int(rows[0] * n), int(rows[1] * n)
    c0, c1 = int(cols[0] * n), int(cols[1] * n)
    return float(img[r0:r1, c0:c1].astype(float).mean())


@pytest.fixture(scope="module")
def kb():
    return default_kb()


def _case_with(kb, condition: str, pred):
    s = CaseSampler(kb, conditions=[condition])
    for i in range(60):
        c = s.sample(1, i)
        if pred(c):
            return c
    raise AssertionError(f"no {condition} case matched in 60 draws")


# ---- reports -> findings -------------------------------------------------------------------


def test_negated_and_normal_reports_give_no_findings(kb):
    assert parse_chest_report(kb.tests["chest_xray"].normal_text) == ([], [])
    assert parse_head_ct_report(kb.tests["ct_head"].normal_text) == ([], [])
    assert parse_chest_report("No focal consolidation, effusion or pneumothorax.")[0] == []


def test_side_and_zone_come_from_the_report():
    (f,), _ = parse_chest_report("Consolidation in the right lower lobe; no effusion.")
    assert f == {"kind": "consolidation", "side": "right", "zone": "lower"}
    (g,), _ = parse_chest_report("LUL consolidation")
    assert (g["side"], g["zone"]) == ("left", "upper")
    (h,), _ = parse_head_ct_report(
        "No haemorrhage; subtle loss of grey-white differentiation in the left MCA territory."
    )
    assert h["kind"] == "infarct" and h["side"] == "left" and h["subtle"]


def test_a_finding_without_a_side_is_not_drawn_and_is_listed():
    findings, not_drawn = parse_chest_report("Consolidation.")
    assert findings == [] and not_drawn == ["Consolidation"]


# ---- images -------------------------------------------------------------------------------


def test_images_are_deterministic_uint8_of_the_stated_shape():
    a = _image("chest_radiograph", "Consolidation in the right lower lobe.")
    b = _image("chest_radiograph", "Consolidation in the right lower lobe.")
    assert a.dtype == np.uint8 and a.shape == IMAGE_SHAPE
    assert np.array_equal(a, b)
    assert not np.array_equal(
        a, _image("chest_radiograph", "Consolidation in the right lower lobe.", seed=8)
    )


def test_consolidation_brightens_only_the_stated_zone():
    normal = _image("chest_radiograph", "Normal.")
    right_lower = _image("chest_radiograph", "Consolidation in the right lower lobe.")
    # the patient's right lung is on the image's left
    rll, lll = ((0.55, 0.68), (0.22, 0.38)), ((0.55, 0.68), (0.62, 0.78))
    assert _zone(right_lower, *rll) - _zone(normal, *rll) > 20
    assert abs(_zone(right_lower, *lll) - _zone(normal, *lll)) < 2
    upper = ((0.18, 0.3), (0.22, 0.38))
    assert abs(_zone(right_lower, *upper) - _zone(normal, *upper)) < 5


def test_pneumothorax_removes_lung_markings_at_the_stated_side():
    normal = _image("chest_radiograph", "Normal.")
    left = _image("chest_radiograph", "Left-sided pneumothorax with a 3 cm rim.")
    lateral_left = ((0.2, 0.6), (0.8, 0.84))  # the patient's left chest wall, image right
    assert _zone(left, *lateral_left) < _zone(normal, *lateral_left) - 8
    lateral_right = ((0.2, 0.6), (0.16, 0.2))
    assert abs(_zone(left, *lateral_right) - _zone(normal, *lateral_right)) < 2


def test_head_ct_shows_blood_in_the_cisterns_and_an_infarct_on_its_side():
    normal = _image("head_ct", "No intracranial haemorrhage, mass or infarct.")
    sah = _image("head_ct", "Hyperdense blood in the basal cisterns and both Sylvian fissures.")
    cisterns = ((0.63, 0.69), (0.45, 0.55))
    assert _zone(sah, *cisterns) - _zone(normal, *cisterns) > 60
    infarct = _image("head_ct", "Established infarct in the right MCA territory.")
    right_hemisphere, left_hemisphere = ((0.45, 0.6), (0.2, 0.33)), ((0.45, 0.6), (0.67, 0.8))
    assert _zone(infarct, *right_hemisphere) < _zone(normal, *right_hemisphere) - 15
    assert abs(_zone(infarct, *left_hemisphere) - _zone(normal, *left_hemisphere)) < 2


# ---- artefacts of a sampled case ----------------------------------------------------------


def test_a_sampled_case_carries_tables_an_image_and_a_variant_report(kb):
    case = _case_with(
        kb,
        "community_acquired_pneumonia",
        lambda c: any(f.concept == "chest_xray" and f.abnormal for f in c.facts),
    )
    by_id = {a.id: a for a in case.artefacts}
    crp = by_id["a-crp"]
    (row,) = crp.table
    assert row["unit"] == "mg/L" and row["reference"] == "0-5" and row["flag"] in ("HIGH", "")
    fact = next(f for f in case.facts if f.concept == "crp")
    assert crp.fact_ids == [fact.id] and row["result"] == f"{fact.value:.0f}"
    cxr = by_id["a-chest_xray"]
    assert cxr.kind == "image"
    assert cxr.image["findings"] == [{"kind": "consolidation", "side": "right", "zone": "lower"}]
    variants = by_id["a-genetic_testing"]
    genes = {r["gene"] for r in variants.table}
    assert {"CYP2C19", "HLA-B", "TPMT", "CYP2D6", "SLCO1B1"} <= genes
    cyp = next(r for r in variants.table if r["gene"] == "CYP2C19")
    assert "clopidogrel" in cyp["drugs"]
    assert text_table(variants).startswith("| Gene | Variant |")
    assert build_artefacts(case, kb) == case.artefacts  # a pure function of the case


def test_condition_genetics_are_reported_without_naming_the_diagnosis(kb):
    case = _case_with(kb, "cystic_fibrosis", lambda c: True)
    table = next(a for a in case.artefacts if a.kind == "variants").table
    cftr = next(r for r in table if r["gene"] == "CFTR")
    assert cftr["classification"] == "pathogenic" and cftr["zygosity"] == "homozygous"
    assert "p.Phe508del" in cftr["variant"]
    assert "cystic fibrosis" not in str(table).lower()


def test_ordering_a_test_returns_its_artefact(kb):
    case = _case_with(kb, "subarachnoid_haemorrhage", lambda c: True)
    chart = Chart(case, kb)
    assert chart.order("CT head").artefacts == ["a-ct_head"]
    assert chart.order("genetic testing").artefacts == ["a-genetic_testing"]
    assert chart.order("sodium").artefacts == ["a-sodium"]


# ---- the pharmacogenomic panel ------------------------------------------------------------


def test_every_panel_gene_is_one_the_drug_table_uses(kb):
    used = {r.gene for d in kb.drugs.values() for r in d.pharmacogenomics}
    assert {g.gene for g in default_panel().genes} <= used


def test_panel_frequencies_are_what_the_draws_give():
    panel = default_panel()
    rng = np.random.default_rng(0)
    n = 4000
    hits = sum(
        1
        for _ in range(n)
        for g, r in draw(panel, rng)
        if g.gene == "CYP2C19" and r is not None and r.id == "cyp2c19_im"
    )
    assert abs(hits / n - 0.26) < 0.03


def test_pgx_results_are_present_only_when_actionable(kb):
    case = CaseSampler(kb).sample(3, 0)
    pgx = [f for f in case.facts if (f.source or "").startswith("pgx:")]
    assert len(pgx) == len(default_panel().genes)
    for f in pgx:
        assert f.present == f.abnormal == (not f.source.endswith(".normal"))


def test_a_bad_panel_file_names_gene_result_and_field(tmp_path):
    bad = tmp_path / "pharmacogenomics.yaml"
    bad.write_text(
        "schema_version: 1\nsources: [x]\ngenes:\n"
        "  - gene: TPMT\n    normal: {genotype: '*1/*1', phenotype: normal}\n    results:\n"
        "      - {id: tpmt_im, genotype: '*1/*3A', zygosity: het, phenotype: im, frequency: 1.5,"
        " source: CPIC}\n"
        "  - gene: TPMT\n    normal: {genotype: '*1/*1', phenotype: normal}\n",
        encoding="utf-8",
    )
    with pytest.raises(KBError, match=r"gene 'TPMT', result 'tpmt_im', field 'frequency'"):
        load_panel(bad)


# ---- what the model under test sees ------------------------------------------------------


@pytest.fixture(scope="module")
def pneumonia(kb):
    return _case_with(
        kb,
        "community_acquired_pneumonia",
        lambda c: any(f.concept == "chest_xray" and f.abnormal for f in c.facts),
    )


@pytest.mark.parametrize("modality", ["text", "image", "both"])
def test_check_env_passes_in_every_modality(kb, pneumonia, modality):
    check_env(ConsultationEnv([pneumonia], kb=kb, modality=modality), skip_render_check=True)


def test_the_same_finding_as_text_image_or_both(kb, pneumonia):
    seen = {}
    for modality in ("text", "image", "both"):
        env = ConsultationEnv([pneumonia], kb=kb, modality=modality, max_turns=5)
        obs, _ = env.reset(seed=0)
        if modality != "text":
            assert env.observation_space.contains(obs) and not obs["image"].any()
        obs, _, _, _, info = env.step("ORDER: chest X-ray")
        assert env.observation_space.contains(obs)
        seen[modality] = (obs, info)
    text_obs, text_info = seen["text"]
    assert "Consolidation in the right lower lobe" in text_obs["text"]
    assert "image" not in text_obs and "image" not in text_info
    img_obs, img_info = seen["image"]
    assert "Consolidation" not in img_obs["text"] and "Image attached" in img_obs["text"]
    assert img_obs["image"].any() and np.array_equal(img_obs["image"], img_info["image"])
    both_obs, _ = seen["both"]
    assert "Consolidation in the right lower lobe" in both_obs["text"]
    assert np.array_equal(both_obs["image"], img_obs["image"])


def test_tables_are_text_in_every_modality_and_rows_in_info(kb, pneumonia):
    env = ConsultationEnv([pneumonia], kb=kb, modality="image", max_turns=5)
    env.reset(seed=0)
    env.step("ORDER: chest X-ray")
    obs, _, _, _, info = env.step("ORDER: CRP")
    assert "| Test | Result | Unit | Reference | Flag |" in obs["text"]
    assert info["table"][0]["test"] == "C-reactive protein"
    assert not obs["image"].any()  # an image is shown only on the turn it is ordered


def test_a_scenario_variant_shows_in_the_rebuilt_variant_table(kb, pneumonia):
    from clinicgym.policies import make_scenarios

    env = ConsultationEnv([pneumonia], kb=kb, scenarios=make_scenarios(["pgx_trap"], kb))
    env.reset(seed=0)
    injected = next(f for f in env.case.facts if f.source == "scenario:pgx_trap")
    gene = injected.concept.removeprefix("gene.")
    obs, *_ = env.step("ORDER: genetic testing")
    (row,) = [line for line in obs["text"].splitlines() if line.startswith(f"| {gene} |")]
    assert injected.text.removeprefix(gene).strip() in row
