"""`clinicgym cohort ...` end to end on the small KB: generate, run on a cohort, target a run's
failures, reuse a saved synthesizer, export to FHIR; bad input fails cleanly, writing nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"
DATA = Path(__file__).parents[1] / "patients" / "data"
runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _gen(out: Path, *extra: str) -> tuple[int, str]:
    return _cli(
        "cohort",
        "generate",
        "--kb",
        SMALL_KB,
        "--n",
        "60",
        "--seed-rows",
        "240",
        "--seed",
        "2",
        "--out",
        out,
        "-q",
        *extra,
    )


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohorts") / "c1"
    code, output = _gen(out, "--balance", "sex")
    assert code == 0, output
    return out


@pytest.mark.integration
def test_generate_writes_a_complete_cohort(cohort_dir):
    manifest = json.loads((cohort_dir / "manifest.json").read_text())
    assert manifest["synthesizer"]["name"] == "gaussian_copula"
    assert manifest["counts"]["kept"] == 60 and manifest["split"] == {"train": 192, "holdout": 48}
    assert manifest["plan"]["balance"] == {"sex": {"female": 0.5, "male": 0.5}}
    for f in ("records.parquet", "metadata.json", "synthesizer.pkl", "seed/train.parquet"):
        assert f in manifest["files"] and (cohort_dir / f).exists()


@pytest.mark.integration
def test_run_on_a_cohort(cohort_dir, tmp_path):
    spec = RunSpec(
        agents=["scripted"],
        cases=4,
        seed=1,
        kb_dir=str(SMALL_KB),
        cohort=str(cohort_dir),
        out=tmp_path / "r",
    )
    ctx = prepare(spec)
    assert [c.id for c in ctx.cases][:2] == ["c1-p000000", "c1-p000001"]
    lineage = ctx.cases[0].lineage
    assert lineage.source == "sdv:gaussian_copula" and lineage.seed == 2 and lineage.index == 0
    assert lineage.parent_ids == ["cohort:c1/p000000"] and "sdv" in lineage.generator_version
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    assert finalise(ctx, store)["stored_episodes"] == 4
    # the same cohort gives the same cases: the run resumes
    assert [c.content_hash() for c in prepare(spec).cases] == [c.content_hash() for c in ctx.cases]
    code, output = _cli(
        "run",
        "-a",
        "scripted",
        "--cases",
        "500",
        "--kb",
        SMALL_KB,
        "--cohort",
        cohort_dir,
        "--out",
        tmp_path / "r2",
        "-q",
    )
    assert code == 2 and "asked for 500 cases but the cohort has 60" in " ".join(output.split())


@pytest.mark.integration
def test_target_a_run_then_reuse_and_export(cohort_dir, tmp_path):
    spec = RunSpec(agents=["random"], cases=12, seed=3, kb_dir=str(SMALL_KB), out=tmp_path / "run")
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    finalise(ctx, store)
    out = tmp_path / "targeted"
    code, output = _cli(
        "cohort",
        "generate",
        "--kb",
        SMALL_KB,
        "--reuse",
        cohort_dir,
        "--n",
        "80",
        "--seed",
        "5",
        "--target",
        tmp_path / "run",
        "--out",
        out,
        "-q",
    )
    assert code == 0, output
    m = json.loads((out / "manifest.json").read_text())
    assert m["lineage"] == {
        "parent_cohort": "c1",
        "target_run": str(tmp_path / "run"),
        "target_agent": "random",
        "target_metric": "diagnostic_accuracy",
    }
    shares = {c["condition_id"]: c["target_share"] for c in m["targeting"]["conditions"]}
    worst = max(m["targeting"]["conditions"], key=lambda c: c["failure_rate"])["condition_id"]
    assert shares[worst] == max(shares.values())
    code, output = _cli(
        "cohort", "export", out, "--kb", SMALL_KB, "--out", tmp_path / "fhir", "--n", "5"
    )
    assert code == 0 and "wrote 5 FHIR bundles" in output
    bundle = json.loads(next((tmp_path / "fhir").glob("*.json")).read_text())
    assert (
        bundle["resourceType"] == "Bundle"
        and bundle["entry"][0]["resource"]["resourceType"] == "Patient"
    )


@pytest.mark.integration
def test_from_csv(tmp_path):
    out = tmp_path / "csv"
    rows = ["AGE,GENDER,DX"] + [
        f"{30 + i % 40},{'F' if i % 3 else 'M'},{'J18.9' if i % 2 else 'G43.0'}" for i in range(60)
    ]
    (tmp_path / "seed.csv").write_text("\n".join(rows) + "\n")
    code, output = _gen(
        out,
        "--from",
        tmp_path / "seed.csv",
        "--map",
        "age=AGE",
        "--map",
        "sex=GENDER",
        "--map",
        "condition=DX",
    )
    assert code == 0, output
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["kind"] == "csv" and m["source"]["rows"] == 60
    assert m["source"]["completed_from_kb"]["ethnicity"] == 60 and len(m["source"]["sha256"]) == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", DATA / "cohort.csv"], "missing column 'age'"),
        (
            [
                "--from",
                DATA / "cohort.csv",
                "--map",
                "age=AGE_YEARS",
                "--map",
                "sex=GENDER",
                "--map",
                "condition=DX",
                "--ignore-extra-columns",
                "--map",
                "finding.fever=fever_flag",
                "--map",
                "condition=PID",
            ],
            "column 'PID': unknown condition code '1'",
        ),
        (
            ["--balance", "sex=female:0.5/other:0.5"],
            "--balance sex: value 'other' has no seed rows",
        ),
        (["--rare-floor", "0.6"], "--rare-floor 0.6 x 3 conditions = 1.80 > 1: impossible"),
        (["--where", "condition_id=scurvy"], "--where condition_id: unknown value 'scurvy'"),
        (
            ["--synthesizer", "bayesnet"],
            "--synthesizer 'bayesnet': allowed: gaussian_copula, ctgan, tvae",
        ),
    ],
)
def test_bad_input_fails_cleanly_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "c"
    code, output = _gen(out, *map(str, args))
    assert code == 2 and message in " ".join(output.split())
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []
