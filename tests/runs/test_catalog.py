"""The run catalog: runs found under folders with their state, SQL over every run's scores, and
`runs compare` with per-metric differences and bootstrap intervals (paired by case)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinicgym.runs.catalog import RunCatalog, compare, diff_ci, find_runs
from clinicgym.runs.cli import app
from clinicgym.runs.errors import RunError
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")


def _run(out: Path, agents: list[str], seed: int = 4, keep: int | None = None) -> Path:
    spec = RunSpec(agents=agents, cases=5, seed=seed, kb_dir=SMALL_KB, out=out)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    full = ctx.plan
    if keep is not None:
        ctx.plan = full[:keep]
    try:
        asyncio.run(execute(ctx, store))
    finally:
        store.close()
    ctx.plan = full
    finalise(ctx, store)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    _run(root / "team" / "a", ["oracle", "random"])
    _run(root / "team" / "b", ["random"], seed=4)
    _run(root / "c", ["oracle"], seed=8)
    _run(root / "partial", ["random"], keep=2)
    modified = _run(root / "modified", ["oracle"])
    with open(modified / "summary.json", "a") as fh:
        fh.write("\n")
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    return root


def test_catalog_lists_runs_with_their_state(runs):
    assert len(find_runs([runs])) == 6
    cat = RunCatalog([runs])
    df = cat.runs().set_index("path")
    state = {Path(p).name: s for p, s in df["state"].items()}
    assert state == {
        "a": "complete",
        "b": "complete",
        "c": "complete",
        "partial": "partial",
        "modified": "modified",
        "broken": state["broken"],
    }
    assert state["broken"].startswith("damaged: ") and "not valid JSON" in state["broken"]
    row = df.loc[str((runs / "team" / "a").resolve())]
    assert row["planned"] == 10 and row["stored"] == 10 and row["agents"] == "oracle, random"
    part = df.loc[str((runs / "partial").resolve())]
    assert part["stored"] == 2 and part["planned"] == 5
    acc = cat.query(
        "SELECT agent, count(*) n, avg(diagnostic_accuracy) acc FROM scores "
        f"WHERE run_path = '{(runs / 'team' / 'a').resolve()}' GROUP BY agent ORDER BY agent"
    )
    assert acc["n"].tolist() == [5, 5] and acc.loc[0, "acc"] == 1.0  # oracle
    with pytest.raises(RunError, match="query failed"):
        cat.query("SELECT nope FROM scores")


def test_compare_pairs_by_case_and_gives_intervals(runs):
    a, b, c = runs / "team" / "a", runs / "team" / "b", runs / "c"
    same = {d.metric: d for d in compare(a, b, metrics=["diagnostic_accuracy", "turns"])}
    # the same seed and cases: random played identically, so B - A is exactly 0 in every
    # pair; the pairs carry no spread, so the interval is the independent one, never [0, 0]
    d = same["diagnostic_accuracy"]
    assert d.agent == "random" and d.paired and d.diff == 0
    assert d.method == "newcombe, independent" and d.ci95[0] < 0 < d.ci95[1]
    # different cases: refused unless asked for, then resampled independently
    with pytest.raises(RunError, match=r"played different cases \(5 and 5 cases, 0 the same\)"):
        compare(a, c, agents=["oracle"])
    ab = compare(
        a, c, agents=["oracle"], metrics=["diagnostic_accuracy"], allow_different_cases=True
    )[0]
    assert not ab.paired and ab.mean_a == 1.0 and ab.mean_b == 1.0
    with pytest.raises(RunError, match="not in"):
        compare(a, c, agents=["random"], allow_different_cases=True)
    with pytest.raises(RunError, match="unknown metrics"):
        compare(a, b, metrics=["charm"])
    with pytest.raises(RunError, match=r"no scores\.parquet"):
        compare(a, runs)


def test_diff_ci_finds_a_real_shift_and_not_a_null_one():
    rng = np.random.default_rng(0)
    idx = pd.MultiIndex.from_tuples([(f"c{i}", 0) for i in range(60)])
    a = pd.Series(rng.normal(0.5, 0.1, 60), index=idx)
    shifted = a + 0.2 + pd.Series(rng.normal(0, 0.05, 60), index=idx)
    diff, (lo, hi) = diff_ci(a, shifted, paired=True)
    assert 0.15 < diff < 0.25 and 0 < lo < diff < hi
    noise = pd.Series(rng.normal(0.5, 0.1, 60), index=idx)
    diff, (lo, hi) = diff_ci(a, noise, paired=False)
    assert lo < 0 < hi


def test_runs_cli_list_and_compare(runs):
    r = CliRunner().invoke(app, ["runs", "list", str(runs)])
    assert r.exit_code == 0 and "6 runs" in r.output and "modified" in r.output, r.output
    r = CliRunner().invoke(
        app,
        ["runs", "compare", str(runs / "team" / "a"), str(runs / "team" / "b"), "-m", "turns"],
    )
    assert r.exit_code == 0 and "paired by case" in r.output and "random" in r.output, r.output
    c_b = ["runs", "compare", str(runs / "c"), str(runs / "team" / "b")]
    r = CliRunner().invoke(app, c_b)
    assert r.exit_code == 2 and "played different cases" in r.output, r.output
    assert "--allow-different-cases" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, [*c_b, "--allow-different-cases"])
    assert r.exit_code == 0 and "oracle" in r.output and "random" in r.output  # one agent each
    assert "independent samples" in r.output
    pair = compare(runs / "c", runs / "team" / "b", allow_different_cases=True)[0]
    assert pair.agent == "oracle -> random"
