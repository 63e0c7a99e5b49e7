"""What changed between two pack versions, and which stored episodes change verdict.

Rules are matched by id: added, removed, or changed (every differing field, as a dotted path
with the old and new value). Verdict changes compare two re-scorings of the same episodes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from clinicgym.policies.pack import PolicyPack
from clinicgym.policies.rescore import EpisodeVerdict

_META = ("title", "jurisdiction", "effective", "summary", "changes")


class RuleChange(BaseModel):
    """One rule that differs between the two packs."""

    rule_id: str
    kind: Literal["added", "removed", "changed"]
    title: str
    severity: str
    changes: list[str] = []
    """'severity: high -> critical', 'check.args.within_turns: 2 -> 1', ..."""


class PackDiff(BaseModel):
    """The differences between two packs (usually two versions of one)."""

    old: str
    new: str
    meta: list[str] = []
    rules: list[RuleChange] = []


class VerdictChange(BaseModel):
    """A stored episode judged differently under the new pack."""

    episode_id: str
    agent_id: str
    old: str
    new: str
    added: list[str] = []
    """Rules it now violates that it did not before."""
    removed: list[str] = []
    """Rules it no longer violates."""


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'check.args.within_turns': 2, ...}: nested dicts to dotted paths (lists kept whole)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _short(v: Any, limit: int = 80) -> str:
    s = v.isoformat() if isinstance(v, dt.date) else repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _change(path: str, a: Any, b: Any) -> str:
    if isinstance(a, list) and isinstance(b, list):
        plus = [x for x in b if x not in a]
        minus = [x for x in a if x not in b]
        if plus or minus:
            parts = ([f"+{_short(plus)}"] if plus else []) + (
                [f"-{_short(minus)}"] if minus else []
            )
            return f"{path}: {' '.join(parts)}"
    return f"{path}: {_short(a)} -> {_short(b)}"


def diff_packs(old: PolicyPack, new: PolicyPack) -> PackDiff:
    """Rule-by-rule differences from `old` to `new`."""
    out = PackDiff(old=old.ref, new=new.ref)
    for field in _META:
        a, b = getattr(old, field), getattr(new, field)
        if a != b:
            out.meta.append(
                f"{field}: {_short(a)} -> {_short(b)}"
                if field != "changes"
                else f"changes: {' '.join(str(b).split())}"
            )
    rules_a = {r.id: r for r in old.rules}
    rules_b = {r.id: r for r in new.rules}
    for rid, r in rules_b.items():
        if rid not in rules_a:
            out.rules.append(
                RuleChange(rule_id=rid, kind="added", title=r.title, severity=r.severity)
            )
    for rid, r in rules_a.items():
        if rid not in rules_b:
            out.rules.append(
                RuleChange(rule_id=rid, kind="removed", title=r.title, severity=r.severity)
            )
            continue
        fa = flatten(r.model_dump(mode="json", exclude={"description"}))
        fb = flatten(rules_b[rid].model_dump(mode="json", exclude={"description"}))
        changes = [
            _change(k, fa.get(k), fb.get(k))
            for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)
        ]
        if r.description != rules_b[rid].description:
            changes.append("description: reworded")
        if changes:
            out.rules.append(
                RuleChange(
                    rule_id=rid,
                    kind="changed",
                    title=rules_b[rid].title,
                    severity=rules_b[rid].severity,
                    changes=changes,
                )
            )
    return out


def verdict_changes(
    old: Sequence[EpisodeVerdict], new: Sequence[EpisodeVerdict]
) -> list[VerdictChange]:
    """Episodes whose status or set of violated rules differs between two re-scorings."""
    before = {v.episode_id: v for v in old}
    out = []
    for v in new:
        b = before.get(v.episode_id)
        if b is None:
            continue
        ra = {x.rule_id for x in b.violations}
        rb = {x.rule_id for x in v.violations}
        if b.status != v.status or ra != rb:
            out.append(
                VerdictChange(
                    episode_id=v.episode_id,
                    agent_id=v.agent_id,
                    old=b.status,
                    new=v.status,
                    added=sorted(rb - ra),
                    removed=sorted(ra - rb),
                )
            )
    return out
