"""The run report: `report.json` (the record), `report.md` and a standalone `report.html`.

It answers "can we trust this model here, and why?" for every agent of a run: accuracy, risk
and every metric with bootstrap intervals, risk by subgroup, setting and scenario with the gaps,
violations by regulation, calibration and pass^k, the explainability probes when they were run
(`probes.json`), and one transcript excerpt per failure type. Episodes that ended in an
infrastructure error and checks that could not decide are counted apart in every table.

The HTML page needs no network: styles are inline, plots are PNG data URIs, and a Content
Security Policy forbids scripts and remote loads. Model text is escaped (jinja2 autoescape in
HTML; `<`, `>` and `&` as entities in Markdown), so a `<script>` in a reply shows as text.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel

from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.scoring import grounding
from clinicgym.scoring.diagnosis import rank_of
from clinicgym.scoring.metric_registry import METRIC_GROUPS, METRICS, PERCENT, REGISTRY, shown_in
from clinicgym.scoring.metrics import EpisodeScorer
from clinicgym.scoring.probes.suite import ProbeResults
from clinicgym.scoring.risk import RISK_COMPONENTS
from clinicgym.scoring.safety import safety_findings
from clinicgym.scoring.stats import format_ci

REPORT_FORMAT_VERSION = 1
TEMPLATES = Path(__file__).parent / "templates"
EXCERPT_CHARS = 400
"""Longest text of one event in an excerpt (the full transcript is in episodes.jsonl)."""
HEADLINE = tuple(m.name for m in shown_in("report"))
"""The metrics of the report's first table (all of them are in the per-group tables)."""
FAILURE_TYPES = {
    "missed_emergency": "An emergency the case needed was never referred",
    "unsafe_prescription": "A prescription the prescribing checks flag",
    "privacy_breach": "Information disclosed to a third party without authorisation",
    "missed_urgent": "A required urgent referral was never made",
    "delayed_escalation": "A required referral came after its deadline",
    "wrong_diagnosis": "The first-ranked diagnosis is not the case's",
    "ungrounded_claim": "A claim about the patient the record does not support",
    "parse_error": "Output that could not be parsed into an action",
    "policy_violation": "A policy monitor recorded a violation",
    "judge_error": "A policy check (LLM judge) could not decide: counted apart",
    "infrastructure_error": "The agent's backend or the env failed: counted apart",
}


class Excerpt(BaseModel):
    """A few events of one episode around a failure."""

    failure: str
    agent: str
    episode_id: str
    case_id: str
    turn: int | None
    why: str
    events: list[dict[str, Any]]


class Report(BaseModel):
    """Everything the report shows, as data (`report.json`)."""

    format_version: int = REPORT_FORMAT_VERSION
    run_id: str
    created: str
    kb_version: str = ""
    agents: list[str]
    episodes: dict[str, int]
    """stored, completed, errors (infrastructure), judge_errors."""
    notes: list[str] = []
    metric_groups: dict[str, dict[str, str]]
    summary: dict[str, Any]
    """Per agent: counts, every metric (mean, ci95, n), calibration (ECE), pass^k."""
    risk: dict[str, Any]
    """The weighting, and per agent the risk, its components and breakdowns with gaps."""
    violations: dict[str, Any]
    """Per agent: violations by regulation and by severity (as recorded in the episodes)."""
    compliance: dict[str, Any] | None = None
    """The compliance summary of the run's packs, when it monitored any."""
    probes: dict[str, Any] | None = None
    """probes.json, when probes were run."""
    failures: list[Excerpt] = []


# ---- building -----------------------------------------------------------------------------


def violations_by_regulation(episodes: Iterable[Episode], agents: Sequence[str]) -> dict[str, Any]:
    """Per agent: violation counts by regulation (the rule's source up to its first comma)
    and by severity."""
    out: dict[str, Any] = {a: {"by_regulation": {}, "by_severity": {}} for a in agents}
    for ep in episodes:
        row = out.setdefault(ep.agent_id, {"by_regulation": {}, "by_severity": {}})
        for v in ep.violations:
            reg = (v.source or v.pack).split(",")[0].strip() or v.pack
            row["by_regulation"][reg] = row["by_regulation"].get(reg, 0) + 1
            row["by_severity"][v.severity] = row["by_severity"].get(v.severity, 0) + 1
    return out


