"""The cohort generation job (patients/cohorts/job.py): every option typed, every cheap argument
checked before anything is fitted (issue 20: `--balance` used to fail after 21.7 s of fitting),
and `generate_cohort` reporting progress through a callback and returning what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sdv", reason="needs the 'cohorts' extra (sdv is not installed)")

from clinicgym.errors import ClinicGymError
from clinicgym.patients.cohorts.job import CohortJob, KBSeed, generate_cohort
from clinicgym.patients.cohorts.synthesis import CohortSynthesizer
from clinicgym.patients.importers.seeds import SeedSource

SMALL_KB = Path(__file__).parents[2] / "data" / "kb_small"


@pytest.fixture
def no_fit(monkeypatch):
    """Fitting is the expensive step: any test using this fails if it is reached."""

    def fit(self, table):
        raise AssertionError("fitted before the arguments were checked")

    monkeypatch.setattr(CohortSynthesizer, "fit", fit)


def _job(tmp_path: Path, **kw) -> CohortJob:
    kw.setdefault("kb_seed", KBSeed(rows=240))
    return CohortJob(out=tmp_path / "c", kb_dir=SMALL_KB, n=60, seed=2, **kw)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"balance": "sex=female"}, "--balance: 'female' in 'sex=female' is not VALUE:SHARE"),
        ({"balance": "colour"}, "--balance: unknown attribute 'colour'"),
        ({"where": ["sex"]}, "--where 'sex': expected COLUMN=VALUE, e.g. sex=female"),
        ({"where": ["colour=red"]}, "--where: unknown column 'colour'"),
        ({"where": ["age=old"]}, "--where age: 'old' is not a number"),
        ({"conditions": ["scurvy"]}, "--condition: unknown KB condition id 'scurvy'"),
        ({"synthesizer": "bayesnet"}, "--synthesizer 'bayesnet': allowed: gaussian_copula"),
        ({"holdout": 0.95}, "--holdout must lie between 0 and 0.9, got 0.95"),
        ({"epochs": 5}, "--epochs/--batch-size apply to ctgan and tvae only"),
        ({"synthesizer": "ctgan", "epochs": 0}, "--epochs 0: Input should be greater than"),
    ],
)
def test_cheap_arguments_fail_on_construction(tmp_path, no_fit, options, message):
    with pytest.raises(ClinicGymError) as e:
        _job(tmp_path, **options)
    assert message in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_fails_unless_overwrite(tmp_path, no_fit):
    (tmp_path / "c").mkdir()
    with pytest.raises(ClinicGymError, match="already exists; choose another --out or pass"):
        _job(tmp_path)
    assert _job(tmp_path, overwrite=True).overwrite


def test_options_are_typed(tmp_path, no_fit):
    job = _job(
        tmp_path,
        balance="sex=female:0.6/male:0.4,age_band",
        where=["sex=female", "age=40"],
        conditions=["migraine_without_aura"],
        source=SeedSource.from_options({"csv": tmp_path / "seed.csv"}, mapping=("age=AGE",)),
    )
    assert job.balance == {"sex": {"female": 0.6, "male": 0.4}, "age_band": None}
    assert job.where == {"sex": ["female"], "age": ["40"]}
    assert job.filters() == {
        "sex": ["female"],
        "age": [40.0],
        "condition_id": ["migraine_without_aura"],
    }
    assert job.source is not None and job.source.kind == "csv"


def test_an_impossible_mix_fails_after_reading_the_seed_but_before_fitting(tmp_path, no_fit):
    """What needs the seed's rows (a balance value the seed lacks, an impossible floor) is
    planned before the fit, so it fails in the time it takes to read the seed."""
    job = _job(tmp_path, balance="sex=female:0.5/other:0.5")
    stages: list[str] = []
    with pytest.raises(ClinicGymError, match="--balance sex: value 'other' has no seed rows"):
        generate_cohort(job, progress=lambda stage, done, total: stages.append(stage))
    assert set(stages) == {"reading the seed"}
    with pytest.raises(ClinicGymError, match=r"--rare-floor 0.6 x 3 conditions = 1.80 > 1"):
        generate_cohort(_job(tmp_path, rare_floor=0.6))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_generate_cohort_reports_progress_and_returns_what_it_wrote(tmp_path):
    calls: list[tuple[str, int, int | None]] = []
    job = _job(tmp_path, balance="sex")
    result = generate_cohort(job, progress=lambda *a: calls.append(a))
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["reading the seed", "fitting gaussian_copula", "sampling (KB-checked)"]
    assert calls[-1] == ("sampling (KB-checked)", 60, 60)
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert result.out == tmp_path / "c" and result.counts == manifest["counts"]
    assert result.counts["kept"] == 60 and result.notes == []
    assert manifest["split"] == {"train": 192, "holdout": 48}
    assert manifest["source"] == {**manifest["source"], "kind": "kb", "rows": 240, "kb_seed": 2}
