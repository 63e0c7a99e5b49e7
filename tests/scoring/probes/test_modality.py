"""The modality-consistency probe: the same imaging finding as text, table and image; the
scripted baseline changes nothing, an agent that reads the picture differently is caught, and a
model over loopback HTTP gets the picture only in the image variant."""

from __future__ import annotations

import asyncio
import json
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.runs.modality_probe import imaging_cases
from clinicgym.scoring.errors import ProbeError
from clinicgym.scoring.probes.modality import (
    as_table,
    finding_rows,
    format_summary,
    imaging_conditions,
    modality_probe,
    probe_study,
)


def _fake_openai():
    """The loopback server of tests/agents (tests run in importlib mode: load it by path)."""
    return SimpleNamespace(
        **runpy.run_path(str(Path(__file__).parents[2] / "agents" / "fake_openai.py"))
    )


@pytest.fixture(scope="module")
def kb():
    return default_kb()


@pytest.fixture(scope="module")
def cases(kb):
    return imaging_cases(kb, 6, seed=0)


def test_the_table_shows_what_the_picture_draws(kb):
    case = CaseSampler(kb, conditions=["community_acquired_pneumonia"]).sample(0, 1)
    study = probe_study(case)
    assert study is not None and study.id == "a-chest_xray"
    rows = finding_rows(study)
    assert rows == [
        {"finding": "consolidation", "side": "right", "location": "lower zone", "detail": ""}
    ]
    env = ConsultationEnv([case], kb=kb, modality="image")
    env.reset(seed=0)
    obs, _, _, _, info = env.step("ORDER: chest X-ray")
    assert obs["image"].any() and "image" in info
    shown, shown_info = as_table(obs, info, study)
    assert "| consolidation | right | lower zone |  |" in shown["text"]
    assert "Image attached" not in shown["text"] and shown["text"].startswith("Result: Chest X-ray")
    assert not shown["image"].any() and "image" not in shown_info and shown_info["table"] == rows
    assert obs["image"].any()  # the env's own observation is left alone
    with pytest.raises(ProbeError, match="no picture to tabulate"):
        as_table({"text": "Result: CRP 12 mg/L"}, {}, study)


def test_imaging_conditions_are_those_with_drawn_findings(kb, cases):
    conditions = imaging_conditions(kb)
    assert {"community_acquired_pneumonia", "subarachnoid_haemorrhage"} <= set(conditions)
    assert "migraine_without_aura" not in conditions
    assert all(c.diagnosis.condition_id in conditions for c in cases)


class ReadsTheWordImage:
    """Diagnoses from how the result is shown, not from what it shows: caught by the probe."""

    agent_id = "reads-the-word-image"

    def reset(self, observation, info):
        pass

    async def act(self, observation, info):
        if isinstance(info.get("image"), np.ndarray):
            return "DIAGNOSIS: Asthma (50%)"
        return "DIAGNOSIS: Community-acquired pneumonia (50%)"


def test_scripted_is_consistent_and_a_modality_dependent_agent_is_caught(kb, cases):
    scripted = asyncio.run(
        modality_probe(make_agent_factory("scripted", kb), cases, kb, agent="scripted")
    )
    s = scripted.summary
    assert s["errors"] == 0 and s["scored"] >= 4
    assert s["changed"]["k"] == 0 and s["changed"]["ci"][0] == 0.0 and s["changed"]["ci"][1] > 0
    for row in scripted.rows:
        if row.status == "ok":
            assert row.decisions["text"] == row.decisions["image"] == row.decisions["table"]
    assert s["accuracy_vs_text"]["image"]["diff"] == 0.0

    odd = asyncio.run(modality_probe(ReadsTheWordImage, cases, kb, agent="odd"))
    o = odd.summary
    n = o["scored"]
    assert n == s["scored"] and o["changed"]["k"] == n and o["diagnosis_changed"]["k"] == n
    assert o["pairs"]["text-table"]["k"] == 0
    assert o["pairs"]["text-image"]["k"] == o["pairs"]["table-image"]["k"] == n
    assert o["accuracy"]["image"]["k"] == 0  # asthma is never an imaging case here
    lo, hi = o["accuracy_vs_text"]["image"]["ci"]
    assert hi < 0 or o["accuracy"]["text"]["k"] == 0
    assert "changed (any decision)" in format_summary(odd)


def _probe_model(spec, cases, kb):
    factory = make_agent_factory(spec, kb)

    async def go():
        try:
            return await modality_probe(factory, cases, kb, max_turns=4)
        finally:
            await factory.aclose()

    return asyncio.run(go())


def test_a_model_over_http_gets_the_picture_only_when_it_reads_images(kb, cases):
    fake = _fake_openai()
    few = cases[:4]
    with fake.FakeOpenAIServer(fake.finding_reader()) as srv:
        vision = _probe_model(f"openai:reader@{srv.url}#vision=1", few, kb)
        with_images = [i for i in range(len(srv.requests)) if srv.images(i)]
        assert len(with_images) == vision.summary["scored"]  # once per image variant
        for i in with_images:
            assert "Image attached." in json.dumps(srv.requests[i]["messages"][-1])
        n = len(srv.requests)
        blind = _probe_model(f"openai:reader@{srv.url}", few, kb)
        assert all(not srv.images(i) for i in range(n, len(srv.requests)))
    for result in (vision, blind):
        assert result.summary["errors"] == 0
        for row in result.rows:
            assert row.decisions["text"].diagnosis == row.decisions["table"].diagnosis
    # the reader guesses pneumonia from a picture: every other condition changes
    others = sum(
        r.decisions["text"].diagnosis != "community_acquired_pneumonia" for r in vision.rows
    )
    assert vision.summary["pairs"]["text-image"]["k"] == others
    # without the picture it never diagnoses: every case changes
    assert blind.summary["scored"] >= 2
    assert blind.summary["pairs"]["text-image"]["k"] == blind.summary["scored"]
    assert {r.decisions["image"].diagnosis for r in blind.rows} == {None}


def test_clinicgym_probe_modality_prints_and_writes(tmp_path):
    from clinicgym.runs.cli import app

    out = tmp_path / "m.json"
    args = ["probe-modality", "--agent", "scripted", "--cases", "2", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "changed (any decision)" in res.output and "0/" in res.output
    data = json.loads(out.read_text())
    assert data["agent"] == "scripted" and data["summary"]["changed"]["k"] == 0
    res = CliRunner().invoke(app, [*args[:2], "scriptd", *args[3:]])
    assert res.exit_code == 2 and "did you mean 'scripted'" in res.output
