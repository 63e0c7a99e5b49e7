"""Re-scoring a bundle's transcripts: the registry's monitors replayed, the episodes scored
and summarised as `finalise` does, and the claimed summary compared value by value.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from clinicgym.errors import ClinicGymError
from clinicgym.runs.records import SUMMARY_FORMAT_VERSION, ManifestSpec, RunSummary

if TYPE_CHECKING:
    from clinicgym.envs.episode import Episode
    from clinicgym.patients.cases.case import Case
    from clinicgym.patients.knowledge.kb import KnowledgeBase
    from clinicgym.policies.pack import PolicyPack
    from clinicgym.policies.rescore import EpisodeVerdict
    from clinicgym.runs.suite import SuiteVersion
    from clinicgym.scoring.metrics import EpisodeScorer


MAX_EPISODE_REASONS = 20
"""Episode-level reasons listed per check; the rest are counted."""


def capped_reasons(reasons: list[str]) -> list[str]:
    """At most MAX_EPISODE_REASONS reasons, then how many more: a verdict stays readable."""
    if len(reasons) <= MAX_EPISODE_REASONS:
        return reasons
    return [*reasons[:MAX_EPISODE_REASONS], f"... and {len(reasons) - MAX_EPISODE_REASONS} more"]


def _case_hash_problems(
    derived: list[Episode], by_id: dict[str, Case], scorer: EpisodeScorer, p: list[str]
) -> bool:
    """Recorded case hashes against the cases as played; False at a case not the suite's."""
    wrong = []
    for ep in derived:
        case = by_id.get(ep.case_id)
        if case is None:
            p.append(f"episode {ep.episode_id}: case {ep.case_id} is not one of the suite's")
            return False
        played = scorer.played(ep, case).content_hash()
        if ep.status == "completed" and ep.case_hash != played:
            wrong.append(
                f"episode {ep.episode_id}: it records case hash {ep.case_hash[:12] or '(none)'}, "
                f"the suite's case as played hashes to {played[:12]}"
            )
    p.extend(capped_reasons(wrong))
    return True


def _replay_monitors(
    derived: list[Episode], verdicts: list[EpisodeVerdict]
) -> tuple[list[Episode], list[str]]:
    """The episodes with the replayed verdicts in place, and where the replay disagrees."""
    from clinicgym.policies.monitor import CHECK_ERROR_PREFIX

    redone, found = [], []
    for ep, v in zip(derived, verdicts, strict=True):
        if v.status == "error" and not v.violations and v.errors and ep.status == "completed":
            found.append(
                f"episode {ep.episode_id}: the monitors could not replay it: {v.errors[0]}"
            )
        if v.status != "skipped":
            want = sorted((x.turn, x.pack, x.rule_id, x.severity) for x in v.violations)
            have = sorted((x.turn, x.pack, x.rule_id, x.severity) for x in ep.violations)
            if want != have:
                found.append(
                    f"episode {ep.episode_id}: the monitors re-run on its transcript find "
                    f"{_rules(want)}; the episode records {_rules(have)}"
                )
            keep = [e for e in ep.errors if not e.startswith(CHECK_ERROR_PREFIX)]
            ep = ep.model_copy(update={"violations": v.violations, "errors": keep + list(v.errors)})
        redone.append(ep)
    return redone, found


def _rerun_monitors(
    derived: list[Episode],
    by_id: dict[str, Case],
    ver: SuiteVersion,
    kb: KnowledgeBase,
    p: list[str],
) -> tuple[list[PolicyPack], list[EpisodeVerdict], list[Episode]] | None:
    """The registry's packs, their verdicts and the replayed episodes; None if they cannot run."""
    from clinicgym.policies import load_packs
    from clinicgym.policies.monitor import require_judge
    from clinicgym.policies.rescore import rescore

    try:
        packs = load_packs(ver.recipe.policy_packs)
        require_judge(packs, None)
    except ClinicGymError as e:
        p.append(f"cannot re-run the monitors: {e}".replace("\n", " "))
        return None
    verdicts = asyncio.run(rescore(derived, by_id, packs, kb, ver.recipe.scenarios))
    redone, found = _replay_monitors(derived, verdicts)
    p.extend(capped_reasons(found))
    return packs, verdicts, redone


