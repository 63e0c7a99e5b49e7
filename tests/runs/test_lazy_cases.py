"""Lazy cases and compact run directories (runs/casefile.py), and the store's group commit:
generated cases are realised when their episode starts and stored as recipes, the same seeds
give the same episodes as cases prepared up front, and old run directories stay readable."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import make_sampler
from clinicgym.runs.casefile import CaseList, CohortCases, GeneratedCases, read_case_lines
from clinicgym.runs.errors import StoreError
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore, cases_sha256

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"


def _spec(tmp_path: Path, name: str, **kw) -> RunSpec:
    kw.setdefault("agents", ["scripted", "random"])
    return RunSpec(out=tmp_path / name, kb_dir=str(SMALL_KB), seed=5, **kw)


def _play(spec: RunSpec, cases=None):
    ctx = prepare(spec, cases=cases)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    finalise(ctx, store)
    return ctx, store


def test_generated_cases_are_realised_per_episode_not_up_front(tmp_path):
    spec = _spec(tmp_path, "r", cases=6, repeats=2)
    ctx = prepare(spec)
    assert isinstance(ctx.cases, GeneratedCases)
    assert ctx.cases.realised == 0 and len(ctx.plan) == 24  # planned from ids alone
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    assert ctx.cases.realised == 0  # written as recipes, nothing realised
    asyncio.run(execute(ctx, store))
    store.close()
    # a case's 4 episodes (2 repeats x 2 agents) follow each other: one realisation each
    assert ctx.cases.realised == 6


def test_finalise_realises_each_case_once_however_the_episodes_interleave(tmp_path):
    spec = _spec(tmp_path, "f", cases=12, policy_packs=["hipaa-privacy@2"])
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    lines = store.episodes_path.read_bytes().splitlines(keepends=True)
    # the episodes of a case far apart in the log (as at concurrency 64), beyond the cache of 8
    store.episodes_path.write_bytes(b"".join(lines[0::2] + lines[1::2]))
    ctx.cases._cache.clear()
    ctx.cases.realised = 0
    ctx.scored.clear()  # as for episodes an earlier session stored: scored from their cases
    summary = finalise(ctx, store)
    assert summary["stored_episodes"] == 24 and "compliance" in summary
    assert ctx.cases.realised == 12  # scored and judged against one realisation each
    verdicts = (store.root / "compliance-verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 24


def test_cohort_cases_are_realised_when_their_episodes_start(tmp_path):
    from clinicgym.patients.cohorts.cohort import Cohort
    from tests.runs.review_support import make_cohort

    cohort = make_cohort(tmp_path / "c0", rows=6)
    spec = _spec(tmp_path, "c", cases=4, cohort=str(cohort), agents=["scripted"])
    ctx = prepare(spec)
    assert isinstance(ctx.cases, CohortCases) and len(ctx.cases) == 4
    assert ctx.cases.realised == 0 and len(ctx.plan) == 4  # planned from the rows' ids alone
    assert ctx.cases == Cohort.open(cohort, ctx.kb).cases(4)  # the same cases, in order
    _, store = _play(spec)
    assert [c.id for c in store.cases()] == ctx.cases.ids  # stored whole, read back as played


def test_same_seed_same_episodes_as_cases_prepared_up_front(tmp_path, small_kb):
    eager = make_sampler(small_kb).sample_many(5, 5)
    _, lazy_store = _play(_spec(tmp_path, "lazy", cases=5))
    _, eager_store = _play(_spec(tmp_path, "eager", cases=5), cases=eager)
    lazy = {e.episode_id: e for e in lazy_store.iter_episodes()}
    first = {e.episode_id: e for e in eager_store.iter_episodes()}
    assert len(lazy) == 10 and lazy.keys() == first.keys()
    for k, ep in lazy.items():
        assert json.dumps(ep.transcript()) == json.dumps(first[k].transcript())
        assert ep.case_hash == first[k].case_hash
    # the stored cases read back as the ones prepared up front, byte for byte
    back = lazy_store.cases()
    assert [c.model_dump_json() for c in back] == [c.model_dump_json() for c in eager]
    manifest = lazy_store.manifest()
    assert manifest.cases_sha256 == cases_sha256(eager)
    assert eager_store.manifest().cases_sha256 == cases_sha256(eager)


def test_cases_jsonl_holds_recipes_of_a_few_hundred_bytes(tmp_path):
    _, store = _play(_spec(tmp_path, "r", cases=4, agents=["oracle"]))
    lines = store.cases_path.read_text().splitlines()
    assert len(lines) == 4 and all(len(line) <= 5000 for line in lines)
    first = json.loads(lines[0])
    assert first["recipe"]["index"] == 0 and first["recipe"]["seed"] == 5
    assert first["hash"] == store.manifest().cases[0].hash  # filled in at finalise


def test_content_hash_is_computed_once_per_case_not_per_episode(tmp_path, monkeypatch):
    calls: list[str] = []
    real = Case.content_hash

    def counted(self: Case) -> str:
        calls.append(self.id)
        return real(self)

    monkeypatch.setattr(Case, "content_hash", counted)
    spec = _spec(tmp_path, "r", cases=3, repeats=3)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    assert len(list(store.iter_episodes())) == 18
    assert sorted(calls) == sorted(ctx.cases.ids)  # once each


def test_a_killed_run_resumes_in_a_new_process_and_finalises_every_hash(tmp_path, small_kb):
    spec = _spec(tmp_path, "r", cases=5)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    part = dataclasses.replace(ctx, plan=ctx.plan[:3])
    asyncio.run(execute(part, store))
    store.close()
    assert store.manifest().case_hashes() == [None] * 5  # none written yet
    ctx2, store2 = _play(spec)  # a fresh context: nothing realised, no hash known
    assert len({e.episode_id for e in store2.iter_episodes()}) == 10
    assert store2.manifest().cases_sha256 == cases_sha256(make_sampler(small_kb).sample_many(5, 5))
    with pytest.raises(Exception, match="different run"):  # the resume check still bites
        RunStore.open(spec.model_copy(update={"seed": 6}), prepare(spec).cases, "other")


def test_an_old_run_directory_with_whole_cases_still_reads(tmp_path, small_kb):
    cases = make_sampler(small_kb).sample_many(2, 1)
    root = tmp_path / "old"
    root.mkdir()
    (root / "cases.jsonl").write_text("".join(c.model_dump_json() + "\n" for c in cases))
    back = RunStore(root).cases()
    assert [c.model_dump_json() for c in back] == [c.model_dump_json() for c in cases]


def test_written_cases_stay_whole_and_are_hashed_once(tmp_path, small_kb):
    cases = CaseList(make_sampler(small_kb).sample_many(2, 1))
    spec = _spec(tmp_path, "w", cases=2, agents=["oracle"])
    store = RunStore.open(spec, cases, small_kb.version)
    line = store.cases_path.read_text().splitlines()[0]
    assert Case.model_validate_json(line).id == cases[0].id
    assert store.manifest().cases[0].hash == cases.case_hash(0)


def test_a_recipe_from_another_kb_version_is_named_not_misread(tmp_path, small_kb):
    _, store = _play(_spec(tmp_path, "r", cases=1, agents=["oracle"]))
    line = json.loads(store.cases_path.read_text())
    line["recipe"]["kb_version"] = "1-000000000000"
    with pytest.raises(StoreError, match="KB version 1-000000000000"):
        list(read_case_lines([json.dumps(line)], small_kb))
    line = json.loads(store.cases_path.read_text())
    line["hash"] = "0" * 64  # the generator changed under the same KB version
    with pytest.raises(StoreError, match="regenerated from its recipe"):
        list(read_case_lines([json.dumps(line)], small_kb))


def _ep(i: int) -> Episode:
    return Episode(
        episode_id=f"scripted|c{i}|r0",
        case_id=f"c{i}",
        agent_id="scripted",
        seed=i,
        termination=TerminationReason.DIAGNOSED,
        turns=3,
    )


def test_group_commit_writes_whole_lines_with_fewer_fsyncs(tmp_path, sampler):
    spec = RunSpec(agents=["scripted"], cases=1, out=tmp_path / "g")
    store = RunStore.open(spec, sampler.sample_many(1, 0), "kbv")

    async def main() -> list[int]:
        seen = []

        async def one(i: int) -> None:
            await store.commit(_ep(i))
            # acknowledged only once on disk: the line is there when commit returns
            seen.append(store.episodes_path.read_text().count(f'"c{i}"'))

        await asyncio.gather(*(one(i) for i in range(200)))
        return seen

    seen = asyncio.run(main())
    store.close()
    assert seen == [1] * 200
    assert len(list(store.iter_episodes())) == 200
    assert 1 <= store.commits < 200  # grouped: several episodes per fsync


def test_a_failed_group_write_fails_its_committers(tmp_path, sampler, monkeypatch):
    spec = RunSpec(agents=["scripted"], cases=1, out=tmp_path / "g")
    store = RunStore.open(spec, sampler.sample_many(1, 0), "kbv")

    def full(episodes, lines=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write", full)
    with pytest.raises(OSError, match="No space"):
        asyncio.run(store.commit(_ep(0)))
    store.close()
