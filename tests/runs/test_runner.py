"""The local runner: baselines end to end, errors kept apart, same seed same transcripts."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from clinicgym.agents.registry import agent_builder
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"


def _run(tmp_path, name="run", **kw):
    spec = RunSpec(out=tmp_path / name, kb_dir=str(SMALL_KB), **kw)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    return finalise(ctx, store), store


def test_baselines_on_the_small_kb(tmp_path):
    summary, store = _run(tmp_path, agents=["oracle", "scripted", "random"], cases=20, seed=7)
    a = summary["agents"]
    assert a["oracle"]["metrics"]["diagnostic_accuracy"]["mean"] == 1.0
    assert a["oracle"]["metrics"]["inquiry_coverage"]["mean"] == 1.0
    assert (
        a["scripted"]["metrics"]["diagnostic_accuracy"]["mean"]
        > a["random"]["metrics"]["diagnostic_accuracy"]["mean"]
    )
    assert all(s["episodes"] == 20 and s["errors"] == 0 for s in a.values())
    assert summary["stored_episodes"] == 60
    for name in (
        "manifest.json",
        "cases.jsonl",
        "episodes.jsonl",
        "summary.json",
        "scores.parquet",
    ):
        assert (store.root / name).exists()


def test_same_seed_same_transcripts(tmp_path):
    _, s1 = _run(
        tmp_path, "a", agents=["scripted", "random", "oracle"], cases=6, seed=3, concurrency=4
    )
    _, s2 = _run(
        tmp_path, "b", agents=["scripted", "random", "oracle"], cases=6, seed=3, concurrency=1
    )
    t1 = {e.episode_id: e.transcript() for e in s1.iter_episodes()}
    t2 = {e.episode_id: e.transcript() for e in s2.iter_episodes()}
    assert t1 == t2 and len(t1) == 18


class _Boom:
    agent_id = "boom"

    def reset(self, observation, info):
        pass

    async def act(self, observation, info):
        if info["turn"] >= 1:
            raise ConnectionError("backend went away")
        return "Any fever?"


@agent_builder("boom")
def _boom(rest, kb, options):
    return _Boom


def test_agent_failures_are_errors_not_wrong_answers(tmp_path):
    summary, store = _run(tmp_path, agents=["boom", "oracle"], cases=4)
    boom = summary["agents"]["boom"]
    assert boom["errors"] == 4 and boom["completed"] == 0
    assert boom["metrics"]["diagnostic_accuracy"]["mean"] is None
    eps = [e for e in store.iter_episodes() if e.agent_id == "boom"]
    assert all(e.status == "error" and "backend went away" in e.errors[0] for e in eps)
    assert eps[0].turns == 1  # the transcript up to the failure is kept


def test_resume_runs_only_what_is_missing(tmp_path):
    spec = RunSpec(out=tmp_path / "r", kb_dir=str(SMALL_KB), agents=["scripted", "oracle"], cases=5)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    ctx_part = dataclasses.replace(ctx, plan=ctx.plan[:4])
    assert asyncio.run(execute(ctx_part, store)) == 4
    store.close()
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    assert asyncio.run(execute(ctx, store)) == 6
    store.close()
    ids = [e.episode_id for e in store.iter_episodes()]
    assert len(ids) == len(set(ids)) == 10
    assert store.episodes_path.read_text().count("\n") == 10


def test_unknown_agent_fails_before_anything_is_written(tmp_path):
    from clinicgym.agents.errors import AgentSpecError

    with pytest.raises(AgentSpecError, match="unknown agent spec 'gpt9'"):
        prepare(RunSpec(out=tmp_path / "x", agents=["gpt9"], kb_dir=str(SMALL_KB)))
    assert not (tmp_path / "x").exists()
