"""Targeted generation: turn a table of a model's failures into a new cohort mix.

The benchmark adapts to the model under test: conditions, subgroups and findings where a run's
model failed most get more of the next cohort, so the next suite probes its weak regions.
`runs` reads its run store and hands a plain failures table down (patients never import runs):
one row per scored episode with `condition_id`, `sex`, `age_band`, `failed` (0..1) and
optionally `present` / `absent` (finding ids the case held as present / denied).

Rates are smoothed towards the level above (condition -> overall, subgroup -> condition) with a
Beta prior of `prior` pseudo-episodes, so one unlucky episode does not swing the mix; a share
`1 - strength` of the cohort stays uniform over conditions, so nothing drops out of the suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from clinicgym.patients.cohorts.cohort import CohortSchema
from clinicgym.patients.errors import SynthesisError
from clinicgym.patients.knowledge.kb import KnowledgeBase

FAILURE_COLUMNS = ("condition_id", "sex", "age_band", "failed")
"""Columns a failures table must have; `present`, `absent` (lists of finding ids) are optional."""


class SubgroupTarget(BaseModel):
    """One subgroup within a condition: its run record and its share of the condition's rows."""

    model_config = ConfigDict(extra="forbid")
    values: dict[str, str]
    episodes: int
    failures: float
    failure_rate: float
    """Smoothed towards the condition's rate."""
    share: float
    """Share of the condition's subgroup rows."""


class FindingTarget(BaseModel):
    """A finding whose presence (or absence) went with more failures in this condition."""

    model_config = ConfigDict(extra="forbid")
    finding_id: str
    present: bool
    episodes: int
    failure_rate: float
    lift: float
    """failure_rate / the failure rate of the condition's other episodes (both smoothed)."""


class ConditionTarget(BaseModel):
    """A condition's run record and its share of the new cohort."""

    model_config = ConfigDict(extra="forbid")
    condition_id: str
    episodes: int
    failures: float
    failure_rate: float
    run_share: float
    target_share: float
    subgroups: list[SubgroupTarget] = []
    finding: FindingTarget | None = None


class TargetMix(BaseModel):
    """The new cohort's mix, derived from a run's failures; saved in the cohort manifest."""

    model_config = ConfigDict(extra="forbid")
    strength: float
    prior: float
    attributes: list[str]
    finding_share: float
    episodes: int
    overall_failure_rate: float
    conditions: list[ConditionTarget]

    def plan_cells(self, schema: CohortSchema) -> dict[str, Any]:
        """Cells for `synthesis.plan_sampling(target=...)`: condition x subgroup, and per
        condition a share conditioned on its failure-linked finding."""
        cells: list[dict[str, Any]] = []
        for c in self.conditions:
            rest = c.target_share
            if c.finding is not None:
                cond = schema.kb.conditions[c.condition_id]
                k = next(i for i, f in enumerate(cond.findings) if f.id == c.finding.finding_id)
                share = c.target_share * self.finding_share
                cells.append(
                    {
                        "where": {
                            "condition_id": c.condition_id,
                            schema.finding_column(k): c.finding.present,
                        },
                        "share": share,
                    }
                )
                rest -= share
            if c.subgroups:
                for s in c.subgroups:
                    cells.append(
                        {
                            "where": {"condition_id": c.condition_id, **s.values},
                            "share": rest * s.share,
                        }
                    )
            else:
                cells.append({"where": {"condition_id": c.condition_id}, "share": rest})
        return {"cells": [c for c in cells if c["share"] > 0]}


def check_failures(failures: pd.DataFrame) -> None:
    """Raise SynthesisError naming missing columns or bad `failed` values."""
    missing = [c for c in FAILURE_COLUMNS if c not in failures.columns]
    if missing:
        raise SynthesisError(f"failures table: missing columns {missing}")
    bad = failures["failed"][(failures["failed"] < 0) | (failures["failed"] > 1)]
    if len(bad):
        raise SynthesisError(
            f"failures table: column 'failed' must lie in 0..1; found {float(bad.iloc[0])!r}"
        )


def _smooth(fails: float, n: float, prior_rate: float, prior: float) -> float:
    return (fails + prior * prior_rate) / (n + prior)


def _check_target_inputs(failures: pd.DataFrame, kb: KnowledgeBase, strength: float) -> None:
    """Raise SynthesisError for a malformed or empty failures table, an unknown condition or a
    strength outside 0..1, before any mix is computed."""
    check_failures(failures)
    if not 0 <= strength <= 1:
        raise SynthesisError(f"--target-strength must lie in 0..1, got {strength:g}")
    if failures.empty:
        raise SynthesisError("the run has no scored episodes to target")
    unknown = sorted(set(failures["condition_id"].dropna()) - set(kb.conditions))
    if unknown:
        raise SynthesisError(f"failures table: unknown condition id {unknown[0]!r}")


