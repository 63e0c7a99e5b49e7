"""Runs with an LLM-worded patient: wordings pass the guard or are replaced, catches are stored,
the audit finds nothing in what the clinician saw, and a replay reproduces the run."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from clinicgym.patients.patient.replay import ReplayCache
from clinicgym.runs.patient_setup import PatientMaker
from clinicgym.runs.runner import execute, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore
from clinicgym.scoring.patient_fidelity import run_fidelity

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")


class FakeReply:
    def __init__(self, text):
        self.text = text


class FakeBackend:
    """Rewords faithfully, except every third call, which names a diagnosis and adds a duration."""

    def __init__(self):
        self.calls = 0

    async def chat(self, messages, **params):
        self.calls += 1
        answer = re.search(r"ANSWER: (.*)\n", messages[-1]["content"]).group(1)
        if self.calls % 3 == 0:
            return FakeReply("I've had it for three weeks and I think it's pneumonia or a UTI.")
        return FakeReply(f"Well... {answer}")

    async def aclose(self):
        pass


def _run(tmp_path, name, mode, backend):
    spec = RunSpec(
        out=tmp_path / name,
        kb_dir=SMALL_KB,
        agents=["scripted", "oracle"],
        cases=6,
        seed=2,
        patient="fake:model",
    )
    spec_grounded = spec.model_copy(update={"patient": "grounded"})
    ctx = prepare(spec_grounded)
    ctx.spec = spec
    ctx.patient = PatientMaker(
        ctx.kb, "fake:model", backend, ReplayCache(tmp_path / "cache.sqlite", mode)
    )
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    return ctx, store


@pytest.mark.slow
def test_llm_worded_run_is_guarded_audited_and_replayable(tmp_path):
    backend = FakeBackend()
    ctx, store = _run(tmp_path, "rec", "record", backend)
    eps = list(store.iter_episodes())
    assert len(eps) == 12 and all(e.status == "completed" for e in eps)
    fid = run_fidelity(eps, {c.id: c for c in ctx.cases}, ctx.kb)
    assert fid["guard_catches"].get("leak", 0) > 0  # the live guard caught the planted leaks
    assert fid["diagnosis_leak_rate"]["mean"] == 0.0  # and none reached the clinician
    assert fid["unsupported_claim_rate"]["mean"] == 0.0
    assert fid["grounded_answer_rate"]["mean"] < 1.0
    texts = [e.text for ep in eps for e in ep.events if e.actor == "patient"]
    assert any(t.startswith("Well...") for t in texts)
    replayed = FakeBackend()
    _, store2 = _run(tmp_path, "replay", "replay", replayed)
    assert replayed.calls == 0
    t1 = {e.episode_id: e.transcript() for e in eps}
    t2 = {e.episode_id: e.transcript() for e in store2.iter_episodes()}
    assert t1 == t2