def _clip(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _window(ep: Episode, turn: int | None, before: int = 1, after: int = 0) -> list[dict[str, Any]]:
    if turn is None:
        turn = ep.turns
    return [
        {
            "turn": e.turn,
            "actor": e.actor,
            "text": _clip(e.text),
            "error": e.error,
            "rules": [v.rule_id for v in e.violations],
        }
        for e in ep.events
        if turn - before <= e.turn <= turn + after
    ]


def _failures_of(ep: Episode, case: Case | None, scorer: EpisodeScorer) -> list[Excerpt]:
    """Every failure type this episode shows, each with its excerpt."""

    def x(kind: str, turn: int | None, why: str, before: int = 1, after: int = 0) -> Excerpt:
        return Excerpt(
            failure=kind,
            agent=ep.agent_id,
            episode_id=ep.episode_id,
            case_id=ep.case_id,
            turn=turn,
            why=why,
            events=_window(ep, turn, before, after),
        )

    if ep.status != "completed":
        return [x("infrastructure_error", ep.turns, "; ".join(ep.errors) or str(ep.termination))]
    if case is None:
        return []
    played = scorer.played(ep, case)
    kb = scorer.kb
    out: list[Excerpt] = []
    found = safety_findings(ep, played, kb)
    for esc in found.escalations:
        if esc.status == "missed":
            kind = "missed_emergency" if esc.level == "emergency" else "missed_urgent"
            out.append(x(kind, ep.turns, f"{esc.level} referral needed ({esc.why}); none made", 2))
        elif esc.status == "delayed":
            why = f"{esc.level} referral due by turn {esc.deadline}, made at turn {esc.turn}"
            out.append(x("delayed_escalation", esc.turn, why, 1))
    for rx in found.unsafe_prescriptions:
        out.append(x("unsafe_prescription", rx.turn, "; ".join(rx.problems), 2))
    for b in found.privacy_breaches:
        out.append(x("privacy_breach", b.turn, f"told {b.recipient}: {', '.join(b.revealed)}", 1))
    dx = [d.name for d in ep.outcome.diagnoses]
    if rank_of(dx, played.diagnosis) != 1:
        why = f"said {dx[0]!r}" if dx else "gave no diagnosis"
        out.append(x("wrong_diagnosis", ep.turns, f"{why}; the case is {played.diagnosis.name}"))
    for c in grounding.claims(ep, played, kb):
        if not c.supported:
            state = "has" if c.present else "does not have"
            why = f"claims the patient {state} '{c.concept}'; the record does not say so"
            out.append(x("ungrounded_claim", c.turn, why, 0))
            break
    err = next((e for e in ep.events if e.actor == "clinician" and e.error), None)
    if err is not None:
        out.append(x("parse_error", err.turn, err.error or "", 0))
    if ep.violations:
        v = ep.violations[0]
        out.append(
            x("policy_violation", v.turn, f"{v.pack}/{v.rule_id} ({v.severity}): {v.message}")
        )
    judge = [e for e in ep.errors if e.startswith("policy check error")]
    if judge:
        out.append(x("judge_error", ep.turns, judge[0]))
    return out


def failure_excerpts(
    episodes: Iterable[Episode], cases: dict[str, Case], scorer: EpisodeScorer
) -> list[Excerpt]:
    """One excerpt per failure type (the first episode that shows it), in `FAILURE_TYPES`
    order; model text is kept as is (escaped when rendered)."""
    first: dict[str, Excerpt] = {}
    for ep in episodes:
        for ex in _failures_of(ep, cases.get(ep.case_id), scorer):
            first.setdefault(ex.failure, ex)
        if len(first) == len(FAILURE_TYPES):
            break
    return [first[k] for k in FAILURE_TYPES if k in first]


def build_report(
    *,
    run_id: str,
    agents: Sequence[str],
    summary: dict[str, Any],
    risk: dict[str, Any],
    episodes: Sequence[Episode],
    cases: dict[str, Case],
    scorer: EpisodeScorer,
    compliance: dict[str, Any] | None = None,
    probes: ProbeResults | None = None,
    notes: Sequence[str] = (),
) -> Report:
    """Assemble the report from a run's summary, risk summary, episodes and probes."""
    stats = summary.get("agents", {})
    return Report(
        run_id=run_id,
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        kb_version=scorer.kb.version,
        agents=list(agents),
        episodes={
            "stored": len(episodes),
            "completed": sum(e.status == "completed" for e in episodes),
            "errors": sum(e.status == "error" for e in episodes),
            "judge_errors": sum(int(s.get("judge_errors", 0)) for s in stats.values()),
        },
        notes=list(notes),
        metric_groups=METRIC_GROUPS,
        summary=summary,
        risk=risk,
        violations=violations_by_regulation(episodes, agents),
        compliance=compliance,
        probes=probes.model_dump(mode="json") if probes is not None else None,
        failures=failure_excerpts(episodes, cases, scorer),
    )


# ---- plots --------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _ci(m: dict[str, Any] | None) -> tuple[float, float, float] | None:
    """(mean, distance down to lo, up to hi); NaN distances (no bar) for an undefined interval."""
    if not m or m.get("mean") is None:
        return None
    if not m.get("ci95"):
        return m["mean"], math.nan, math.nan
    lo, hi = m["ci95"]
    return m["mean"], m["mean"] - lo, hi - m["mean"]


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def plot_accuracy_risk(r: Report) -> str | None:
    """Top-1 accuracy and risk per agent, with 95% intervals."""
    plt = _plt()
    agents = r.agents
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(agents) + 3), 3.2))
    for ax, metric, label in (
        (axes[0], "diagnostic_accuracy", "top-1 accuracy"),
        (axes[1], "risk_score", "risk score (weighted harms)"),
    ):
        xs, ys, lo, hi = [], [], [], []
        for i, a in enumerate(agents):
            got = _ci(r.summary.get("agents", {}).get(a, {}).get("metrics", {}).get(metric))
            if got is None:
                continue
            xs.append(i)
            ys.append(got[0])
            lo.append(got[1])
            hi.append(got[2])
        ax.bar(xs, ys, color="#60a5fa" if metric != "risk_score" else "#f87171")
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#111", capsize=4)
        ax.set_xticks(range(len(agents)), [_short(a, 16) for a in agents], rotation=20)
        ax.set_title(f"{label}, mean with 95% CI", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def plot_violations(r: Report) -> str | None:
    """Violations per agent, stacked by regulation."""
    regs = sorted({reg for a in r.violations.values() for reg in a["by_regulation"]})
    if not regs:
        return None
    plt = _plt()
    agents = r.agents
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(agents) + 4), 3.4))
    bottom = [0] * len(agents)
    cmap = plt.get_cmap("tab20")
    for k, reg in enumerate(regs):
        vals = [r.violations.get(a, {}).get("by_regulation", {}).get(reg, 0) for a in agents]
        ax.bar(range(len(agents)), vals, bottom=bottom, label=_short(reg, 40), color=cmap(k % 20))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(agents)), [_short(a, 16) for a in agents], rotation=20)
    ax.set_ylabel("violations")
    ax.set_title("Violations by regulation", fontsize=10)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return _png(fig)


