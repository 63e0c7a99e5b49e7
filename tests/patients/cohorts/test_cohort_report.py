"""The cohort report: privacy measures behave as their definitions say; a real report on a small
cohort holds every section; cohorts of different seeds cannot be compared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clinicgym.patients.cohorts.cohort import (
    Cohort,
    CohortManifest,
    CohortSchema,
    SourceInfo,
    write_cohort,
)
from clinicgym.patients.cohorts.cohort_report import (
    auc,
    compare,
    encode,
    nearest,
    privacy,
    remix,
    write_report,
)
from clinicgym.patients.cohorts.synthesis import (
    CohortSynthesizer,
    generate,
    parse_balance,
    plan_sampling,
)
from clinicgym.patients.errors import CohortError


def test_auc_and_nearest():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    a = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    assert np.allclose(nearest(a, b), [1.0, 4.0])


def test_auc_counts_pairs_and_ties_as_mann_whitney_does():
    # 9 member/non-member pairs: 0.9 and 0.8 beat all three, 0.4 beats two -> 8/9
    assert auc(np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.3, 0.2])) == pytest.approx(8 / 9)
    # 0.7 beats both, the tie 0.5 = 0.5 counts a half, 0.5 < 0.6: (1 + 1 + 0.5 + 0) / 4
    assert auc(np.array([0.7, 0.5]), np.array([0.5, 0.6])) == pytest.approx(0.625)


def test_nearest_puts_an_exact_copy_at_distance_zero():
    # the float32 expansion |x|^2 + |y|^2 - 2xy used before put copies up to ~1e-3 away
    rng = np.random.default_rng(0)
    b = rng.random((500, 40)).astype(np.float32) * 3
    d = nearest(b[:50], b)
    assert d.shape == (50,) and float(d.max()) < 1e-6
    rest = np.delete(b, np.arange(50, 60), 0)  # ten rows against the others, copies left out
    brute = np.sqrt(((b[50:60, None, :] - rest[None, :, :]) ** 2).sum(-1)).min(1)
    assert np.allclose(nearest(b[50:60], rest), brute)


@pytest.fixture(scope="module")
def schema(small_kb):
    return CohortSchema.for_kb(small_kb)


@pytest.fixture(scope="module")
def seed(schema, sampler):
    return schema.table([sampler.sample_record(np.random.default_rng([8, i])) for i in range(500)])


def test_privacy_flags_a_copying_synthesizer(schema, seed):
    train, holdout = seed.iloc[:400], seed.iloc[400:]
    leaky = schema.normalise(train.drop(columns="patient_id"))
    fresh = schema.normalise(holdout.drop(columns="patient_id"))
    t = schema.normalise(train.drop(columns="patient_id"))
    bad = privacy(t, fresh, leaky, schema)
    assert bad["exact_copy_rate"] == 1.0
    assert bad["dcr_synthetic_to_train"]["median"] == 0.0
    assert bad["membership_inference_auc"] > 0.9  # members sit at distance 0
    # unseen rows from the same distribution look like the holdout: no leak
    other = schema.normalise(seed.iloc[400:450].drop(columns="patient_id"))
    ok = privacy(t, fresh.iloc[50:], other, schema)
    assert ok["exact_copy_rate"] == 0.0 and ok["dcr_synthetic_to_train"]["median"] > 0


def test_encode_is_bounded(schema, seed):
    x = encode(seed, seed, schema)
    assert x.shape[0] == len(seed) and np.isfinite(x).all() and x.min() >= -1e-6


def test_remix_follows_the_plan(schema, seed):
    plan = plan_sampling(200, seed, schema, balance=parse_balance("sex")).model_dump()
    mixed = remix(seed, plan, 200)
    assert len(mixed) == 200 and mixed["sex"].value_counts().to_dict() == {
        "female": 100,
        "male": 100,
    }


def _cohort(root, schema, seed, *, balance=None, fit_rows=400, name="c"):
    train, holdout = seed.iloc[:fit_rows], seed.iloc[fit_rows:]
    synth = CohortSynthesizer(schema).fit(train)
    plan = plan_sampling(300, train, schema, balance=parse_balance(balance) if balance else None)
    table, stats = generate(synth, plan, seed=1, train=train)
    manifest = CohortManifest(
        cohort_id=name,
        created="now",
        clinicgym_version="0",
        sdv_version="2",
        kb_version=schema.kb.version,
        source=SourceInfo(kind="kb", rows=len(seed)),
        synthesizer={"name": "gaussian_copula", "fit_seconds": 1.0},
        seed=1,
        split={"train": len(train), "holdout": len(holdout)},
        plan=plan.model_dump(mode="json"),
        counts=stats.to_dict(),
    )
    write_cohort(
        root / name,
        manifest=manifest,
        table=table,
        train=train,
        holdout=holdout,
        save_synthesizer=synth.save,
    )
    return Cohort.open(root / name, schema.kb)


@pytest.mark.integration
def test_report_on_a_balanced_cohort(schema, seed, tmp_path):
    cohort = _cohort(tmp_path, schema, seed, balance="sex")
    jpath, hpath, r = write_report(cohort)
    on_disk = json.loads(jpath.read_text())
    assert on_disk["cohort_id"] == "c" and on_disk["fidelity"] == r["fidelity"]
    assert 0.5 < r["fidelity"]["quality_score"] <= 1 and r["fidelity"]["diagnostic_score"] == 1.0
    assert r["fidelity_vs_target_mix"]["quality_score"] > 0.5
    assert r["privacy"]["exact_copy_rate"] == 0.0
    assert 0.3 < r["privacy"]["membership_inference_auc"] < 0.7
    sex = r["fairness"]["attributes"]["sex"]
    assert sex["cohort"] == {"female": 0.5, "male": 0.5} and sex["max_gap_points"] == 0.0
    assert r["clinical_validity"]["kb_consistent_share"] == 1.0
    assert (
        r["clinical_validity"]["realised_cases"] == 200
        and not r["clinical_validity"]["realisation_errors"]
    )
    html = hpath.read_text()
    assert (
        html.count("data:image/png;base64,") >= 6
        and "Membership" not in html.split("<h2>Privacy")[0]
    )


@pytest.mark.integration
def test_compare_refuses_different_seeds_before_reporting(schema, seed, tmp_path):
    a = _cohort(tmp_path, schema, seed, name="a")
    c = _cohort(tmp_path, schema, seed, fit_rows=350, name="other")
    with pytest.raises(CohortError, match="cannot compare cohorts fitted on different seeds"):
        compare([a, c], tmp_path / "cmp")
    assert not (a.root / "report.json").exists() and not (tmp_path / "cmp").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_compare_two_cohorts_of_one_seed(schema, seed, tmp_path):
    a = _cohort(tmp_path, schema, seed, name="a")
    b = _cohort(tmp_path, schema, seed, name="b")
    jpath, hpath, result = compare([a, b], tmp_path / "cmp")
    assert [c["cohort_id"] for c in result["cohorts"]] == ["a", "b"] and hpath.exists()
    assert json.loads(jpath.read_text())["seed_fingerprint"] == result["seed_fingerprint"]
    assert (a.root / "report.html").exists() and (b.root / "report.html").exists()
