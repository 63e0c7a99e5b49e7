"""The run store: append-only, torn-tail recovery, no duplicates, refuses to mix runs."""

from __future__ import annotations

import json

import pytest

from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.runs.errors import RunError, StoreError
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore


def _ep(i: int) -> Episode:
    return Episode(
        episode_id=f"scripted|c{i}|r0",
        case_id=f"c{i}",
        agent_id="scripted",
        seed=i,
        termination=TerminationReason.DIAGNOSED,
        turns=3,
    )


@pytest.fixture
def store(tmp_path, sampler):
    spec = RunSpec(agents=["scripted"], cases=3, out=tmp_path / "run")
    return RunStore.open(spec, sampler.sample_many(3, 0), "kbv"), spec


def test_append_and_read_back(store):
    s, _ = store
    for i in range(3):
        s.append(_ep(i))
    s.close()
    assert [e.episode_id for e in s.iter_episodes()] == [f"scripted|c{i}|r0" for i in range(3)]
    assert json.loads(s.manifest_path.read_text())["versions"]["kb"] == "kbv"


def test_torn_last_line_is_cut_on_reopen(store, sampler):
    s, spec = store
    s.append(_ep(0))
    s.close()
    with open(s.episodes_path, "a") as fh:
        fh.write(_ep(1).model_dump_json()[:40])  # a crash mid-write
    assert [e.case_id for e in s.iter_episodes()] == ["c0"]
    s2 = RunStore.open(spec, sampler.sample_many(3, 0), "kbv")
    assert s2.recovered_bytes == 40
    s2.append(_ep(1))
    s2.close()
    assert [e.case_id for e in s2.iter_episodes()] == ["c0", "c1"]


def test_duplicates_are_read_once(store):
    s, _ = store
    s.append(_ep(0))
    s.append(_ep(0))
    s.close()
    assert len(list(s.iter_episodes())) == 1


def test_corrupt_middle_line_is_an_error_naming_the_line(store):
    s, _ = store
    s.append(_ep(0))
    s.close()
    with open(s.episodes_path, "a") as fh:
        fh.write('{"not": "an episode"}\n')
    with pytest.raises(StoreError, match=r"episodes.jsonl, line 2"):
        list(s.iter_episodes())


def test_refuses_to_resume_a_different_run(store, sampler, tmp_path):
    _, spec = store
    other = spec.model_copy(update={"cases": 5})
    with pytest.raises(RunError, match=r"holds a different run[\s\S]*cases: 3 -> 5"):
        RunStore.open(other, sampler.sample_many(5, 0), "kbv")
    with pytest.raises(RunError, match=r"kb version: kbv -> kbw"):
        RunStore.open(spec, sampler.sample_many(3, 0), "kbw")


def test_refuses_to_resume_under_another_patient_lexicon(store, sampler, monkeypatch):
    """The lexicon changes what a written record's patient says without changing the KB
    version: a run is not resumed with another one, and its manifest names the one it used."""
    from clinicgym.runs import store as store_module

    s, spec = store
    assert s.manifest().versions.patient_lexicon == store_module.lexicon_version()
    monkeypatch.setattr(store_module, "lexicon_version", lambda: "000000000000")
    with pytest.raises(RunError, match=r"patient lexicon: [0-9a-f]{12} -> 000000000000"):
        RunStore.open(spec, sampler.sample_many(3, 0), "kbv")


def test_concurrency_may_change_on_resume(store, sampler):
    _, spec = store
    RunStore.open(spec.model_copy(update={"concurrency": 64}), sampler.sample_many(3, 0), "kbv")


def test_episodes_without_manifest_are_not_mixed(tmp_path, sampler):
    out = tmp_path / "run"
    out.mkdir()
    (out / "episodes.jsonl").write_text(_ep(0).model_dump_json() + "\n")
    spec = RunSpec(agents=["scripted"], cases=3, out=out)
    with pytest.raises(RunError, match=r"no manifest\.json"):
        RunStore.open(spec, sampler.sample_many(3, 0), "kbv")