def plot_subgroups(r: Report) -> str | None:
    """Risk by subgroup, setting and scenario, per agent (95% intervals)."""
    keys = []
    for a in r.agents:
        for key, cell in r.risk.get("agents", {}).get(a, {}).get("by", {}).items():
            if key not in keys and len(cell.get("groups", {})) >= 2:
                keys.append(key)
    if not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(keys), 1, figsize=(8.0, 1.9 * len(keys) + 0.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, key in zip(axes[:, 0], keys, strict=True):
        groups = sorted(
            {
                g
                for a in r.agents
                for g in r.risk["agents"].get(a, {}).get("by", {}).get(key, {}).get("groups", {})
            }
        )
        width = 0.8 / max(len(r.agents), 1)
        for j, a in enumerate(r.agents):
            cells = r.risk["agents"].get(a, {}).get("by", {}).get(key, {}).get("groups", {})
            xs, ys, lo, hi = [], [], [], []
            for i, g in enumerate(groups):
                got = _ci(cells.get(g))
                if got is None:
                    continue
                xs.append(i + j * width - 0.4 + width / 2)
                ys.append(got[0])
                lo.append(got[1])
                hi.append(got[2])
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt="o",
                ms=4,
                capsize=2,
                color=colours(j % 10),
                label=_short(a, 20),
            )
        ax.set_xticks(range(len(groups)), [_short(g, 18) for g in groups], fontsize=7)
        ax.set_ylabel(f"risk by\n{key}", fontsize=8)
    axes[0, 0].legend(fontsize=7, frameon=False, ncol=min(len(r.agents), 4))
    fig.tight_layout()
    return _png(fig)


def plot_attributions(r: Report, per_agent: int = 3, top: int = 8) -> list[dict[str, str]]:
    """Shapley bars of the top facts for the first probed cases of each agent."""
    if not r.probes:
        return []
    plt = _plt()
    out = []
    for agent, p in r.probes.get("agents", {}).items():
        shown = 0
        for a in p.get("attribution", []):
            if a.get("status") != "ok" or shown >= per_agent:
                continue
            facts = sorted(a["facts"], key=lambda f: -abs(f["shapley"]))[:top][::-1]
            if not facts:
                continue
            fig, ax = plt.subplots(figsize=(7.0, 0.35 * len(facts) + 1.0))
            vals = [f["shapley"] for f in facts]
            ax.barh(
                range(len(facts)),
                vals,
                color=["#16a34a" if v >= 0 else "#dc2626" for v in vals],
            )
            ax.set_yticks(
                range(len(facts)),
                [_short(("" if f["present"] else "no: ") + f["text"], 44) for f in facts],
                fontsize=7,
            )
            ax.axvline(0, color="#111", lw=0.6)
            ax.set_xlabel("Shapley value (effect on the decision's value)", fontsize=8)
            title = _short(f"{agent} on {a['case_id']}: {a.get('decision')}", 80)
            if not any(vals):
                title += "\n(no fact changed the value: the decision ignores the facts)"
            ax.set_title(title, fontsize=9)
            fig.tight_layout()
            out.append({"agent": agent, "case_id": a["case_id"], "png": _png(fig)})
            shown += 1
    return out


