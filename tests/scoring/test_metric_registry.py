"""The metric registry: one entry per metric, and every display reads its lists from it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from clinicgym.scoring import metric_registry as reg
from clinicgym.scoring.metric_registry import (
    ALL,
    MEASUREMENTS,
    METRIC_GROUPS,
    METRICS,
    PERCENT,
    REGISTRY,
    shown_in,
)


def test_an_episode_gets_every_registered_metric_and_shares_are_shares(sampler, matcher):
    from clinicgym.agents.scripted import ScriptedAgent
    from clinicgym.envs.consultation import ConsultationEnv
    from clinicgym.patients.patient.patient import GroundedPatient
    from clinicgym.scoring.metrics import episode_metrics

    kb = sampler.kb
    env = ConsultationEnv(
        sampler, kb=kb, patient_factory=lambda c: GroundedPatient(c, matcher), max_turns=8
    )
    for seed in range(3):
        agent = ScriptedAgent(kb)
        obs, info = env.reset(seed=seed)
        agent.reset(obs, info)
        done = False
        while not done:
            obs, _r, term, trunc, info = env.step(asyncio.run(agent.act(obs, info)))
            done = term or trunc
        values = episode_metrics(info["episode"], env.case, kb)
        assert list(values) == [m.name for m in ALL] == list(METRICS)
        for name, value in values.items():
            if value is not None and name in PERCENT:  # a share is shown as a percentage
                assert 0.0 <= value <= 1.0, (name, value)


def test_the_derived_views_follow_the_registry():
    assert [n for g in METRIC_GROUPS.values() for n in g] == list(REGISTRY)
    assert METRICS["turns"] == REGISTRY["turns"].description
    assert set(MEASUREMENTS) == {"test_cost_usd", "readability", "jargon_per_100_words"} | {
        "turns",
        "tokens",
        "latency_s",
    }
    assert "diagnostic_accuracy" in PERCENT and "turns" not in PERCENT
    assert "brier" not in PERCENT and "confidence" in PERCENT


def test_every_display_reads_its_list_from_the_registry():
    from clinicgym.runs import console, leaderboard
    from clinicgym.runs.review import app
    from clinicgym.scoring import report

    assert list(console.SUMMARY_COLUMNS) == [m.name for m in shown_in("summary")]
    assert console.SUMMARY_COLUMNS["diagnostic_accuracy"] == "top-1"
    assert tuple(m.name for m in shown_in("report")) == report.HEADLINE
    assert tuple(m.name for m in shown_in("board")) == leaderboard.BOARD_METRICS
    assert set(leaderboard.BOARD_METRICS) & PERCENT == leaderboard.PERCENT_METRICS
    assert tuple(m.name for m in shown_in("review")) == app.SHOWN_METRICS
    for display in reg.DISPLAYS:
        assert shown_in(display), display
    with pytest.raises(ValueError, match="unknown display"):
        shown_in("sidebar")  # type: ignore[arg-type]


def test_the_registry_is_checked_on_load():
    first = ALL[0]
    with pytest.raises(ValueError, match="registered twice"):
        reg._checked((first, first))
    with pytest.raises(ValueError, match="unknown displays"):
        reg._checked((dataclasses.replace(first, shown=frozenset({"sidebar"})),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unit"):
        reg._checked((dataclasses.replace(first, unit="furlongs"),))  # type: ignore[arg-type]
    split = (first, dataclasses.replace(ALL[-1], name="x"), dataclasses.replace(first, name="y"))
    with pytest.raises(ValueError, match="is split"):
        reg._checked(split)


def test_the_report_says_which_way_is_better():
    from clinicgym.scoring.report import _better

    assert _better("diagnostic_accuracy") == " (higher is better)"
    assert _better("risk_score") == " (lower is better)"
    assert _better("tests_ordered") == "" and _better("not_a_metric") == ""