def rederive_summary(
    derived: list[Episode],
    cases: list[Case],
    ver: SuiteVersion,
    agents: list[str],
    spec: ManifestSpec,
    claimed: RunSummary,
    planned: dict[str, int],
    kb: KnowledgeBase,
    p: list[str],
) -> dict[str, Any] | None:
    """Replay the registry's packs over the re-derived transcripts (violations that differ from
    the stored ones are reasons), then score and summarise them as `finalise` does."""
    from clinicgym.runs.summary import score_table, summarise
    from clinicgym.scoring.compliance import build_report, summary_of
    from clinicgym.scoring.metrics import EpisodeScorer

    by_id = {c.id: c for c in cases}
    scorer = EpisodeScorer(kb, ver.recipe.scenarios, monitored=bool(ver.recipe.policy_packs))
    if not _case_hash_problems(derived, by_id, scorer, p):
        return None
    packs = []
    verdicts = []
    if ver.recipe.policy_packs:
        replayed = _rerun_monitors(derived, by_id, ver, kb, p)
        if replayed is None:
            return None
        packs, verdicts, derived = replayed
    table = score_table(derived, by_id, scorer)
    fresh = summarise(table, agents, claimed.run_id, spec.price_table())
    fresh["planned_episodes"] = len(planned)
    fresh["stored_episodes"] = len(table)
    if packs:
        report = build_report(
            verdicts,
            packs,
            run_id=fresh["run_id"],
            mode="live",
            agents=agents,
            kb_version=kb.version,
        )
        fresh["compliance"] = {"agents": summary_of(report)}
    return json.loads(json.dumps(fresh, default=str))


def _rules(keys: list[tuple[int, str, str, str]]) -> str:
    if not keys:
        return "no violation"
    shown = ", ".join(f"{rule} at turn {turn}" for turn, _pack, rule, _sev in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def compare_summary(
    summary: RunSummary, fresh: dict[str, Any], p: list[str], notes: list[str]
) -> None:
    """Every value of the claimed summary against the re-derived one. A summary older than
    this install's format (intervals computed another way) is held to its counts and means
    (a newer format is refused when the summary is read, `runs/records.py`)."""
    fmt = summary.format_version
    old = fmt < SUMMARY_FORMAT_VERSION
    claimed = summary.document()  # as the file holds it: the fields it lacks stay absent
    diffs: list[str] = []
    for part in ("agents", "planned_episodes", "stored_episodes", "repeats"):
        if part == "repeats" and old:
            continue
        a, b = claimed.get(part), fresh.get(part)
        diffs += _diff(_stable(a) if old else a, _stable(b) if old else b, part)
    if "compliance" in fresh or "compliance" in claimed:
        a = (claimed.get("compliance") or {}).get("agents")
        b = (fresh.get("compliance") or {}).get("agents")
        diffs += _diff(_stable(a) if old else a, _stable(b) if old else b, "compliance.agents")
    if diffs:
        diffs.sort(key=lambda d: ".ci95" in d.split(":")[0])  # means and counts quoted first
        why = (
            f" (summary.json is format {fmt}, from before intervals changed; its counts and means "
            "are compared)"
            if old
            else ""
        )
        p.append(
            f"re-scoring the transcripts does not give the claimed numbers{why}: {len(diffs)} "
            f"values differ, e.g. {'; '.join(diffs[:3])}"
        )
    elif old:
        notes.append(
            f"summary.json is format {fmt}, from before intervals changed (now Wilson or BCa): "
            "every count and mean re-derives; the board shows the intervals re-derived here"
        )


def _stable(x: Any) -> Any:
    """A summary part without what the interval change altered: intervals, their method and
    the aggregates added since (pass^k); counts and means stay."""
    if isinstance(x, dict):
        return {
            k: _stable(v)
            for k, v in x.items()
            if k not in ("ci95", "method", "pass_k", "pass_hat_k", "usage")
        }
    if isinstance(x, list):
        return [_stable(v) for v in x]
    return x


def _diff(claimed: Any, fresh: Any, where: str) -> list[str]:
    if isinstance(claimed, dict) and isinstance(fresh, dict):
        out = []
        for k in sorted(set(claimed) | set(fresh), key=str):
            out += _diff(claimed.get(k), fresh.get(k), f"{where}.{k}")
        return out
    if isinstance(claimed, list) and isinstance(fresh, list) and len(claimed) == len(fresh):
        return [
            x
            for i, (a, b) in enumerate(zip(claimed, fresh, strict=True))
            for x in _diff(a, b, f"{where}[{i}]")
        ]
    if isinstance(claimed, float) and isinstance(fresh, float):
        return (
            []
            if abs(claimed - fresh) <= 1e-9 * max(1.0, abs(fresh))
            else [f"{where}: claimed {claimed!r}, re-scored {fresh!r}"]
        )
    return [] if claimed == fresh else [f"{where}: claimed {claimed!r}, re-scored {fresh!r}"]