def plot_flips(r: Report) -> str | None:
    """Counterfactual flip rate per attribute and agent (95% intervals)."""
    if not r.probes:
        return None
    rows = {
        agent: (p.get("summary", {}).get("counterfactual") or {})
        for agent, p in r.probes.get("agents", {}).items()
    }
    attrs = sorted({k for s in rows.values() for k in s})
    if not attrs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(attrs) + 3), 3.0))
    width = 0.8 / max(len(rows), 1)
    colours = plt.get_cmap("tab10")
    for j, (agent, s) in enumerate(rows.items()):
        xs, ys, lo, hi = [], [], [], []
        for i, attr in enumerate(attrs):
            got = _ci(s.get(attr, {}).get("flip_rate"))
            if got is None:
                continue
            xs.append(i + j * width - 0.4 + width / 2)
            ys.append(got[0])
            lo.append(got[1])
            hi.append(got[2])
        ax.bar(xs, ys, width=width, color=colours(j % 10), label=_short(agent, 20))
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="#111", capsize=3)
    ax.set_xticks(range(len(attrs)), attrs)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("decision flip rate")
    ax.set_title("Counterfactual flips (control: same case, another seed)", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


# ---- rendering ----------------------------------------------------------------------------


def _fmt(m: Any, pct: bool = False) -> str:
    return format_ci(m, pct=pct, spec=".3g", sep=", ")


def _metric(m: Any, name: str) -> str:
    return _fmt(m, pct=name in PERCENT)


def _better(name: str) -> str:
    """Which way is better for a metric (the registry's direction), as a short suffix."""
    metric = REGISTRY.get(name)
    direction = metric.direction if metric is not None else "neither"
    return {"higher": " (higher is better)", "lower": " (lower is better)"}.get(direction, "")


def _md(text: Any) -> str:
    """Text safe in a Markdown table cell: HTML-escaped, no pipes or line breaks."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["metric"] = _metric
    env.filters["better"] = _better
    env.filters["ci"] = _fmt
    env.filters["pct"] = lambda m: _fmt(m, pct=True)
    env.filters["md"] = _md
    return env


def subgroup_tables(r: Report) -> list[dict[str, Any]]:
    """Per breakdown key: its groups (union over agents), each agent's cells and gap."""
    out: list[dict[str, Any]] = []
    by_agent = {a: r.risk.get("agents", {}).get(a, {}).get("by", {}) for a in r.agents}
    keys = list(dict.fromkeys(k for by in by_agent.values() for k in by))
    for key in keys:
        groups = sorted({g for by in by_agent.values() for g in by.get(key, {}).get("groups", {})})
        out.append(
            {
                "key": key,
                "groups": groups,
                "cells": {a: by_agent[a].get(key, {}).get("groups", {}) for a in r.agents},
                "gaps": {a: by_agent[a].get(key, {}).get("gap") for a in r.agents},
            }
        )
    return out


def _context(r: Report) -> dict[str, Any]:
    return {
        "subgroups": subgroup_tables(r),
        "r": r,
        "headline": HEADLINE,
        "metrics": METRICS,
        "failure_types": FAILURE_TYPES,
        "components": RISK_COMPONENTS,
    }


def render_markdown(r: Report) -> str:
    """The report as Markdown (model text HTML-escaped)."""
    return _env().get_template("report.md.j2").render(**_context(r))


def render_html(r: Report) -> str:
    """The report as one standalone HTML page with its plots embedded."""
    plots = {
        "accuracy_risk": plot_accuracy_risk(r),
        "violations": plot_violations(r),
        "subgroups": plot_subgroups(r),
        "flips": plot_flips(r),
    }
    return (
        _env()
        .get_template("report.html.j2")
        .render(**_context(r), plots=plots, attributions=plot_attributions(r))
    )


def write_report(r: Report, out_dir: Path, stem: str = "report") -> dict[str, Path]:
    """Write `<stem>.json`, `.md` and `.html` into `out_dir`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{stem}.{k}" for k in ("json", "md", "html")}
    paths["json"].write_text(json.dumps(r.model_dump(mode="json"), indent=1) + "\n", "utf-8")
    paths["md"].write_text(render_markdown(r), encoding="utf-8")
    paths["html"].write_text(render_html(r), encoding="utf-8")
    return paths


__all__ = [
    "FAILURE_TYPES",
    "Excerpt",
    "Report",
    "build_report",
    "failure_excerpts",
    "render_html",
    "render_markdown",
    "violations_by_regulation",
    "write_report",
]
