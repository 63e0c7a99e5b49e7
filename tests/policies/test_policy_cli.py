"""The command line: `clinicgym run --pack --scenario`, `policy ...`, `rescore`, `compliance`
(tests of runs/cli/policy.py; kept with the policy tests)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from policy_helpers import POLICY_KB, write_judge_pack
from typer.testing import CliRunner

from clinicgym.runs.cli import app

runner = CliRunner()
V1 = ["hipaa-privacy@1", "gdpr@1", "ai-transparency@1", "mental-health-safety@1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    args = ["run", "-a", "oracle", "-a", "unsafe", "--cases", "3", "--seed", "4", "--out", str(out)]
    args += ["--kb", str(POLICY_KB), "--max-turns", "10", "-q"]
    for p in V1:
        args += ["--pack", p]
    for s in ("third_party:role=employer", "crisis"):
        args += ["--scenario", s]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "compliance oracle: pass 100%, 0 violations" in r.output
    assert "compliance unsafe: pass 0%" in r.output
    return out


def test_policy_list_show_checks_scenarios() -> None:
    r = runner.invoke(app, ["policy", "list"], terminal_width=200)
    assert r.exit_code == 0 and r.output.count("@") >= 12 and "ai-transparency@2" in r.output
    r = runner.invoke(app, ["policy", "show", "gdpr@2"], terminal_width=200)
    assert "erasure-refusal-explained" in r.output and "Art. 12(4)" in r.output
    r = runner.invoke(app, ["policy", "checks"], terminal_width=200)
    assert "respond_within" in r.output and "llm_judge" in r.output
    r = runner.invoke(app, ["policy", "scenarios"], terminal_width=200)
    assert "third_party" in r.output and "suite = " in r.output


def test_policy_validate_reports_problems(tmp_path) -> None:
    r = runner.invoke(app, ["policy", "validate"])
    assert r.exit_code == 0 and r.output.count("OK ") >= 12
    bad = tmp_path / "bad" / "1.yaml"
    bad.parent.mkdir()
    bad.write_text("schema_version: 1\nid: bad\nversion: 1\nrules: []\n")
    r = runner.invoke(app, ["policy", "validate", str(bad)])
    assert r.exit_code == 2 and "field 'title'" in r.output and "field 'rules'" in r.output


def test_run_refuses_unknown_scenarios_and_packs_before_writing(tmp_path) -> None:
    out = tmp_path / "never"
    r = runner.invoke(app, ["run", "-a", "oracle", "--out", str(out), "--scenario", "crisiss"])
    assert r.exit_code == 2 and "unknown scenario 'crisiss'" in r.output
    r = runner.invoke(app, ["run", "-a", "oracle", "--out", str(out), "--pack", "gdpr@7"])
    assert r.exit_code == 2 and "pack 'gdpr' has no version '7'" in r.output
    assert not out.exists()


@pytest.mark.slow
def test_compliance_and_rescore_write_reports(run_dir) -> None:
    r = runner.invoke(app, ["compliance", str(run_dir)], terminal_width=200)
    assert r.exit_code == 0, r.output
    report = json.loads((run_dir / "compliance.json").read_text())
    assert report["agents"]["oracle"]["passed"] == 3
    rules = {t["rule_id"] for t in report["agents"]["unsafe"]["by_rule"]}
    assert {"no-unauthorised-disclosure", "crisis-resources", "no-false-clinician-claim"} <= rules
    args = ["rescore", str(run_dir), "-q"] + [x for p in V1 for x in ("-p", p.replace("@1", "@2"))]
    r = runner.invoke(app, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    files = sorted((run_dir / "compliance").glob("*.json"))
    assert len(files) == 1 and "rescore-hipaa-privacy@2" in files[0].name
    rescored = json.loads(files[0].read_text())
    assert rescored["mode"] == "rescore" and rescored["agents"]["oracle"]["failed"] == 0
    assert rescored["agents"]["unsafe"]["violations"] > report["agents"]["unsafe"]["violations"]


@pytest.mark.slow
def test_policy_diff_with_a_run_lists_changed_episodes(run_dir) -> None:
    args = ["policy", "diff", "ai-transparency@1", "ai-transparency@2", "--run", str(run_dir)]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert [x["rule_id"] for x in out["rules"]] == ["ai-disclosure-first-contact"]
    (run,) = out["runs"].values()
    assert run["episodes"] == 6
    changed = {c["episode_id"]: c for c in run["changed"]}
    assert changed and all(c["agent_id"] == "unsafe" for c in changed.values())
    assert all(c["added"] == ["ai-disclosure-first-contact"] for c in changed.values())


class _FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions: 'violation' when the judged turn agrees."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        turn = body["messages"][-1]["content"].rsplit("The turn to judge:", 1)[1]
        verdict = "violation" if "you're right" in turn.lower() else "compliant"
        text = json.dumps({"verdict": verdict, "quote": turn.strip()[:60]})
        if "allergies" in turn:
            text = "Hard to say."  # no verdict: recorded as an error
        data = json.dumps(
            {
                "id": "x",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
@pytest.mark.integration
def test_rescore_with_an_llm_judge_over_http(run_dir, tmp_path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        pack = write_judge_pack(tmp_path)
        args = ["rescore", str(run_dir), "-q", "-p", str(pack), "--out", str(tmp_path / "o")]
        r = runner.invoke(app, [*args, "--judge", f"openai:judge@{url}"])
        assert r.exit_code == 0, r.output
        report = json.loads(next((tmp_path / "o").glob("*.json")).read_text())
        # the oracle never agrees with a delusion; its allergy questions get no verdict, so its
        # episodes are errors: neither passes nor failures
        oracle, unsafe = report["agents"]["oracle"], report["agents"]["unsafe"]
        assert oracle["failed"] == 0 and oracle["errors"] == 3 and oracle["passed"] == 0
        assert unsafe["failed"] >= 1 and unsafe["by_rule"][0]["rule_id"] == "no-validation"
        r = runner.invoke(app, ["rescore", str(run_dir), "-q", "-p", str(pack)])
        assert r.exit_code == 2 and "use LLM-judge checks" in r.output
    finally:
        server.shutdown()


def test_judge_specs_name_a_chat_backend() -> None:
    from clinicgym.policies.errors import PolicyError
    from clinicgym.runs.judge import judge_from_spec

    assert judge_from_spec(None) is None
    with pytest.raises(PolicyError, match=r"judge spec 'gpt4'; did you mean 'openai/gpt4'\?.*hf/"):
        judge_from_spec("gpt4")
