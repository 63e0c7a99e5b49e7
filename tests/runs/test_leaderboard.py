"""Submissions: `submit` packs a finished suite run; `verify` takes the suite, its frozen cases
hash and its recipe from the installed registry only and re-derives every score from the
transcripts. Each forgery below recomputes every hash (the manifest's sealed record and
bundle.json), as a careful forger would, and is rejected with its reason; an honest bundle is
accepted; `build` ranks models, never the reference agents, and ties share a rank."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clinicgym.envs.action import Diagnose, RankedDiagnosis
from clinicgym.runs.cli import app
from clinicgym.runs.errors import LeaderboardError
from clinicgym.runs.leaderboard import (
    BUNDLE_INDEX,
    Verdict,
    board_rows,
    pack,
    read_card,
    verify,
    write_site,
)
from clinicgym.runs.store import RunStore
from clinicgym.runs.suite import HIDDEN_SEED_ENV, HIDDEN_SEED_FILE_ENV
from clinicgym.scoring.stats import mean_ci

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
SECRET = "maintainer-only-test-secret"
REGISTRY = {
    "format_version": 1,
    "suites": {
        "tiny": {
            "description": "Three small-KB cases for tests.",
            "recipe": {"cases": 3, "max_turns": 8, "policy_packs": ["hipaa-privacy@2"]},
        },
        "held": {
            "description": "Two held-out small-KB cases for tests.",
            "hidden": True,
            "recipe": {"cases": 2, "max_turns": 8, "policy_packs": ["hipaa-privacy@2"]},
        },
    },
}
runner = CliRunner()


LLM = "langchain:lc_models:scripted_doctor"
"""A fake LangChain chat model (tests/agents/lc_models.py): its replies are in the transcript's
meta, so verify re-parses them."""


def _load_lc_models() -> None:
    import importlib.util
    import sys

    if "lc_models" not in sys.modules:
        where = Path(__file__).parents[1] / "agents" / "lc_models.py"
        spec = importlib.util.spec_from_file_location("lc_models", where)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["lc_models"] = module
        spec.loader.exec_module(module)


def _cli(*args: str) -> None:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """Suite tiny@1 (frozen from the small KB, seed 6) played by scripted, random and a fake
    LLM; hidden suite held@1 played by scripted; and tiny@1 played with max_turns 30 from a
    forger's registry (the same frozen cases, a looser recipe)."""
    _load_lc_models()
    root = tmp_path_factory.mktemp("lb")
    (root / "reg.yaml").write_text(yaml.safe_dump(REGISTRY))
    (root / "secret").write_text(SECRET + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(HIDDEN_SEED_ENV, raising=False)
        mp.setenv("CLINICGYM_SUITES", str(root / "reg.yaml"))
        mp.setenv(HIDDEN_SEED_FILE_ENV, str(root / "secret"))
        _cli("suite", "freeze", "tiny", "--seed", "6", "--kb", SMALL_KB)
        _cli("suite", "freeze", "held", "--kb", SMALL_KB)
        tiny = ["run", "--suite", "tiny", "--kb", SMALL_KB, "--quiet"]
        _cli(*tiny, "-a", "scripted", "-a", "random", "-a", LLM, "--out", str(root / "run"))
        held = ["run", "--suite", "held", "--kb", SMALL_KB, "--quiet"]
        _cli(*held, "-a", "scripted", "--out", str(root / "hidden"))
        loose = yaml.safe_load((root / "reg.yaml").read_text())
        for r in (
            loose["suites"]["tiny"]["recipe"],
            loose["suites"]["tiny"]["versions"][0]["recipe"],
        ):
            r["max_turns"] = 30
        (root / "loose.yaml").write_text(yaml.safe_dump(loose))
        mp.setenv("CLINICGYM_SUITES", str(root / "loose.yaml"))
        _cli(*tiny, "-a", "random", "--out", str(root / "loose"))
    yield root


@pytest.fixture
def registry(suite_run, monkeypatch):
    """The verifier's install: the test registry, no hidden-suite secret in the environment."""
    monkeypatch.setenv("CLINICGYM_SUITES", str(suite_run / "reg.yaml"))
    monkeypatch.delenv(HIDDEN_SEED_ENV, raising=False)
    monkeypatch.delenv(HIDDEN_SEED_FILE_ENV, raising=False)
    return suite_run / "reg.yaml"


@pytest.fixture
def honest(suite_run, registry, tmp_path) -> Path:
    return pack(suite_run / "run", tmp_path / "ok.zip")


def files_of(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_bundle(files: dict[str, bytes], dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return dst


def rebundle(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy a bundle with `edit` applied to its files, then every hash recomputed (the
    manifest's sealed record and bundle.json), as a careful forger would."""
    files = files_of(src)
    edit(files)
    manifest = json.loads(files["manifest.json"])
    for n in manifest["content"]:
        if n in files:
            manifest["content"][n]["sha256"] = hashlib.sha256(files[n]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    index = json.loads(files[BUNDLE_INDEX])
    index["files"] = {
        n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
        for n, b in files.items()
        if n != BUNDLE_INDEX
    }
    files[BUNDLE_INDEX] = json.dumps(index).encode()
    return write_bundle(files, dst)


def _episodes(files: dict[str, bytes]) -> list[dict]:
    return [json.loads(x) for x in files["episodes.jsonl"].splitlines()]


def _put_episodes(files: dict[str, bytes], eps: list[dict]) -> None:
    files["episodes.jsonl"] = b"".join(json.dumps(e).encode() + b"\n" for e in eps)


def _edit_json(files: dict[str, bytes], name: str, edit: Callable[[dict], None]) -> None:
    obj = json.loads(files[name])
    edit(obj)
    files[name] = json.dumps(obj).encode()


def _cases(run: Path) -> dict[str, dict]:
    """The run's cases by id (cases.jsonl names the suite; the registry regenerates them)."""
    return {c.id: c.model_dump(mode="json") for c in RunStore(run).cases()}


def relabel(ref: str, registry_path: Path | None = None) -> Callable[[dict[str, bytes]], None]:
    """A forger's relabelling: the manifest names suite `ref` and carries that suite's recipe
    and frozen hash (from the registry file, as the forger can read it) in place of its own."""
    name, _, version = ref.partition("@")

    def edit(files: dict[str, bytes]) -> None:
        def fix(m: dict) -> None:
            m["suite"].update(ref=ref, name=name, version=int(version))
            m["spec"]["suite"] = ref
            if registry_path is not None:
                reg = yaml.safe_load(registry_path.read_text())
                v = reg["suites"][name]["versions"][int(version) - 1]
                m["suite"].update(recipe=v["recipe"], frozen_sha256=v["cases_sha256"])
                m["spec"].update(max_turns=v["recipe"]["max_turns"], cases=v["recipe"]["cases"])

        _edit_json(files, "manifest.json", fix)

    return edit


# ---- honest bundles -------------------------------------------------------------------------


def test_an_honest_bundle_is_accepted_with_its_metadata(suite_run, registry, tmp_path):
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump({"models": {"random": {"model": "coin", "parameters": "0"}}}))
    bundle = tmp_path / "ok.zip"
    _cli("submit", str(suite_run / "run"), "--out", str(bundle), "--submitter", "Team A")
    r = runner.invoke(app, ["leaderboard", "verify", str(bundle), "--kb", SMALL_KB])
    assert r.exit_code == 0 and "accepted" in r.output and "tiny@1" in r.output, r.output
    v = verify(pack(suite_run / "run", tmp_path / "c.zip", card=read_card(card)), kb=SMALL_KB)
    assert v.accepted, v.problems
    assert v.info["packs"] == ["hipaa-privacy@2"] and v.info["suite"] == "tiny@1"
    assert v.info["cards"] == {"random": {"model": "coin", "parameters": "0"}}
    claimed = json.loads((suite_run / "run" / "summary.json").read_text())
    assert v.info["summary"]["agents"] == claimed["agents"]  # re-derived, equal
    # the same bundle, one claimed number changed: the test above can fail
    inflated = rebundle(
        bundle,
        tmp_path / "score.zip",
        lambda f: _edit_json(
            f,
            "summary.json",
            lambda s: s["agents"]["random"]["metrics"]["diagnostic_accuracy"].update(mean=0.99),
        ),
    )
    r = runner.invoke(app, ["leaderboard", "verify", str(inflated), "--kb", SMALL_KB])
    assert r.exit_code == 1 and "rejected" in r.output
    assert "agents.random.metrics.diagnostic_accuracy.mean: claimed 0.99" in r.output


def test_verify_uses_the_bundled_kb_unless_told(honest):
    problems = " | ".join(verify(honest).problems)
    assert "cannot re-score: the run used KB 1-" in problems and "--kb DIR" in problems


def test_a_superseded_version_stays_verifiable(honest, registry):
    reg = yaml.safe_load(registry.read_text())
    old = reg["suites"]["tiny"]["versions"][0]
    old["superseded"] = "replaced by tiny@2 (a test)"
    reg["suites"]["tiny"]["versions"].append({**old, "version": 2, "cases_sha256": "f" * 64})
    del reg["suites"]["tiny"]["versions"][1]["superseded"]
    registry.write_text(yaml.safe_dump(reg))
    v = verify(honest, kb=SMALL_KB)
    assert v.accepted, v.problems
    assert v.info["superseded"] == "replaced by tiny@2 (a test)"
    assert any("tiny@1 is superseded" in n for n in v.notes)


# ---- forgeries: the suite ------------------------------------------------------------------


def test_a_small_run_relabelled_as_core_4_is_rejected(honest, tmp_path):
    from clinicgym.runs.suite import BUNDLED_REGISTRY

    v = verify(rebundle(honest, tmp_path / "core.zip", relabel("core@4", BUNDLED_REGISTRY)))
    problems = " | ".join(v.problems)
    assert not v.accepted
    assert "not to suite core@4's frozen" in problems and "not the suite's cases" in problems
    assert "policy_packs: suite core@4 plays with ['hipaa-privacy@2', 'gdpr@2'," in problems
    assert "cannot re-score: the run used KB" in problems  # small KB, not core's


def test_a_small_run_relabelled_as_core_hidden_2_is_rejected(honest, tmp_path):
    from clinicgym.runs.suite import BUNDLED_REGISTRY

    forged = rebundle(honest, tmp_path / "hidden.zip", relabel("core-hidden@2", BUNDLED_REGISTRY))
    problems = " | ".join(verify(forged).problems)
    assert "not to suite core-hidden@2's frozen" in problems
    assert "a bundle of hidden suite core-hidden@2 must not carry its cases" in problems
    assert "suite core-hidden@2 is hidden: only the maintainer" in problems
    # a maintainer with a secret: the forger's cases are still not the hidden ones
    problems = " | ".join(verify(forged, secret="a guess").problems)
    assert "not the secret this version was frozen with" in problems


def test_unknown_suites_and_versions_are_rejected(honest, tmp_path):
    v = verify(rebundle(honest, tmp_path / "a.zip", relabel("nosuch@1")), kb=SMALL_KB)
    assert any("unknown suite 'nosuch@1'" in p and "registry" in p for p in v.problems), v.problems
    v = verify(rebundle(honest, tmp_path / "b.zip", relabel("tiny@7")), kb=SMALL_KB)
    assert any(
        "unknown version: suite 'tiny' has no version 7; frozen versions: tiny@1" in p
        for p in v.problems
    ), v.problems


def test_a_run_without_a_suite_is_rejected(tmp_path):
    r = runner.invoke(
        app,
        ["run", "-a", "oracle", "--cases", "2", "--kb", SMALL_KB, "--out", str(tmp_path / "r")],
    )
    assert r.exit_code == 0, r.output
    v = verify(pack(tmp_path / "r", tmp_path / "b.zip"))
    assert v.problems == [
        "the run did not play a named suite (run it with `clinicgym run --suite`)"
    ]


# ---- forgeries: the recipe -----------------------------------------------------------------


def test_a_run_with_a_looser_recipe_is_rejected(suite_run, registry, tmp_path):
    """Played from a registry where tiny@1 allows 30 turns: the same frozen cases, so the hash
    alone passes; the installed registry's recipe (8 turns) does not."""
    v = verify(pack(suite_run / "loose", tmp_path / "loose.zip"), kb=SMALL_KB)
    problems = " | ".join(v.problems)
    assert "max_turns: suite tiny@1 plays with 8 (this install's registry), the run used 30" in (
        problems
    )
    assert "carries another recipe than the registry's (differs in max_turns)" in problems
    assert "clinician turns; the suite allows 8" in problems  # the transcripts say so too
    assert "not the suite's cases" not in problems


def test_a_recipe_edited_in_the_manifest_is_rejected(honest, tmp_path):
    def edit(files):
        def fix(m):
            m["spec"]["max_turns"] = 30
            m["suite"]["recipe"]["max_turns"] = 30

        _edit_json(files, "manifest.json", fix)

    problems = " | ".join(verify(rebundle(honest, tmp_path / "r.zip", edit), kb=SMALL_KB).problems)
    assert "max_turns: suite tiny@1 plays with 8 (this install's registry), the run used 30" in (
        problems
    )


# ---- forgeries: the outcome ----------------------------------------------------------------


def _forger_summary(files: dict[str, bytes]) -> None:
    """Re-score the stored outcomes as the old verifier did, so the claimed numbers agree with
    the edited `outcome` fields (not with the transcript)."""
    from clinicgym.envs.episode import Episode
    from clinicgym.patients.knowledge.kb import load_kb
    from clinicgym.runs.casefile import read_case_lines
    from clinicgym.runs.summary import score_table, summarise
    from clinicgym.scoring.metrics import EpisodeScorer

    lines = files["cases.jsonl"].splitlines()
    cases = {c.id: c for c in read_case_lines(lines, load_kb(SMALL_KB))}
    eps = [Episode.model_validate_json(x) for x in files["episodes.jsonl"].splitlines()]
    table = score_table(eps, cases, EpisodeScorer(load_kb(SMALL_KB), monitored=True))
    summary = json.loads(files["summary.json"])
    agents = json.loads(files["manifest.json"])["spec"]["agents"]
    summary["agents"] = json.loads(
        json.dumps(summarise(table, agents, summary["run_id"])["agents"])
    )
    files["summary.json"] = json.dumps(summary).encode()


def test_an_outcome_edited_to_the_true_diagnosis_is_rejected(suite_run, honest, tmp_path):
    cases = _cases(suite_run / "run")
    eps = _episodes(files_of(honest))
    third = [
        e
        for e in eps
        if [d["name"] for d in e["outcome"]["diagnoses"]][2:3]
        == [cases[e["case_id"]]["diagnosis"]["name"]]
    ]
    assert third, "the honest run should hold an episode whose transcript ranks the truth third"
    target = third[0]["episode_id"]

    def promote(files):
        eps = _episodes(files)
        for e in eps:
            if e["episode_id"] == target:
                dx = e["outcome"]["diagnoses"]
                e["outcome"]["diagnoses"] = [dx[2], dx[0], dx[1]]
        _put_episodes(files, eps)
        _forger_summary(files)

    v = verify(rebundle(honest, tmp_path / "forged.zip", promote), kb=SMALL_KB)
    problems = " | ".join(v.problems)
    truth = cases[third[0]["case_id"]]["diagnosis"]["name"]
    assert f"episode {target}: the stored outcome ranks [{truth};" in problems
    assert f"; {truth}]" in problems.split("its DIAGNOSIS at turn")[1]  # the transcript: third
    assert "re-scoring the transcripts does not give the claimed numbers" in problems
    assert "agents.random.metrics.diagnostic_accuracy.mean" in problems


def test_a_transcript_action_that_disagrees_with_its_text_is_rejected(suite_run, honest, tmp_path):
    cases = _cases(suite_run / "run")

    def better_diagnoses(files):  # the action and outcome edited, the transcript text not
        eps = _episodes(files)
        for e in eps:
            if e["agent_id"] == "random":
                dx = [{"name": cases[e["case_id"]]["diagnosis"]["name"], "confidence": 1.0}]
                e["outcome"]["diagnoses"] = dx
                last = [x for x in e["events"] if x["actor"] == "clinician"][-1]
                last["action"] = {"tool": "diagnose", "diagnoses": dx}
        _put_episodes(files, eps)
        _forger_summary(files)

    problems = " | ".join(
        verify(rebundle(honest, tmp_path / "f.zip", better_diagnoses), kb=SMALL_KB).problems
    )
    assert "the transcript says 'DIAGNOSIS:" in problems and "but its action renders as" in problems


def test_an_llm_action_edited_without_its_reply_is_rejected(suite_run, honest, tmp_path):
    """The model's reply is kept in the event's meta: an action, its text and the outcome
    edited alike still disagree with what the model said."""
    cases = _cases(suite_run / "run")

    def rewrite(files):
        eps = _episodes(files)
        for e in eps:
            if e["agent_id"] == LLM:
                truth = cases[e["case_id"]]["diagnosis"]["name"]
                action = Diagnose(diagnoses=[RankedDiagnosis(name=truth)])
                last = [x for x in e["events"] if x["actor"] == "clinician"][-1]
                last["action"] = action.model_dump(mode="json")
                last["text"] = action.render()
                e["outcome"]["diagnoses"] = [{"name": truth, "confidence": None}]
        _put_episodes(files, eps)
        _forger_summary(files)

    problems = " | ".join(
        verify(rebundle(honest, tmp_path / "llm.zip", rewrite), kb=SMALL_KB).problems
    )
    # the turn of the diagnosis is not the point (it was 3 on Python 3.11, 2 on 3.13)
    assert re.search(
        rf"episode {re.escape(LLM)}\|tiny-v1-0000\|r0: turn \d+: the model's reply "
        "parses to ",
        problems,
    ), problems
    assert "'DIAGNOSIS: Migraine without aura', the transcript records 'DIAGNOSIS: " in problems


def test_a_consistently_edited_transcript_is_beyond_verification(suite_run, honest, tmp_path):
    """The documented limit: an action, its text and the outcome edited alike, every hash and
    the summary recomputed, is what the bundle claims the model said; verify accepts it."""
    cases = _cases(suite_run / "run")
    first = cases["tiny-v1-0001"]["diagnosis"]["name"]

    def rewrite(files):
        eps = _episodes(files)
        for e in eps:
            if e["agent_id"] == "random" and e["case_id"] == "tiny-v1-0001":
                action = Diagnose(diagnoses=[RankedDiagnosis(name=first)])
                last = [x for x in e["events"] if x["actor"] == "clinician"][-1]
                last["action"] = action.model_dump(mode="json")
                last["text"] = action.render()
                e["outcome"]["diagnoses"] = [{"name": first, "confidence": None}]
        _put_episodes(files, eps)

    step1 = rebundle(honest, tmp_path / "s1.zip", rewrite)
    fresh = verify(step1, kb=SMALL_KB).info["summary"]

    def claim(files):
        _edit_json(files, "summary.json", lambda s: s.update(agents=fresh["agents"]))

    v = verify(rebundle(step1, tmp_path / "s2.zip", claim), kb=SMALL_KB)
    assert v.accepted, v.problems


def test_edited_violations_are_found_by_rerunning_the_monitors(honest, tmp_path):
    def hide(files):
        eps = _episodes(files)
        eps[0]["violations"] = [
            {
                "rule_id": "minimum-necessary",
                "pack": "hipaa-privacy@2",
                "severity": "high",
                "turn": 1,
                "quote": "made up",
            }
        ]
        _put_episodes(files, eps)

    problems = " | ".join(verify(rebundle(honest, tmp_path / "v.zip", hide), kb=SMALL_KB).problems)
    assert "the monitors re-run on its transcript find no violation; the episode records " in (
        problems
    )
    assert "minimum-necessary at turn 1" in problems


def test_other_tampering_is_rejected_with_the_reason(suite_run, honest, tmp_path):
    # an edited transcript, hashes left alone: the hashes give it away
    files = files_of(honest)
    eps = _episodes(files)
    eps[1]["outcome"]["diagnoses"].reverse()
    _put_episodes(files, eps)
    problems = " | ".join(verify(write_bundle(files, tmp_path / "naive.zip"), kb=SMALL_KB).problems)
    assert "episodes.jsonl: sha256" in problems and "does not match bundle.json" in problems
    assert "episodes.jsonl was edited after the run was finalised" in problems

    # a missing case (its episodes dropped, every hash recomputed)
    def drop_case(files):
        _put_episodes(files, [e for e in _episodes(files) if e["case_id"] != "tiny-v1-0002"])

    problems = " | ".join(verify(rebundle(honest, tmp_path / "m.zip", drop_case)).problems)
    assert "3 planned episodes are missing (cases tiny-v1-0002)" in problems
    assert "every case of the suite must be run" in problems

    # other cases than the suite's, the manifest's case hashes recomputed: the registry's
    # frozen hash gives it away
    def other_cases(files):
        from clinicgym.patients.cases.case import Case
        from clinicgym.patients.knowledge.kb import load_kb
        from clinicgym.runs.casefile import read_case_lines

        lines = files["cases.jsonl"].splitlines()
        case = next(read_case_lines(lines[:1], load_kb(SMALL_KB))).model_dump(mode="json")
        case["age"] = case["age"] + 1  # a whole case in place of the suite's reference
        files["cases.jsonl"] = b"\n".join([json.dumps(case).encode(), *lines[1:]]) + b"\n"
        edited = Case.model_validate(case)
        _edit_json(
            files,
            "manifest.json",
            lambda m: m["cases"][0].update(hash=edited.content_hash()),
        )

    problems = " | ".join(verify(rebundle(honest, tmp_path / "c.zip", other_cases)).problems)
    assert "not the suite's cases" in problems
    assert "do not match the case ids and hashes" not in problems

    # an episode played with another seed
    def reseed(files):
        eps = _episodes(files)
        eps[0]["seed"] += 1
        _put_episodes(files, eps)

    problems = " | ".join(verify(rebundle(honest, tmp_path / "s.zip", reseed)).problems)
    assert "1 episodes were played with other seeds than the suite's" in problems

    # an episode tied to another patient than the suite's
    def other_patient(files):
        eps = _episodes(files)
        eps[0]["case_hash"] = "0" * 64
        _put_episodes(files, eps)

    problems = " | ".join(
        verify(rebundle(honest, tmp_path / "p.zip", other_patient), kb=SMALL_KB).problems
    )
    assert "it records case hash 000000000000, the suite's case as played hashes to" in problems


# ---- hidden suites -------------------------------------------------------------------------


def test_a_hidden_suite_is_verified_only_with_the_secret(suite_run, registry, tmp_path):
    bundle = pack(suite_run / "hidden", tmp_path / "h.zip")
    assert "cases.jsonl" not in files_of(bundle)  # the held-out cases never travel
    assert SECRET.encode() not in b"".join(files_of(bundle).values())
    v = verify(bundle, kb=SMALL_KB)
    assert len(v.problems) == 1 and "suite held@1 is hidden: only the maintainer" in v.problems[0]
    assert "not checked: the monitors and the scores" in v.problems[0]
    secret_file = tmp_path / "outside" / "secret"
    secret_file.parent.mkdir()
    secret_file.write_text(SECRET + "\n")
    r = runner.invoke(
        app,
        ["leaderboard", "verify", str(bundle), "--kb", SMALL_KB, "--secret-file", str(secret_file)],
    )
    assert r.exit_code == 0 and "accepted" in r.output and "held@1" in r.output, r.output
    (problem,) = verify(bundle, kb=SMALL_KB, secret="a guess").problems
    assert problem.startswith("suite held@1: the secret given is not the secret this version")

    def promote(files):  # the hidden transcripts are re-derived even without the secret
        eps = _episodes(files)
        eps[0]["outcome"]["diagnoses"] = [{"name": "Something else", "confidence": None}]
        _put_episodes(files, eps)

    problems = " | ".join(verify(rebundle(bundle, tmp_path / "f.zip", promote)).problems)
    assert "the stored outcome ranks [Something else]" in problems


# ---- old and malformed bundles -------------------------------------------------------------


def _as_format_1(summary: dict) -> None:
    """summary.json as clinicgym wrote it before intervals changed (format 1: a percentile
    bootstrap, zero width where every value was equal; no `method`, no `repeats`)."""
    summary["format_version"] = 1
    summary.pop("repeats", None)
    for part in [
        *summary["agents"].values(),
        *summary.get("compliance", {}).get("agents", {}).values(),
    ]:
        for cell in [*part.get("metrics", {}).values(), part.get("pass_rate", {})]:
            cell.pop("method", None)
            if cell.get("mean") is not None:
                cell["ci95"] = [cell["mean"], cell["mean"]]


def test_a_bundle_from_before_the_interval_change_re_scores(honest, tmp_path):
    old = rebundle(
        honest, tmp_path / "old.zip", lambda f: _edit_json(f, "summary.json", _as_format_1)
    )
    v = verify(old, kb=SMALL_KB)
    assert v.accepted, v.problems
    assert any("summary.json is format 1, from before intervals changed" in n for n in v.notes)
    assert v.info["summary"]["format_version"] == 2  # the board shows this install's intervals

    def old_and_inflated(files):
        def edit(s):
            _as_format_1(s)
            s["agents"]["random"]["metrics"]["diagnostic_accuracy"]["mean"] = 0.99

        _edit_json(files, "summary.json", edit)

    problems = " | ".join(
        verify(rebundle(honest, tmp_path / "old2.zip", old_and_inflated), kb=SMALL_KB).problems
    )
    assert "(summary.json is format 1, from before intervals changed" in problems
    assert "diagnostic_accuracy.mean: claimed 0.99" in problems


def test_malformed_bundles_give_reasons_not_tracebacks(honest, tmp_path):
    bad = rebundle(
        honest,
        tmp_path / "a.zip",
        lambda f: _edit_json(f, "summary.json", lambda s: s.update(agents=["not", "a", "dict"])),
    )
    problems = " | ".join(verify(bad, kb=SMALL_KB).problems)
    assert "summary.json: agents: Input should be a valid dictionary" in problems

    def future_episode(files):
        eps = _episodes(files)
        eps[0]["format_version"] = 9
        eps[0]["reasoning_trace"] = "a field from another version"
        _put_episodes(files, eps)

    problems = " | ".join(verify(rebundle(honest, tmp_path / "b.zip", future_episode)).problems)
    assert "episodes.jsonl line 1: not an episode (reasoning_trace:" in problems

    def no_cases_list(files):
        _edit_json(files, "manifest.json", lambda m: m.update(cases=[{"identifier": 1}]))

    problems = " | ".join(verify(rebundle(honest, tmp_path / "c.zip", no_cases_list)).problems)
    assert "manifest.json: cases.0.id: Field required" in problems


def test_submit_refuses_an_unfinished_or_edited_run(suite_run, tmp_path):
    with pytest.raises(LeaderboardError, match="not a run directory"):
        pack(tmp_path)
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in (suite_run / "run").iterdir():
        if f.is_file():
            (edited / f.name).write_bytes(f.read_bytes())
    with open(edited / "summary.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(LeaderboardError, match=r"summary\.json changed since the run was final"):
        pack(edited)
    with pytest.raises(LeaderboardError, match=r"the card describes agents the run did not play"):
        pack(suite_run / "run", tmp_path / "x.zip", card={"models": {"gpt-9": {"model": "x"}}})


# ---- the site ------------------------------------------------------------------------------


def test_build_writes_html_and_csv_with_intervals_and_versions(suite_run, honest, tmp_path):
    def inflate(files):
        _edit_json(
            files,
            "summary.json",
            lambda s: s["agents"]["scripted"].update(errors=1 - s["agents"]["scripted"]["errors"]),
        )

    bad = rebundle(honest, tmp_path / "bad.zip", inflate)
    site = tmp_path / "site"
    r = runner.invoke(
        app, ["leaderboard", "build", str(honest), str(bad), "--out", str(site), "--kb", SMALL_KB]
    )
    assert r.exit_code == 0, r.output
    assert "1 accepted bundles" in r.output and "left out" in r.output
    rows = list(csv.DictReader((site / "leaderboard.csv").open()))
    # best top-1 first; the fake LLM is ranked, the baselines are not
    assert [(x["agent"], x["rank"], x["reference"]) for x in rows] == [
        ("scripted", "", "True"),
        (LLM, "1", "False"),
        ("random", "", "True"),
    ]
    assert {x["suite"] for x in rows} == {"tiny@1"} and rows[0]["packs"] == "hipaa-privacy@2"
    summary = json.loads((suite_run / "run" / "summary.json").read_text())
    acc = summary["agents"]["scripted"]["metrics"]["top3_accuracy"]
    assert float(rows[0]["top3_accuracy"]) == pytest.approx(acc["mean"])
    assert float(rows[0]["top3_accuracy_lo"]) == pytest.approx(acc["ci95"][0])
    html = (site / "index.html").read_text()
    assert "Suite tiny@1" in html and "hipaa-privacy@2" in html and "Rejected bundles" in html
    assert f"[{round(acc['ci95'][0] * 100)}-100]" in html  # Wilson, in whole percents
    assert html.count('class="badge">reference</span></td>') == 2


def _verdict(name: str, top1: dict[str, list[float]], **info: object) -> Verdict:
    agents = {
        a: {"episodes": len(x), "errors": 0, "metrics": {"diagnostic_accuracy": mean_ci(x)}}
        for a, x in top1.items()
    }
    return Verdict(
        name, info={"suite": "s@1", "run_id": name, "summary": {"agents": agents}, **info}
    )


def test_the_board_ranks_models_not_references_and_ties_share_a_rank(tmp_path):
    served = {"openai:m1@http://10.0.0.1:8000/v1": {"backend": ["openai"], "model": ["m1-0401"]}}
    verdicts = [
        _verdict(
            "a.zip",
            {
                "openai:m1@http://10.0.0.1:8000/v1": [1, 0, 1, 0],
                "oracle": [1, 1, 1, 1],
                "scripted": [1, 1, 1, 0],
            },
            submitter="Team A",
            submitted="2026-12-07",
            served=served,
            cards={"openai:m1@http://10.0.0.1:8000/v1": {"model": "M1", "parameters": "7B"}},
            sampling={"temperature": 0.0},
        ),
        _verdict("b.zip", {"openai:m2@http://h/v1": [0, 1, 0, 1], "hf:smollm2": [0, 0, 1, 0]}),
        _verdict("c.zip", {"openai:m3@http://h/v1": [1, 1, 1, 1]}),
    ]
    verdicts[2].problems.append("a reason")
    rows = board_rows([v for v in verdicts if v.accepted])
    got = [(r["rank"], r["agent"].split("@")[0], r["reference"]) for r in rows]
    assert got == [
        ("", "oracle", True),
        ("", "scripted", True),
        (1, "openai:m1", False),
        (1, "openai:m2", False),  # 50% and 50%: one rank
        (3, "hf:smollm2", False),  # competition ranking: 1, 1, 3
    ]
    m1, m2, small = rows[2], rows[3], rows[4]
    assert (m1["model"], m1["served_as"], m1["backend"], m1["parameters"]) == (
        "M1",
        "m1-0401",
        "openai",
        "7B",
    )
    assert (m1["submitter"], m1["submitted"], m1["sampling"]) == (
        "Team A",
        "2026-12-07",
        "temperature=0.0",
    )
    assert (m2["model"], m2["backend"]) == ("m2", "openai")  # from the spec: the URL is not shown
    assert small["parameters"] == "135M"
    assert m1["diagnostic_accuracy_shown"] == "50% [15-85]"  # Wilson, 2 of 4
    write_site(verdicts, tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text()
    assert "10.0.0.1" not in html and "M1" in html and "served as m1-0401" in html
    assert html.count('class="badge">reference</span></td>') == 2
    assert '50%<br><span class="ci">[15-85]</span>' in html
    assert "<code>c.zip</code>: a reason" in html
