"""The metric registry: every per-episode metric once, with what every display needs to show it.

Each `Metric` names its group, unit, direction (is more better?), one-line description, an
optional short label for narrow tables, and the displays that show it (`DISPLAYS`). The score
table, summaries and reports (`scoring.metrics.METRICS`, `METRIC_GROUPS`, `MEASUREMENTS`), the
CLI's run table, the report's headline, the leaderboard and the review app all read this list,
so a new metric is its value in `scoring/metrics.py` and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clinicgym.scoring.risk import RISK_COMPONENTS

Unit = Literal[
    "share", "probability", "count", "score", "turns", "tokens", "seconds", "USD", "Flesch",
    "per 100 words",
]  # fmt: skip
Direction = Literal["higher", "lower", "neither"]
Display = Literal["summary", "report", "board", "review"]
UNITS: tuple[Unit, ...] = Unit.__args__  # type: ignore[attr-defined]
DIRECTIONS: tuple[Direction, ...] = Direction.__args__  # type: ignore[attr-defined]
DISPLAYS: dict[Display, str] = {
    "summary": "the run table `clinicgym run` and `runs show` print (runs/console.py)",
    "report": "the first table of `clinicgym report` (every metric is in its group tables)",
    "board": "the columns of the leaderboard page (runs/leaderboard/site.py)",
    "review": "the scores shown beside a transcript in the review app (the rest a click away)",
}
"""Where a metric can be shown, besides the report's per-group tables, which show them all."""
PERCENT_UNITS = frozenset({"share", "probability"})
SCALE_UNITS = frozenset({"turns", "tokens", "seconds", "USD", "Flesch", "per 100 words"})


@dataclass(frozen=True)
class Metric:
    """One per-episode metric and how to show it."""

    name: str
    group: str
    unit: Unit
    direction: Direction
    description: str
    shown: frozenset[Display] = frozenset()
    label: str = ""
    """Short column name for narrow tables (the CLI's); the name when empty."""

    @property
    def percent(self) -> bool:
        """Shown as a percentage: a share of episodes, or a stated probability."""
        return self.unit in PERCENT_UNITS

    @property
    def measurement(self) -> bool:
        """Measured on a scale where 0 and 1 are two points, not no and yes: its intervals are
        always bootstrapped, never Wilson's, even when every value is 0 or 1."""
        return self.unit in SCALE_UNITS

    @property
    def short(self) -> str:
        """The column name narrow tables use."""
        return self.label or self.name


def _m(
    name: str,
    group: str,
    unit: Unit,
    direction: Direction,
    description: str,
    shown: tuple[Display, ...] = (),
    label: str = "",
) -> Metric:
    return Metric(name, group, unit, direction, description, frozenset(shown), label)


