"""Compliance reports: counts by regulation, rule and severity per agent; undecided episodes
are neither passes nor failures; JSON, Markdown and HTML renderings."""

from __future__ import annotations

import json

from clinicgym.envs.episode import Violation
from clinicgym.policies import load_packs
from clinicgym.policies.rescore import EpisodeVerdict
from clinicgym.scoring.compliance import (
    ComplianceReport,
    build_report,
    render_html,
    render_markdown,
    write_report,
)

PACKS = load_packs(["prescribing-safety@2", "hipaa-privacy@1"])


def _v(rule: str, pack: str = "prescribing-safety@2", sev: str = "critical", quote: str = "q"):
    return Violation(rule_id=rule, pack=pack, severity=sev, turn=2, quote=quote, message=f"{rule}!")


def _verdict(i: int, agent: str, status: str, violations=(), errors=(), scenarios=()):
    return EpisodeVerdict(
        episode_id=f"{agent}|c{i}|r0",
        agent_id=agent,
        case_id=f"c{i}",
        seed=i,
        status=status,
        violations=list(violations),
        errors=list(errors),
        scenarios=list(scenarios),
    )


VERDICTS = [
    _verdict(0, "safe", "pass", scenarios=["crisis"]),
    _verdict(1, "safe", "error", errors=["policy check error: unparseable"], scenarios=["crisis"]),
    _verdict(2, "safe", "skipped", errors=["backend down"]),
    _verdict(3, "safe", "pass"),
    *[
        _verdict(
            i,
            "risky",
            "fail",
            [_v("allergy-conflict", quote=f"<script>alert({i})</script>"), _v("allergy-conflict")],
            scenarios=["allergy_trap"],
        )
        for i in range(7)
    ],
    _verdict(
        8,
        "risky",
        "fail",
        [
            _v("minimum-necessary", "hipaa-privacy@1", "medium"),
            _v("moderate-interaction", sev="low"),
        ],
    ),
    _verdict(9, "risky", "pass"),
]


def test_counts_by_agent_regulation_rule_and_severity() -> None:
    r = build_report(VERDICTS, PACKS, run_id="r1", mode="rescore", agents=["risky", "safe"])
    assert list(r.agents) == ["risky", "safe"]
    safe, risky = r.agents["safe"], r.agents["risky"]
    assert (safe.episodes, safe.passed, safe.failed, safe.errors, safe.skipped) == (4, 2, 0, 1, 1)
    assert safe.judged == 2 and safe.pass_rate["mean"] == 1.0 and safe.pass_rate["n"] == 2
    assert risky.failed == 8 and risky.pass_rate["mean"] == 1 / 9
    assert risky.by_severity == {"critical": 14, "high": 0, "medium": 1, "low": 1}
    assert risky.by_regulation == {
        "NICE CG183 Drug allergy": 14,
        "HIPAA Privacy Rule": 1,
        "British National Formulary": 1,
    }
    first = risky.by_rule[0]
    assert (first.rule_id, first.violations, first.episodes, first.severity) == (
        "allergy-conflict",
        14,
        7,
        "critical",
    )
    assert [t.rule_id for t in risky.by_rule] == [
        "allergy-conflict",
        "minimum-necessary",
        "moderate-interaction",
    ]
    assert sum(e.rule_id == "allergy-conflict" for e in risky.evidence) == 5  # capped
    assert risky.by_scenario["allergy_trap"] == {"episodes": 7, "failed": 7}
    assert safe.by_scenario["crisis"] == {"episodes": 2, "failed": 0}
    assert [p["ref"] for p in r.packs] == ["prescribing-safety@2", "hipaa-privacy@1"]


def test_markdown_and_html_show_the_evidence_safely(tmp_path) -> None:
    r = build_report(VERDICTS, PACKS, run_id="r1", mode="live", notes=["KB changed"])
    md = render_markdown(r)
    assert "| risky | 9 | 1 | 8 | 0 | 0 | 11%" in md
    assert (
        "| critical | prescribing-safety@2 | allergy-conflict: No prescription in a drug-allergy group |"
        in md
    )
    assert "> KB changed" in md and "## safe" in md
    html = render_html(r)
    assert "<svg" in html and "&lt;script&gt;alert(0)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    paths = write_report(r, VERDICTS, tmp_path, "compliance")
    back = ComplianceReport.model_validate(json.loads(paths["json"].read_text()))
    assert back == r
    lines = paths["verdicts"].read_text().splitlines()
    assert len(lines) == len(VERDICTS)
    assert EpisodeVerdict.model_validate_json(lines[4]).violations[0].rule_id == "allergy-conflict"
