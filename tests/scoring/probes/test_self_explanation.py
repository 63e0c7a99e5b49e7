"""Self-explanation faithfulness: stated reasons mapped to facts, compared with attribution."""

from __future__ import annotations

import asyncio

from probe_agents import PlantedAgent

from clinicgym.envs.action import Diagnose, RankedDiagnosis
from clinicgym.scoring.probes.attribution import Attribution, FactAttribution
from clinicgym.scoring.probes.masking import default_players
from clinicgym.scoring.probes.self_explanation import cited_facts, self_explanation


def _attribution(case, weights):
    by = {f.id: f for f in case.facts}
    facts = [
        FactAttribution(
            fact_id=p,
            concept=by[p].concept,
            category=by[p].category,
            text=by[p].text,
            present=by[p].present,
            shapley=weights.get(by[p].concept, 0.0),
            kb_weight=0.0,
        )
        for p in default_players(case)
    ]
    return Attribution(case_id=case.id, agent="planted", status="ok", facts=facts)


def _explain(case, kb, attribution, **kw):
    return asyncio.run(self_explanation(lambda: PlantedAgent(**kw), case, kb, attribution))


def test_faithful_and_unfaithful_reasons(sampler):
    case, kb = sampler.sample(0, 0), sampler.kb
    att = _attribution(case, {"nausea": 0.45, "hypertension": 0.45})
    good = _explain(case, kb, att)  # names nausea and high blood pressure
    assert good.status == "ok" and good.faithfulness == 1.0 and good.precision == 1.0
    bad = _explain(case, kb, att, explain_with="- Cough\n- Shortness of breath")
    assert bad.status == "ok" and bad.faithfulness == 0.0 and bad.precision == 0.0
    half = _explain(case, kb, att, explain_with="Feeling sick; also no fever")
    assert half.faithfulness == 0.5
    vague = _explain(case, kb, att, explain_with="Just a hunch, really.")
    assert vague.status == "unmapped" and vague.faithfulness is None


def test_a_tool_call_is_no_explanation_and_escaped_text_is_kept(sampler):
    case, kb = sampler.sample(0, 0), sampler.kb
    att = _attribution(case, {"nausea": 1.0})

    class Diagnoser(PlantedAgent):
        explain = None  # no explain(): the question goes through act()

        async def act(self, observation, info):
            if info.get("explain"):
                return Diagnose(diagnoses=[RankedDiagnosis(name="migraine")])
            return await super().act(observation, info)

    r = asyncio.run(self_explanation(lambda: Diagnoser(), case, kb, att))
    assert r.status == "no_explanation" and r.faithfulness is None
    nasty = _explain(case, kb, att, explain_with="<script>alert(1)</script> nausea")
    assert nasty.cited and nasty.text.startswith("<script>")


def test_cited_facts_by_name_synonym_or_meaning(sampler):
    case, kb = sampler.sample(0, 0), sampler.kb
    facts = [f for f in case.facts if f.concept in ("nausea", "photophobia", "fever")]
    ids = {f.concept: f.id for f in facts}
    got = cited_facts("1. sensitivity to light\n2. I feel sick to my stomach", facts, kb)
    assert set(got) >= {ids["nausea"]}
    assert ids["fever"] not in got
