"""Fact attribution: Shapley values over masked facts, LIME-style weights, KB alignment."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from probe_agents import CrashingAgent, PlantedAgent, SamplingPlantedAgent

from clinicgym.scoring.probes.attribution import (
    attribute,
    kb_weight,
    lime_coalitions,
    lime_weights,
)
from clinicgym.scoring.probes.masking import default_players
from tests.extras import needs

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap.*")


@pytest.mark.slow
@needs("probes", "shap")
def test_planted_two_fact_dependency_gets_the_attribution_mass(sampler):
    """An agent that decides on exactly two facts: >= 90% of |Shapley| lands on them."""
    kb = sampler.kb
    case = sampler.sample(0, 0)
    a = asyncio.run(
        attribute(
            lambda: PlantedAgent(), case, kb, agent="planted", permutations=2, lime_samples=24
        )
    )
    assert a.status == "ok" and a.decision == "Migraine without aura"
    keys = [f.fact_id for f in a.facts if f.concept in ("nausea", "hypertension")]
    assert len(keys) == 2
    assert a.mass_on(keys) >= 0.9
    assert a.base_value == pytest.approx(0.1) and a.full_value == pytest.approx(1.0)
    by = {f.concept: f for f in a.facts}
    assert by["nausea"].shapley == pytest.approx(0.45, abs=0.02)
    assert by["nausea"].lime > max(abs(f.lime) for f in a.facts if f.fact_id not in keys)
    # an agent that ignores the facts gets no attribution at all
    flat = asyncio.run(
        attribute(lambda: PlantedAgent(keys=()), case, kb, permutations=1, lime_samples=8)
    )
    assert flat.status == "ok" and flat.mass_on(keys) is None and flat.alignment is None


@pytest.mark.slow
@needs("probes", "shap")
def test_frequency_value_recovers_the_planted_facts_from_sampling(sampler):
    """No stated confidence: the value is how often the decision comes first over seeds."""
    kb = sampler.kb
    case = sampler.sample(0, 0)
    by = {f.concept: f.id for f in case.facts}
    keys = [by["nausea"], by["hypertension"]]
    others = [p for p in default_players(case) if p not in keys][:2]
    a = asyncio.run(
        attribute(
            lambda: SamplingPlantedAgent(),
            case,
            kb,
            players=[*keys, *others],
            value="frequency",
            samples=6,
            permutations=2,
            lime_samples=8,
        )
    )
    assert a.status == "ok" and a.value == "frequency" and a.samples == 6
    assert a.decision == "Migraine without aura" and a.full_value == 1.0
    assert a.base_value is not None and a.base_value < 0.5
    assert a.evaluations <= 16  # 4 players: at most every coalition, each played once
    assert a.mass_on(keys) >= 0.9


def test_agent_errors_make_the_probe_an_error_not_a_value(sampler):
    a = asyncio.run(attribute(lambda: CrashingAgent(), sampler.sample(0, 0), sampler.kb))
    assert a.status == "error" and "HTTP 503" in (a.error or "") and a.facts == []


def test_kb_weight_is_the_log_likelihood_ratio(sampler):
    kb = sampler.kb
    case = sampler.sample(0, 0)
    cond = case.diagnosis.condition_id
    by = {f.concept: f for f in case.facts}
    assert kb_weight(by["nausea"], cond, kb) > 0  # present, linked to migraine
    assert kb_weight(by["photophobia"], cond, kb) < 0  # absent, linked to migraine
    assert kb_weight(by["cough"], cond, kb) > 0  # absent, a feature of the look-alike
    assert kb_weight(by["phi.name"], cond, kb) == 0.0


def test_lime_weights_recover_a_linear_value():
    rng = np.random.default_rng(0)
    z = lime_coalitions(6, 200, rng)
    y = 0.1 + 0.5 * z[:, 1] + 0.3 * z[:, 4]
    w = lime_weights(z, y, alpha=1e-6)
    assert w == pytest.approx([0, 0.5, 0, 0, 0.3, 0], abs=1e-6)


def test_spearman_matches_the_textbook_example_and_is_undefined_without_spread():
    from clinicgym.scoring.probes.attribution import _spearman

    # IQ against hours of television (the Wikipedia worked example): rho = -29/165
    iq = [106, 86, 100, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 0, 27, 50, 28, 29, 20, 12, 6, 17]
    assert _spearman(iq, tv) == pytest.approx(-29 / 165, abs=1e-12)
    # ties share their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert _spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert _spearman([1, 1, 1], [1, 2, 3]) is None
    assert _spearman([1, 2], [2, 1]) is None
