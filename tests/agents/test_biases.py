"""Clinician-side bias probes: the bias file validates (and a broken one names file and field),
the `#bias=` option reaches the model's system prompt only, with a look-alike that is never the
case's diagnosis, and baselines reject it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from fake_openai import FakeOpenAIServer, Reply

from clinicgym.agents.biases import (
    BIASES_FILE,
    BiasedClinician,
    BiasFileError,
    load_biases,
    lookalike,
)
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.registry import make_agent_factory
from clinicgym.patients.cases.case import Diagnosis
from clinicgym.runs.runner import execute, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore
from clinicgym.scoring.probes._play import play

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"
AGENTCLINIC_IDS = {
    "recency",
    "frequency",
    "false_consensus",
    "self_diagnosis",
    "confirmation",
    "status_quo",
    "gender",
    "race",
    "sexual_orientation",
    "cultural",
    "education",
    "religion",
    "socioeconomic",
}
# phrases of AgentClinic's own bias sentences: ours are worded afresh, so none may appear
AGENTCLINIC_PHRASES = (
    "this affects how you interact with",
    "you do not trust their judgement",
    "you find out that they are a particular",
    "diagnosed their patient with cancer",
    "most frequently, doctors diagnose",
    "you are initially confident that the patient has",
    "most of your colleagues who heard about",
    "for the past 10 years",
)


def test_bundled_biases_validate_and_are_agentclinics_thirteen_in_our_words():
    lib = load_biases()
    assert set(lib.ids()) == AGENTCLINIC_IDS and len(lib.ids()) == 13
    kinds = {b.id: b.kind for b in lib.biases}
    assert sum(k == "cognitive" for k in kinds.values()) == 6
    assert sum(k == "implicit" for k in kinds.values()) == 7
    for b in lib.biases:
        assert "Schmidgall et al. 2024" in b.source and "AgentClinic" in b.source
        # cognitive biases plant a case's look-alike; implicit ones name no case detail
        assert b.needs_case == (b.kind == "cognitive"), b.id
        text = b.render("Lookalike disease").lower()
        assert not any(p in text for p in AGENTCLINIC_PHRASES), b.id
        if b.needs_case:
            assert "lookalike disease" in text


def _broken(tmp_path, edit):
    raw = yaml.safe_load(BIASES_FILE.read_text())
    edit(raw)
    path = tmp_path / "biases.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda r: r["biases"][0].update(kind="cogntive"), "bias 'recency', field 'kind'"),
        (lambda r: r["biases"][7].pop("source"), "bias 'race', field 'source'"),
        (lambda r: r["biases"][1].update(text="You think of {diagnosis} first."), "'text'"),
        (lambda r: r["biases"][2].update(id="recency"), "bias 'recency', field 'id': repeated"),
        (lambda r: r["biases"][3].update(colour="red"), "bias 'self_diagnosis', field 'colour'"),
        (lambda r: r.pop("fallback_lookalikes"), "field 'fallback_lookalikes'"),
    ],
)
def test_a_broken_bias_file_names_file_and_field(tmp_path, edit, where):
    path = _broken(tmp_path, edit)
    with pytest.raises(BiasFileError) as e:
        load_biases(path)
    assert str(path) in str(e.value) and where in str(e.value)


def test_unreadable_bias_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("biases: [unclosed\n")
    with pytest.raises(BiasFileError, match=r"bad\.yaml: not valid YAML"):
        load_biases(bad)
    with pytest.raises(BiasFileError, match="no such file"):
        load_biases(tmp_path / "missing.yaml")
    with pytest.raises(AgentSpecError, match=r"unknown bias .anchoring.*known: recency"):
        load_biases().get("anchoring")


def test_the_lookalike_is_never_the_diagnosis(sampler):
    lib = load_biases()
    for case in sampler.sample_many(40, 3):
        lure = lib.lookalike(case)
        assert lure in {d.name for d in case.differential}
        names = {case.diagnosis.name.lower(), *(s.lower() for s in case.diagnosis.synonyms)}
        assert lure.lower() not in names
    case = sampler.sample(0, 0)
    # the differential may list the diagnosis itself (by id or a synonym): it is skipped
    first = Diagnosis(code="X", name="Other name", condition_id=case.diagnosis.condition_id)
    second = Diagnosis(code="Y", name="Tension-type headache")
    moved = case.model_copy(update={"differential": [first, second]})
    assert lookalike(moved, lib.fallback_lookalikes) == "Tension-type headache"
    # no differential (an imported record): the first fallback that does not resemble it
    bare = case.model_copy(update={"differential": []})
    assert lib.lookalike(bare) == "cancer"
    cancer = bare.model_copy(
        update={"diagnosis": Diagnosis(code="C34", name="Apical lung tumor", synonyms=[])}
    )
    assert lib.lookalike(cancer) == "an anxiety disorder"


@pytest.mark.parametrize(
    "spec",
    [
        "scripted#bias=recency",
        "scripted#budget=3,bias=race",
        "random#bias=gender",
        "oracle#bias=confirmation",
        "opening#bias=status_quo",
        "unsafe#bias=religion",
        "human#bias=education",
    ],
)
def test_baselines_reject_a_bias(small_kb, spec):
    with pytest.raises(AgentSpecError, match=r"is a baseline, not a language model.*#bias="):
        make_agent_factory(spec, small_kb)


def test_model_specs_check_the_bias_before_loading(small_kb):
    # an unknown id fails before any model or server is touched (the URL is never called)
    with pytest.raises(AgentSpecError, match=r"unknown bias .recent.*known: recency"):
        make_agent_factory("openai:m@http://127.0.0.1:9/v1#bias=recent", small_kb)
    with pytest.raises(AgentSpecError, match="'bias_file' needs 'bias'"):
        make_agent_factory("openai:m@http://127.0.0.1:9/v1#bias_file=x.yaml", small_kb)
    plain = make_agent_factory("openai:m@http://127.0.0.1:9/v1#bias=none", small_kb)
    assert not isinstance(plain(), BiasedClinician)


def _diagnose_at_once(body, n):
    return Reply("DIAGNOSIS: Migraine without aura")


@pytest.mark.parametrize("bias", ["recency", "self_diagnosis", "race"])
def test_the_bias_reaches_the_system_prompt_only(small_kb, sampler, bias):
    lib = load_biases()
    case = sampler.sample(4, 1)

    async def go(spec):
        factory = make_agent_factory(spec, small_kb)
        try:
            return await play(factory, case, small_kb, seed=7, max_turns=3)
        finally:
            await factory.aclose()

    with FakeOpenAIServer(_diagnose_at_once) as srv:
        played = asyncio.run(go(f"openai:m@{srv.url}#bias={bias}"))
        asyncio.run(go(f"openai:m@{srv.url}"))
    assert played.error is None
    biased, unbiased = (r["messages"] for r in srv.requests)
    b = lib.get(bias)
    sentence = b.render(lib.lookalike(case) if b.needs_case else None)
    system = biased[0]
    assert system["role"] == "system" and system["content"].endswith("\n" + sentence)
    # the plain clinician's conversation, with only the sentence added to the system message
    assert system["content"] == unbiased[0]["content"] + "\n" + sentence
    assert biased[1:] == unbiased[1:]
    assert not any(sentence in str(m["content"]) for m in biased[1:])
    assert case.diagnosis.name not in system["content"]
    if b.needs_case:
        assert played.agent.lure in sentence and played.agent.lure != case.diagnosis.name
    # the transcript records what was sent
    first = played.episode.events[1].meta["request"]["added"][0]
    assert first["content"].endswith(sentence)


def test_a_cognitive_bias_needs_the_case_before_reset(small_kb, sampler):
    from clinicgym.envs.consultation import ConsultationEnv

    factory = make_agent_factory("openai:m@http://127.0.0.1:9/v1#bias=frequency", small_kb)
    env = ConsultationEnv([sampler.sample(0, 0)], kb=small_kb)
    obs, info = env.reset(seed=0)
    with pytest.raises(AgentSpecError, match=r"bias .frequency. names a look-alike.*read_case"):
        factory().reset(obs, info)
    # an implicit bias names nothing of the case
    implicit = make_agent_factory("openai:m@http://127.0.0.1:9/v1#bias=gender", small_kb)
    implicit().reset(obs, info)


def test_clinicgym_run_plays_a_biased_model_with_its_lookalike(tmp_path):
    seen = []

    def model(body, n):
        seen.append(body["messages"][0]["content"])
        return Reply("DIAGNOSIS: Migraine without aura")

    with FakeOpenAIServer(model) as srv:
        spec = RunSpec(
            agents=[f"openai:m@{srv.url}#bias=confirmation"],
            cases=3,
            seed=1,
            kb_dir=str(SMALL_KB),
            out=tmp_path / "run",
            max_turns=2,
        )
        ctx = prepare(spec)
        store = RunStore.open(spec, ctx.cases, ctx.kb.version)
        asyncio.run(execute(ctx, store))
        store.close()
    lib = load_biases()
    want = {lib.get("confirmation").render(lib.lookalike(c)) for c in ctx.cases}
    assert {s.rsplit("\n", 1)[1] for s in seen} == want
    for c in ctx.cases:
        assert not any(c.diagnosis.name in s for s in seen)