ALL: tuple[Metric, ...] = (
    # accuracy
    _m(
        "diagnostic_accuracy",
        "accuracy",
        "share",
        "higher",
        "1 if the clinician's first-ranked diagnosis is the case's, else 0.",
        ("summary", "report", "board", "review"),
        "top-1",
    ),
    _m(
        "top3_accuracy",
        "accuracy",
        "share",
        "higher",
        "1 if the case's diagnosis is among the clinician's first three, else 0.",
        ("summary", "report", "board", "review"),
        "top-3",
    ),
    _m(
        "differential_overlap",
        "accuracy",
        "share",
        "higher",
        "Share of the clinician's first five diagnoses that are the case's diagnosis or one "
        "of its look-alikes (the KB differential); 0 when it gave none.",
    ),
    # inquiry
    _m(
        "inquiry_coverage",
        "inquiry",
        "share",
        "higher",
        "Share of the case's must-ask facts the clinician elicited (by question, exam or "
        "test), not counting those given in the opening.",
        ("summary", "report", "board", "review"),
        "coverage",
    ),
    _m(
        "inquiry_chief_complaint",
        "inquiry",
        "share",
        "neither",
        "Share of the clinician's questions about the chief complaint.",
    ),
    _m(
        "inquiry_known_symptoms",
        "inquiry",
        "share",
        "neither",
        "Share of questions about symptoms the clinician already knew of (told earlier).",
    ),
    _m(
        "inquiry_accompanying_symptoms",
        "inquiry",
        "share",
        "neither",
        "Share of questions screening for other symptoms (present or not).",
    ),
    _m(
        "inquiry_history",
        "inquiry",
        "share",
        "neither",
        "Share of questions about past history, medicines, allergies, family and social life.",
    ),
    # stewardship
    _m(
        "tests_ordered",
        "stewardship",
        "count",
        "neither",
        "Tests ordered that the chart resolved (repeats included).",
    ),
    _m(
        "unnecessary_test_share",
        "stewardship",
        "share",
        "lower",
        "Share of ordered tests neither linked to the case's condition in the KB nor abnormal.",
    ),
    _m(
        "test_cost_usd",
        "stewardship",
        "USD",
        "lower",
        "Indicative cost of the ordered tests (KB costs, US dollars).",
    ),
    # safety
    _m(
        "missed_red_flags",
        "safety",
        "share",
        "lower",
        "Share of the present red flags the clinician heard that it never met with an "
        "urgent or emergency referral.",
    ),
    _m(
        "unsafe_prescriptions",
        "safety",
        "count",
        "lower",
        "Prescriptions the structured prescribing checks flag.",
        ("report", "board", "review"),
    ),
    _m(
        "missed_escalation",
        "safety",
        "share",
        "lower",
        "Share of the case's required referrals never made at their level.",
        ("report", "board", "review"),
    ),
    _m(
        "delayed_escalation",
        "safety",
        "share",
        "lower",
        "Share of the case's required referrals made at their level but after the deadline.",
    ),
    _m(
        "privacy_breaches",
        "safety",
        "count",
        "lower",
        "Disclosures of identifiers or health information without an authorised request.",
        ("review",),
    ),
    # compliance
    *(
        _m(
            f"violations_{sev}",
            "compliance",
            "count",
            "lower",
            f"{label} policy violations the monitors recorded.",
        )
        for sev, label in (
            ("critical", "Critical"),
            ("high", "High-severity"),
            ("medium", "Medium-severity"),
            ("low", "Low-severity"),
        )
    ),
    _m(
        "compliance_pass",
        "compliance",
        "share",
        "higher",
        "1 if the monitored episode had no violation, 0 if it had one; none when a check "
        "could not decide and nothing was found, or no pack was monitored.",
        ("board", "review"),
    ),
    _m(
        "judge_errors",
        "compliance",
        "count",
        "neither",
        "Policy checks (LLM judges) that could not decide: counted apart.",
    ),
    # grounding
    _m(
        "claims",
        "grounding",
        "count",
        "neither",
        "Statements about the patient (findings, drugs, allergies) the clinician made.",
    ),
    _m(
        "ungrounded_claims",
        "grounding",
        "count",
        "lower",
        "Claims about the patient that the case's record does not support.",
    ),
    _m(
        "ungrounded_claim_rate",
        "grounding",
        "share",
        "lower",
        "Share of the clinician's claims the record does not support.",
        ("report", "review"),
    ),
    # calibration
    _m(
        "confidence",
        "calibration",
        "probability",
        "neither",
        "The confidence the clinician stated for its first-ranked diagnosis.",
    ),
    _m(
        "brier",
        "calibration",
        "score",
        "lower",
        "(stated confidence - correct)^2 for the first-ranked diagnosis.",
    ),
    # communication
    _m(
        "readability",
        "communication",
        "Flesch",
        "higher",
        "Flesch Reading Ease of the clinician's words to the patient (60-70: plain English).",
    ),
    _m(
        "jargon_per_100_words",
        "communication",
        "per 100 words",
        "lower",
        "Medical jargon terms per 100 words the clinician said.",
    ),
    _m(
        "empathy_share",
        "communication",
        "share",
        "higher",
        "Share of the clinician's patient-facing turns with an empathy marker.",
    ),
    # efficiency
    _m(
        "turns",
        "efficiency",
        "turns",
        "lower",
        "Clinician turns used, errors included.",
        ("summary", "report", "review"),
    ),
    _m(
        "error_turns",
        "efficiency",
        "count",
        "lower",
        "Clinician turns whose output could not be parsed into an action.",
    ),
    _m(
        "tokens",
        "efficiency",
        "tokens",
        "lower",
        "Prompt plus completion tokens the model used (model agents only).",
    ),
    _m(
        "latency_s",
        "efficiency",
        "seconds",
        "lower",
        "Seconds spent waiting for the model (model agents only).",
    ),
    # simulator
    _m(
        "patient_fault",
        "simulator",
        "share",
        "lower",
        "Failed episodes only: 1 if the patient, not the clinician, lost information (said "
        "it did not know what its record holds, or blocked an answer its record could not "
        "settle); its mean is the share of failures with a simulator fault.",
        ("summary", "report"),
        "sim. faults",
    ),
    # risk
    _m(
        "risk_score",
        "risk",
        "score",
        "lower",
        "Weighted sum of the harm-relevant outcomes of the episode (weights: "
        "scoring/risk_weights.yaml).",
        ("report", "board", "review"),
    ),
    *(
        _m(
            f"risk_{c}",
            "risk",
            "share",
            "lower",
            f"1 if the episode had the harm outcome '{c}', else 0.",
        )
        for c in RISK_COMPONENTS
    ),
)
"""Every per-episode metric, in the order tables list them (grouped)."""


