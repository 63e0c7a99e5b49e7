"""Compliance reports: violations by regulation, rule and severity, per agent, with evidence.

Built from episode verdicts (the violations recorded live, or a re-scoring under other pack
versions) and written as JSON (the record), Markdown (for a README or a PR) and HTML (with a
chart). Episodes a check could not judge are counted as errors, never as passes or failures;
episodes that ended in an infrastructure error are counted as skipped.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel

from clinicgym.envs.episode import Episode
from clinicgym.envs.severity import SEVERITIES
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.policies.pack import PolicyPack
from clinicgym.policies.rescore import EpisodeVerdict, live_verdicts
from clinicgym.scoring.stats import format_ci, mean_ci

COMPLIANCE_FORMAT_VERSION = 1
TEMPLATES = Path(__file__).parent / "templates"
MAX_EVIDENCE_PER_RULE = 5
"""Quoted examples kept per agent and rule in the report (all are in verdicts.jsonl)."""


class RuleTally(BaseModel):
    """How often one rule was broken by one agent."""

    pack: str
    rule_id: str
    title: str
    regulation: str
    source: str
    severity: str
    violations: int
    episodes: int
    """Episodes with at least one violation of the rule."""


class Evidence(BaseModel):
    """One quoted violation."""

    episode_id: str
    turn: int
    pack: str
    rule_id: str
    severity: str
    quote: str
    message: str


class AgentCompliance(BaseModel):
    """One agent's compliance over a run."""

    agent: str
    episodes: int
    judged: int
    """Episodes with a verdict (pass or fail)."""
    passed: int
    failed: int
    errors: int
    """Episodes a check could not judge: neither pass nor fail."""
    skipped: int
    """Episodes that ended in an infrastructure error."""
    pass_rate: dict[str, Any]
    """Share of judged episodes with no violation: mean with a bootstrap 95% interval."""
    violations: int
    by_severity: dict[str, int]
    by_regulation: dict[str, int]
    by_rule: list[RuleTally]
    by_scenario: dict[str, dict[str, int]]
    """Scenario spec -> {'episodes', 'failed'}."""
    evidence: list[Evidence]


class ComplianceReport(BaseModel):
    """A run's compliance under a set of packs."""

    format_version: int = COMPLIANCE_FORMAT_VERSION
    run_id: str
    mode: Literal["live", "rescore"]
    """'live': violations recorded while the run played; 'rescore': transcripts re-judged."""
    created: str
    packs: list[dict[str, Any]]
    kb_version: str = ""
    notes: list[str] = []
    agents: dict[str, AgentCompliance]


def _rule_index(packs: Sequence[PolicyPack]) -> dict[tuple[str, str], Any]:
    return {(p.ref, r.id): r for p in packs for r in p.rules}


@dataclass
class _Violations:
    """One agent's violations counted by severity, regulation and rule, with quoted evidence."""

    severity: Counter[str] = field(default_factory=Counter)
    regulation: Counter[str] = field(default_factory=Counter)
    per_rule: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(pack, rule id) -> [violations, episodes with one]."""
    evidence: dict[tuple[str, str], list[Evidence]] = field(default_factory=dict)

    def add(self, v: EpisodeVerdict, rules: dict[tuple[str, str], Any]) -> None:
        """Count one episode's violations; a rule broken twice counts the episode once."""
        seen: set[tuple[str, str]] = set()
        for x in v.violations:
            key = (x.pack, x.rule_id)
            rule = rules.get(key)
            self.severity[x.severity] += 1
            self.regulation[rule.source.regulation if rule else x.source.split(",")[0]] += 1
            t = self.per_rule.setdefault(key, [0, 0])
            t[0] += 1
            if key not in seen:
                t[1] += 1
                seen.add(key)
            ev = self.evidence.setdefault(key, [])
            if len(ev) < MAX_EVIDENCE_PER_RULE:
                ev.append(
                    Evidence(
                        episode_id=v.episode_id,
                        turn=x.turn,
                        pack=x.pack,
                        rule_id=x.rule_id,
                        severity=x.severity,
                        quote=x.quote,
                        message=x.message,
                    )
                )


def _scenario_counts(mine: Sequence[EpisodeVerdict]) -> dict[str, dict[str, int]]:
    """Episodes and failures per scenario spec, sorted by spec ('(none)' for no scenario)."""
    scenarios: dict[str, dict[str, int]] = {}
    for v in mine:
        for s in v.scenarios or ["(none)"]:
            row = scenarios.setdefault(s, {"episodes": 0, "failed": 0})
            row["episodes"] += 1
            row["failed"] += v.status == "fail"
    return dict(sorted(scenarios.items()))


def _rule_tallies(
    per_rule: dict[tuple[str, str], list[int]], rules: dict[tuple[str, str], Any]
) -> list[RuleTally]:
    """The rules broken, described from their packs, most severe and most widespread first."""
    by_rule = []
    for (pack, rid), (n, eps) in per_rule.items():
        rule = rules.get((pack, rid))
        by_rule.append(
            RuleTally(
                pack=pack,
                rule_id=rid,
                title=rule.title if rule else rid,
                regulation=rule.source.regulation if rule else "",
                source=rule.source.cite() if rule else "",
                severity=rule.severity if rule else "",
                violations=n,
                episodes=eps,
            )
        )
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    by_rule.sort(key=lambda t: (rank.get(t.severity, 9), -t.episodes, t.pack, t.rule_id))
    return by_rule


