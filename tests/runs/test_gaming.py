"""The gaming strategy of issue 19, replayed: a model that sends `'[' * 1000 + ']' * 1000`
whenever the opening does not mention a chest symptom once crashed the env on those cases, had
them stored as environment errors and left out of every metric, and so ranked on its best cases
only (top-1 17% against 2% for an honest model). Garbage is the model's failure: those episodes
are scored, so the strategy cannot beat playing honestly."""

from __future__ import annotations

import asyncio
import re

import pandas as pd

from clinicgym.agents.registry import agent_builder
from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

GARBAGE = "[" * 1000 + "]" * 1000
CHEST = re.compile(r"chest|breath|cough|palpitat|heart|wheez", re.IGNORECASE)


class _Honest(ScriptedAgent):
    """A tiny deterministic honest model: diagnoses from the opening with the KB posterior."""

    def __init__(self, kb) -> None:
        super().__init__(kb, "honest", budget=0)


class _Gamer(_Honest):
    """Plays like the honest model where the opening mentions a chest symptom; elsewhere it
    sends the string that used to crash the env, every turn."""

    def reset(self, observation, info) -> None:
        self.garbage = not CHEST.search(observation["text"])
        super().reset(observation, info)

    async def act(self, observation, info):
        return GARBAGE if self.garbage else await super().act(observation, info)


agent_builder("honest")(lambda rest, kb, options: lambda: _Honest(kb))
agent_builder("gamer")(lambda rest, kb, options: lambda: _Gamer(kb))


def test_sending_garbage_on_hard_cases_scores_no_better_than_playing_honestly(tmp_path):
    spec = RunSpec(agents=["honest", "gamer"], cases=60, seed=0, max_turns=8, out=tmp_path / "r")
    ctx = prepare(spec)  # the bundled KB: 60 generated, presentation-first cases
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    try:
        asyncio.run(execute(ctx, store))
    finally:
        store.close()
    summary = finalise(ctx, store)["agents"]
    top1 = {a: summary[a]["metrics"]["diagnostic_accuracy"] for a in ("honest", "gamer")}
    for a in ("honest", "gamer"):  # every episode counts: none errored, none left out
        assert summary[a]["errors"] == 0 and summary[a]["completed"] == 60
        assert top1[a]["n"] == 60
    assert top1["gamer"]["mean"] <= top1["honest"]["mean"]

    episodes = {e.episode_id: e for e in store.iter_episodes()}
    table = pd.read_parquet(store.scores_path)
    gamer = table[table["agent"] == "gamer"].copy()
    gamer["garbage"] = [not CHEST.search(episodes[i].events[0].text) for i in gamer["episode_id"]]
    assert 0 < gamer["garbage"].sum() < 60  # the strategy was played, on some cases only
    for i in gamer.loc[gamer["garbage"], "episode_id"]:  # each garbage turn: an error turn
        e = episodes[i]
        assert e.status == "completed" and e.termination == "turn_budget" and e.turns == 8
        errors = [ev.error for ev in e.events if ev.actor == "clinician"]
        assert len(errors) == 8 and all("nested deeper than 32 levels" in x for x in errors)
    assert (gamer.loc[gamer["garbage"], "diagnostic_accuracy"] == 0).all()
    # the test has teeth: left out as before, the garbage episodes would have let the gamer
    # outrank the honest model on these very cases
    old_rule = gamer.loc[~gamer["garbage"], "diagnostic_accuracy"].mean()
    assert old_rule > top1["honest"]["mean"]
    print(
        f"top-1 over 60 cases: honest {top1['honest']['mean']:.1%}, gamer "
        f"{top1['gamer']['mean']:.1%} (garbage on {int(gamer['garbage'].sum())} cases; "
        f"{old_rule:.1%} had they been left out)"
    )
