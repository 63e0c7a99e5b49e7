"""The local executor's worker processes (`--workers N`): the same episodes as one process,
one writer (resume stores no episode twice), a worker killed mid-run loses nothing, and the
default picks one process for a short run."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from clinicgym.runs.executors import MIN_EPISODES_PER_WORKER, default_workers
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
BASE = dict(agents=["scripted", "random"], cases=10, seed=4, kb_dir=SMALL_KB, concurrency=4)


def _play(spec: RunSpec, on_episode=None) -> tuple[dict, RunStore]:
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    try:
        asyncio.run(execute(ctx, store, on_episode))
    finally:
        store.close()
    return finalise(ctx, store), store


def _transcripts(store: RunStore) -> dict[str, str]:
    """Each episode's JSON without its wall-clock times (the episode's, its events'), by id."""
    out = {}
    for ep in store.iter_episodes():
        events = [e.model_copy(update={"t": 0.0}) for e in ep.events]
        timeless = ep.model_copy(update={"started": 0.0, "finished": 0.0, "events": events})
        out[ep.episode_id] = timeless.model_dump_json()
    return out


@pytest.mark.slow
def test_two_workers_play_the_same_episodes_as_one_process(tmp_path):
    one, s1 = _play(RunSpec(**BASE, workers=1, out=tmp_path / "one"))
    two, s2 = _play(RunSpec(**BASE, workers=2, out=tmp_path / "two"))
    lines = s2.episodes_path.read_text().splitlines()
    assert len(lines) == 20 and len({json.loads(x)["episode_id"] for x in lines}) == 20
    assert _transcripts(s1) == _transcripts(s2)  # byte for byte, times aside
    assert json.dumps(one["agents"], sort_keys=True) == json.dumps(two["agents"], sort_keys=True)
    assert not multiprocessing.active_children()  # the workers exited


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing_and_a_resume_adds_no_duplicate(tmp_path):
    local, _ = _play(RunSpec(**BASE, workers=1, out=tmp_path / "local"))
    spec = RunSpec(**BASE, workers=2, out=tmp_path / "w")
    killed: list[int] = []

    def kill_one_worker(_episode) -> None:
        if not killed:
            worker = multiprocessing.active_children()[0]
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)

    summary, store = _play(spec, kill_one_worker)
    episodes = list(store.iter_episodes())
    assert killed and len(episodes) == 20
    assert all(e.status == "completed" for e in episodes), "a worker death became an error"
    assert json.dumps(local["agents"], sort_keys=True) == json.dumps(
        summary["agents"], sort_keys=True
    )
    # a run cut short after 13 episodes resumes with workers: each episode stored once
    cut = RunSpec(**BASE, workers=2, out=tmp_path / "cut")
    ctx = prepare(cut)
    RunStore.open(cut, ctx.cases, ctx.kb.version).close()
    lines = store.episodes_path.read_text().splitlines(keepends=True)
    (tmp_path / "cut" / "episodes.jsonl").write_text("".join(lines[:13]))
    _, again = _play(cut)
    ids = [json.loads(x)["episode_id"] for x in again.episodes_path.read_text().splitlines()]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert _transcripts(again) == _transcripts(store)


def test_the_default_is_one_process_for_a_short_run(tmp_path):
    spec = RunSpec(**BASE, out=tmp_path / "d")
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    assert len(ctx.plan) < MIN_EPISODES_PER_WORKER * 2
    assert default_workers(ctx, store) == 1
    big = RunSpec(**{**BASE, "cases": MIN_EPISODES_PER_WORKER * 2}, out=tmp_path / "big")
    ctx = prepare(big)
    cores = len(os.sched_getaffinity(0))
    assert default_workers(ctx, RunStore.open(big, ctx.cases, ctx.kb.version)) == min(
        cores, 4
    )  # 800 episodes