def _agent_compliance(
    agent: str, mine: Sequence[EpisodeVerdict], rules: dict[tuple[str, str], Any]
) -> AgentCompliance:
    """One agent's compliance from its own episodes' verdicts."""
    judged = [v for v in mine if v.status in ("pass", "fail")]
    counted = _Violations()
    for v in mine:
        counted.add(v, rules)
    by_rule = _rule_tallies(counted.per_rule, rules)
    return AgentCompliance(
        agent=agent,
        episodes=len(mine),
        judged=len(judged),
        passed=sum(v.status == "pass" for v in mine),
        failed=sum(v.status == "fail" for v in mine),
        errors=sum(v.status == "error" for v in mine),
        skipped=sum(v.status == "skipped" for v in mine),
        pass_rate=mean_ci([float(v.status == "pass") for v in judged]),
        violations=sum(counted.severity.values()),
        by_severity={s: counted.severity.get(s, 0) for s in reversed(SEVERITIES)},
        by_regulation=dict(counted.regulation.most_common()),
        by_rule=by_rule,
        by_scenario=_scenario_counts(mine),
        evidence=[e for t in by_rule for e in counted.evidence[(t.pack, t.rule_id)]],
    )


def build_report(
    verdicts: Sequence[EpisodeVerdict],
    packs: Sequence[PolicyPack],
    *,
    run_id: str,
    mode: Literal["live", "rescore"],
    agents: Sequence[str] | None = None,
    kb_version: str = "",
    notes: Sequence[str] = (),
) -> ComplianceReport:
    """Aggregate verdicts per agent (in `agents` order, else first seen)."""
    rules = _rule_index(packs)
    order = list(agents or dict.fromkeys(v.agent_id for v in verdicts))
    out = {
        agent: _agent_compliance(agent, [v for v in verdicts if v.agent_id == agent], rules)
        for agent in order
    }
    return ComplianceReport(
        run_id=run_id,
        mode=mode,
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        packs=[p.record() for p in packs],
        kb_version=kb_version,
        notes=list(notes),
        agents=out,
    )


# ---- rendering ----------------------------------------------------------------------------------


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda m: format_ci(m, pct=True)
    env.filters["md"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def render_markdown(report: ComplianceReport) -> str:
    """The report as Markdown tables."""
    return _env().get_template("compliance.md.j2").render(r=report, severities=SEVERITIES[::-1])


def severity_chart(report: ComplianceReport) -> str:
    """An inline SVG bar chart: violations per agent, stacked by severity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = list(report.agents)
    colours = {"critical": "#7f1d1d", "high": "#dc2626", "medium": "#f59e0b", "low": "#9ca3af"}
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(agents) + 2), 3.0))
    bottom = [0] * len(agents)
    for sev in SEVERITIES[::-1]:
        vals = [report.agents[a].by_severity.get(sev, 0) for a in agents]
        ax.bar(agents, vals, bottom=bottom, label=sev, color=colours[sev])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("violations")
    ax.set_title("Violations by severity")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg") :]


def render_html(report: ComplianceReport) -> str:
    """The report as one self-contained HTML page with a chart."""
    return (
        _env()
        .get_template("compliance.html.j2")
        .render(r=report, severities=SEVERITIES[::-1], chart=severity_chart(report))
    )


def write_report(
    report: ComplianceReport,
    verdicts: Sequence[EpisodeVerdict],
    out_dir: Path,
    stem: str = "compliance",
) -> dict[str, Path]:
    """Write `<stem>.json`, `.md`, `.html` and `<stem>-verdicts.jsonl`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stem}.json",
        "md": out_dir / f"{stem}.md",
        "html": out_dir / f"{stem}.html",
        "verdicts": out_dir / f"{stem}-verdicts.jsonl",
    }
    paths["json"].write_text(
        json.dumps(report.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    with open(paths["verdicts"], "w", encoding="utf-8") as fh:
        for v in verdicts:
            fh.write(v.model_dump_json() + "\n")
    return paths


def summary_of(report: ComplianceReport) -> dict[str, Any]:
    """The few numbers a run summary keeps per agent."""
    return {
        a: {
            "pass_rate": c.pass_rate,
            "failed": c.failed,
            "errors": c.errors,
            "violations": c.violations,
            "by_severity": c.by_severity,
        }
        for a, c in report.agents.items()
    }


def live_compliance(
    episodes: Iterable[Episode],
    cases: dict[str, Case],
    packs: Sequence[PolicyPack],
    kb: KnowledgeBase,
    scenarios: Sequence[str],
    *,
    run_id: str,
    agents: Sequence[str],
    out_dir: Path,
) -> dict[str, Any]:
    """Write a run's compliance report from the violations recorded live; its summary."""
    verdicts = live_verdicts(episodes, cases, scenarios, kb)
    report = build_report(
        verdicts, packs, run_id=run_id, mode="live", agents=agents, kb_version=kb.version
    )
    paths = write_report(report, verdicts, out_dir, "compliance")
    return {"files": sorted(p.name for p in paths.values()), "agents": summary_of(report)}