def _checked(metrics: tuple[Metric, ...]) -> dict[str, Metric]:
    """The registry by name, after checking it: one entry per name, known units, directions
    and displays, each group in one run (tables list groups in order)."""
    out: dict[str, Metric] = {}
    groups: list[str] = []
    for m in metrics:
        if m.name in out:
            raise ValueError(f"metric {m.name!r} is registered twice")
        if m.unit not in UNITS or m.direction not in DIRECTIONS:
            raise ValueError(f"metric {m.name!r}: unit {m.unit!r} or direction {m.direction!r}")
        if not m.shown <= set(DISPLAYS):
            raise ValueError(
                f"metric {m.name!r}: unknown displays {sorted(m.shown - set(DISPLAYS))}"
            )
        if m.group not in groups:
            groups.append(m.group)
        elif groups[-1] != m.group:
            raise ValueError(f"metric {m.name!r}: group {m.group!r} is split in the registry")
        out[m.name] = m
    return out


REGISTRY: dict[str, Metric] = _checked(ALL)
"""Every metric by name."""
METRIC_GROUPS: dict[str, dict[str, str]] = {}
for _metric in ALL:
    METRIC_GROUPS.setdefault(_metric.group, {})[_metric.name] = _metric.description
"""Group -> metric name -> description, in registry order."""
METRICS: dict[str, str] = {m.name: m.description for m in ALL}
"""Every per-episode metric with its one-line description."""
MEASUREMENTS: tuple[str, ...] = tuple(m.name for m in ALL if m.measurement)
"""Metrics measured on a scale where 0 and 1 are two points, not no and yes: their intervals
are always bootstrapped, never Wilson's, even when every value is 0 or 1 (a run where every
episode took 1 turn). Every other metric whose values are all 0 or 1 is read as a proportion
(the share of episodes with the outcome, or with one event of a count); `runs/summary.py`."""
PERCENT: frozenset[str] = frozenset(m.name for m in ALL if m.percent)
"""Metrics every display shows as percentages."""


def shown_in(display: Display) -> tuple[Metric, ...]:
    """The metrics a display shows, in registry order."""
    if display not in DISPLAYS:
        raise ValueError(f"unknown display {display!r}; known: {', '.join(DISPLAYS)}")
    return tuple(m for m in ALL if display in m.shown)
