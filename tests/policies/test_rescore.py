"""Re-scoring stored runs: same packs give the same verdicts; new versions change them; a
transcript is never judged against the wrong case."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from policy_helpers import POLICY_KB

from clinicgym.envs.episode import Episode
from clinicgym.policies import load_packs
from clinicgym.policies.diff import diff_packs, verdict_changes
from clinicgym.policies.library import available, load
from clinicgym.policies.rescore import live_verdicts, rescore

pytestmark = pytest.mark.slow  # each module run plays a real 12-episode run first

V1 = [f"{p}@1" for p in available()]
V2 = [f"{p}@2" for p in available()]


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    from clinicgym.runs.runner import execute, finalise, prepare
    from clinicgym.runs.spec import RunSpec
    from clinicgym.runs.store import RunStore

    spec = RunSpec(
        agents=["oracle", "unsafe"],
        cases=6,
        seed=2,
        out=tmp_path_factory.mktemp("runs") / "r",
        kb_dir=str(POLICY_KB),
        policy_packs=V1,
        scenarios=["suite"],
        max_turns=12,
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    summary = finalise(ctx, store)
    return ctx, store, summary


def _oracle_passes_but_for_unknown_red_flags(verdicts) -> None:
    """The oracle learns red flags from the KB; this small test KB has no emergency condition,
    so only red-flag scenarios may catch it out here (tests/policies/test_suite.py plays the
    whole suite on the bundled KB, where the oracle triggers nothing)."""
    oracle = [v for v in verdicts if v.agent_id == "oracle"]
    assert oracle and all(v.status == "pass" or v.scenarios == ["red_flag"] for v in oracle)
    assert all(x.rule_id == "red-flag-referral" for v in oracle for x in v.violations)


def live_verdicts_of(store):
    from clinicgym.policies.rescore import EpisodeVerdict

    lines = (store.root / "compliance-verdicts.jsonl").read_text().splitlines()
    return [EpisodeVerdict.model_validate_json(x) for x in lines]


def _key(verdicts):
    return {
        v.episode_id: [(x.pack, x.rule_id, x.turn, x.quote) for x in v.violations] for v in verdicts
    }


def test_rescoring_under_the_same_packs_reproduces_the_live_verdicts(stored_run) -> None:
    ctx, store, summary = stored_run
    cases = {c.id: c for c in ctx.cases}
    episodes = list(store.iter_episodes())
    live = live_verdicts(episodes, cases, ["suite"], ctx.kb)
    again = asyncio.run(rescore(episodes, cases, load_packs(V1), ctx.kb, ["suite"]))
    assert _key(again) == _key(live)
    assert {v.status for v in again if v.agent_id == "unsafe"} == {"fail"}
    assert summary["compliance"]["agents"]["unsafe"]["violations"] == sum(
        len(v.violations) for v in live if v.agent_id == "unsafe"
    )
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert [p["ref"] for p in manifest["policy_packs"]] == V1
    assert all(len(p["sha256"]) == 64 for p in manifest["policy_packs"])


def test_a_new_version_changes_verdicts_without_rerunning(stored_run) -> None:
    ctx, store, _ = stored_run
    cases = {c.id: c for c in ctx.cases}
    episodes = list(store.iter_episodes())
    old = asyncio.run(rescore(episodes, cases, load_packs(V1), ctx.kb, ["suite"]))
    new = asyncio.run(rescore(episodes, cases, load_packs(V2), ctx.kb, ["suite"]))
    changed = verdict_changes(old, new)
    assert changed and all(c.agent_id == "unsafe" for c in changed)
    assert any("ai-disclosure-first-contact" in c.added for c in changed)
    _oracle_passes_but_for_unknown_red_flags(new)


def test_a_changed_case_is_an_error_not_a_verdict(stored_run) -> None:
    ctx, store, _ = stored_run
    cases = {c.id: c for c in ctx.cases}
    first = ctx.cases[0]
    cases[first.id] = first.model_copy(update={"age": first.age + 1})
    episodes = list(store.iter_episodes())
    out = asyncio.run(rescore(episodes, cases, load_packs(V1), ctx.kb, ["suite"]))
    bad = [v for v in out if v.case_id == first.id]
    assert bad and all(v.status == "error" and "does not hash" in v.errors[0] for v in bad)
    assert all(v.status != "error" for v in out if v.case_id != first.id)


def test_errored_episodes_are_skipped(stored_run) -> None:
    ctx, store, _ = stored_run
    ep: Episode = next(store.iter_episodes())
    broken = ep.model_copy(update={"status": "error", "errors": ["backend down"]})
    out = asyncio.run(rescore([broken], {c.id: c for c in ctx.cases}, load_packs(V1), ctx.kb))
    assert out[0].status == "skipped" and out[0].errors == ["backend down"]


def test_pack_diff_lists_rule_changes() -> None:
    d = diff_packs(load("emergency-escalation@1"), load("emergency-escalation@2"))
    assert d.old == "emergency-escalation@1" and d.new == "emergency-escalation@2"
    assert "effective: 2024-01-01 -> 2025-01-01" in d.meta
    by_id = {r.rule_id: r for r in d.rules}
    assert by_id["no-deferral-after-red-flag"].kind == "added"
    changes = by_id["red-flag-referral"].changes
    assert "check.args.within_turns: 2 -> 1" in changes
    assert "check.args.trigger.concepts: +['haematemesis', 'tearing_pain_to_back']" in changes
    assert diff_packs(load("gdpr@2"), load("gdpr@2")).rules == []
    removed = diff_packs(load("gdpr@2"), load("gdpr@1")).rules
    assert [(r.rule_id, r.kind) for r in removed] == [("erasure-refusal-explained", "removed")]


def test_reports_are_written_in_the_run(stored_run) -> None:
    _, store, summary = stored_run
    root = Path(store.root)
    assert sorted(summary["compliance"]["files"]) == [
        "compliance-verdicts.jsonl",
        "compliance.html",
        "compliance.json",
        "compliance.md",
    ]
    report = json.loads((root / "compliance.json").read_text())
    assert report["mode"] == "live" and set(report["agents"]) == {"oracle", "unsafe"}
    assert report["agents"]["unsafe"]["failed"] == 6
    _oracle_passes_but_for_unknown_red_flags(live_verdicts_of(store))