def _condition_failures(by_cond: pd.DataFrame, condition_id: str) -> tuple[float, int]:
    """A condition's (failures, episodes) in the run; (0.0, 0) if the run never played it."""
    if condition_id in by_cond.index:
        return float(by_cond.loc[condition_id, "sum"]), int(by_cond.loc[condition_id, "count"])
    return 0.0, 0


def target_mix(
    failures: pd.DataFrame,
    seed_table: pd.DataFrame,
    schema: CohortSchema,
    *,
    attributes: Sequence[str] = ("sex", "age_band"),
    strength: float = 0.7,
    prior: float = 2.0,
    finding_share: float = 0.5,
    min_finding_episodes: int = 3,
    min_lift: float = 1.25,
) -> TargetMix:
    """The cohort mix that leans towards a run's failures (see the module docstring).

    `seed_table` bounds what can be asked for: only conditions and subgroups it holds are
    targeted (the synthesizer learned from it)."""
    _check_target_inputs(failures, schema.kb, strength)
    attrs = list(attributes)
    kb = schema.kb
    conditions = sorted(seed_table["condition_id"].unique())
    n_total = len(failures)
    overall = float(failures["failed"].mean())
    by_cond = failures.groupby("condition_id")["failed"].agg(["sum", "count"])
    rates: dict[str, float] = {}
    for c in conditions:
        f, n = _condition_failures(by_cond, c)
        rates[c] = _smooth(f, n, overall, prior)
    total_rate = sum(rates.values())
    out: list[ConditionTarget] = []
    for c in conditions:
        f, n = _condition_failures(by_cond, c)
        lean = rates[c] / total_rate if total_rate > 0 else 1 / len(conditions)
        share = (1 - strength) / len(conditions) + strength * lean
        rows = failures[failures["condition_id"] == c]
        seed_rows = seed_table[seed_table["condition_id"] == c]
        subgroups = _subgroups(rows, seed_rows, attrs, rates[c], prior) if attrs else []
        finding = _finding(rows, kb.conditions[c], rates[c], prior, min_finding_episodes, min_lift)
        out.append(
            ConditionTarget(
                condition_id=c,
                episodes=n,
                failures=f,
                failure_rate=round(rates[c], 6),
                run_share=n / n_total,
                target_share=share,
                subgroups=subgroups,
                finding=finding,
            )
        )
    return TargetMix(
        strength=strength,
        prior=prior,
        attributes=attrs,
        finding_share=finding_share,
        episodes=n_total,
        overall_failure_rate=overall,
        conditions=out,
    )


def _subgroups(
    rows: pd.DataFrame, seed_rows: pd.DataFrame, attrs: list[str], cond_rate: float, prior: float
) -> list[SubgroupTarget]:
    """Subgroups the seed holds for this condition, weighted by seed share x relative failure."""
    base = seed_rows.groupby(attrs).size()
    if base.empty:
        return []
    base = base / base.sum()
    run = rows.groupby(attrs)["failed"].agg(["sum", "count"]) if len(rows) else None
    weights: dict[tuple, tuple[float, int, float, float]] = {}
    for key, b in base.items():
        key = key if isinstance(key, tuple) else (key,)
        f, n = 0.0, 0
        if run is not None and key in run.index:
            f, n = float(run.loc[key, "sum"]), int(run.loc[key, "count"])
        rate = _smooth(f, n, cond_rate, prior)
        weights[key] = (b * rate / cond_rate if cond_rate > 0 else b, n, f, rate)
    total = sum(w for w, *_ in weights.values()) or 1.0
    return [
        SubgroupTarget(
            values=dict(zip(attrs, map(str, key), strict=True)),
            episodes=n,
            failures=f,
            failure_rate=round(rate, 6),
            share=w / total,
        )
        for key, (w, n, f, rate) in weights.items()
    ]


def _finding(
    rows: pd.DataFrame, cond: Any, cond_rate: float, prior: float, min_n: int, min_lift: float
) -> FindingTarget | None:
    """The (finding, present?) whose episodes failed most above the condition's other episodes
    (both groups observed; rates smoothed towards the condition's rate)."""
    if "present" not in rows.columns or rows.empty or cond_rate <= 0:
        return None
    best: FindingTarget | None = None
    for link in cond.findings:
        if link.id in cond.chief_complaint:
            continue
        for present, col in ((True, "present"), (False, "absent")):
            if col not in rows.columns:
                continue
            has = rows[col].map(lambda ids, fid=link.id: fid in (ids if ids is not None else ()))
            sub, rest = rows[has.astype(bool)], rows[~has.astype(bool)]
            if len(sub) < min_n or rest.empty:
                continue  # a finding every episode shared says nothing about failure
            rate = _smooth(float(sub["failed"].sum()), len(sub), cond_rate, prior)
            other = _smooth(float(rest["failed"].sum()), len(rest), cond_rate, prior)
            lift = rate / other if other > 0 else float("inf")
            if lift >= min_lift and (best is None or lift > best.lift):
                best = FindingTarget(
                    finding_id=link.id,
                    present=present,
                    episodes=len(sub),
                    failure_rate=round(rate, 6),
                    lift=round(lift, 4),
                )
    return best
