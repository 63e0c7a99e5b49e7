"""Episodes scored where they were played (runs/runner.py `score_played`): finalise takes their
score-table rows and live verdicts instead of realising each case again, and writes exactly
what scoring from the realised case writes (issue 22)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")


def _spec(root: Path, **kw) -> RunSpec:
    kw.setdefault("agents", ["scripted", "random"])
    kw.setdefault("cases", 6)
    return RunSpec(out=root / "run", kb_dir=SMALL_KB, seed=7, concurrency=4, **kw)


def _finalised(
    root: Path, rescore: bool, drop_every: int = 0, **kw
) -> tuple[dict, RunStore, int, int]:
    """Play a run; finalise it from the rows scored at play (or, `rescore`, with them dropped,
    as for episodes stored by an earlier session; `drop_every` k: those of every k-th planned
    episode dropped). (summary, store, rows held, realisations made by finalise)."""
    spec = _spec(root, **kw)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    held = len(ctx.scored)
    for planned in ctx.plan[::drop_every] if drop_every else []:
        ctx.scored.pop(planned.episode_id)
    if rescore:
        ctx.scored.clear()
    if rescore or drop_every:
        ctx.cases._cache.clear()  # as a resumed run holds none realised
    before = ctx.cases.realised
    summary = finalise(ctx, store)
    return summary, store, held, ctx.cases.realised - before


def _case_hashes(store: RunStore) -> list[str | None]:
    """The case hashes manifest.json records (filled in at finalise)."""
    return [c["hash"] for c in json.loads(store.manifest_path.read_text())["cases"]]


def _same_outputs(a: tuple, b: tuple) -> None:
    (sa, store_a, *_), (sb, store_b, *_) = a, b
    assert json.dumps(sa, sort_keys=True) == json.dumps(sb, sort_keys=True)
    fa, fb = pd.read_parquet(store_a.scores_path), pd.read_parquet(store_b.scores_path)
    pd.testing.assert_frame_equal(fa, fb)
    assert _case_hashes(store_a) == _case_hashes(store_b)
    assert None not in _case_hashes(store_a)
    verdicts = store_a.root / "compliance-verdicts.jsonl"
    if verdicts.exists():
        other = store_b.root / "compliance-verdicts.jsonl"
        assert verdicts.read_text() == other.read_text()


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"policy_packs": ["hipaa-privacy@2"], "scenarios": ["third_party:role=employer"]},
    ],
    ids=["plain", "packs-and-scenario"],
)
def test_finalise_from_rows_scored_at_play_writes_what_rescoring_writes(tmp_path, extra):
    played = _finalised(tmp_path / "played", rescore=False, **extra)
    rescored = _finalised(tmp_path / "rescored", rescore=True, **extra)
    assert played[2] == 12  # every episode of this session was scored where it was played
    assert played[3] == 0  # so finalise realised no case
    assert rescored[3] == 6  # without those rows: each case once, as before
    _same_outputs(played, rescored)


def test_finalise_from_some_rows_held_and_some_not_writes_what_rescoring_writes(tmp_path):
    """A resumed run holds the rows of the episodes this session played only: finalise scores
    the others (and every episode of a case with one of them) and keeps the store's order."""
    mixed = _finalised(tmp_path / "mixed", rescore=False, drop_every=3)
    rescored = _finalised(tmp_path / "rescored", rescore=True)
    assert 0 < mixed[3] < 6  # some cases realised again, not all
    _same_outputs(mixed, rescored)


@pytest.mark.slow
def test_two_workers_send_their_scoring_back_and_the_parent_realises_no_case(tmp_path):
    one = _finalised(tmp_path / "one", rescore=True, workers=1)
    two = _finalised(tmp_path / "two", rescore=False, workers=2)
    assert two[2] == 12 and two[3] == 0
    # the parent holds the hashes the workers computed, and writes them at finalise
    assert None not in _case_hashes(two[1])
    assert json.dumps(one[0]["agents"], sort_keys=True) == json.dumps(
        two[0]["agents"], sort_keys=True
    )


def test_a_long_run_of_kb_worded_cases_embeds_the_history_wordings_before_playing(
    tmp_path, monkeypatch
):
    from clinicgym.runs import executors
    from clinicgym.scoring import patient_fidelity

    warmed: list[str] = []
    monkeypatch.setattr(patient_fidelity, "warm_fault_lookup", lambda kb: warmed.append(kb.version))
    runs = [  # (agents, listed whole, warmed): 5 cases x 20 repeats = 100 episodes an agent
        (["scripted", "random"], False, 1),
        (["scripted"], False, 0),  # fewer than MIN_EPISODES_PER_WORKER to play
        (["scripted", "random"], True, 0),  # cases held whole (a file's): not KB-worded
    ]
    for k, (agents, listed, expected) in enumerate(runs):
        spec = _spec(tmp_path / str(k), agents=agents, cases=5, repeats=20)
        ctx = prepare(spec)
        if listed:
            ctx = prepare(spec, cases=list(ctx.cases))
        store = RunStore.open(spec, ctx.cases, ctx.kb.version)
        warmed.clear()
        executors.warm_scoring(ctx, store)
        store.close()
        assert len(warmed) == expected, (agents, listed)
