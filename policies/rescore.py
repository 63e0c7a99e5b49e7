"""Re-scoring: judge stored transcripts under any pack version, without re-running the model.

Each stored episode is replayed event by event through a fresh `PolicyMonitor` (its old
violations stripped), on the case as it was played: the stored case with the run's scenarios
re-applied from the episode's seed, checked against the episode's case hash so a transcript is
never judged against the wrong patient. A verdict is `pass` (no violation), `fail`, `error`
(a check could not decide, or the case could not be rebuilt: never counted as pass or fail) or
`skipped` (the episode itself ended in an infrastructure error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from clinicgym.envs.episode import Episode, Violation
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.policies.check import Judge
from clinicgym.policies.errors import PolicyError
from clinicgym.policies.monitor import CHECK_ERROR_PREFIX, PolicyMonitor
from clinicgym.policies.pack import PolicyPack
from clinicgym.policies.scenario import played_case

VerdictStatus = Literal["pass", "fail", "error", "skipped"]


class EpisodeVerdict(BaseModel):
    """One episode judged under a set of packs."""

    model_config = ConfigDict(extra="forbid")
    episode_id: str
    agent_id: str
    case_id: str
    seed: int
    repeat: int = 0
    status: VerdictStatus
    scenarios: list[str] = []
    """Scenario specs applied to the episode ('suite' resolved to its member)."""
    violations: list[Violation] = []
    errors: list[str] = []
    """Checks that could not decide, or why the episode could not be judged."""


def _status(violations: Sequence[Violation], errors: Sequence[str]) -> VerdictStatus:
    if violations:
        return "fail"
    return "error" if errors else "pass"


def _verdict(ep: Episode, **kw: object) -> EpisodeVerdict:
    return EpisodeVerdict(
        episode_id=ep.episode_id,
        agent_id=ep.agent_id,
        case_id=ep.case_id,
        seed=ep.seed,
        repeat=ep.repeat,
        **kw,  # type: ignore[arg-type]
    )


def _played(
    ep: Episode, cases: dict[str, Case], scenarios: Sequence[str], kb: KnowledgeBase
) -> Case:
    case = cases.get(ep.case_id)
    if case is None:
        raise PolicyError(f"episode {ep.episode_id}: case {ep.case_id!r} is not in the run's cases")
    played = played_case(case, scenarios, ep.seed, kb)
    if ep.case_hash and played.content_hash() != ep.case_hash:
        raise PolicyError(
            f"episode {ep.episode_id}: the case rebuilt from cases.jsonl with scenarios "
            f"{list(scenarios)} and seed {ep.seed} does not hash as the episode recorded "
            f"({played.content_hash()[:12]} vs {ep.case_hash[:12]}); a changed KB or scenario "
            "code? Not judged."
        )
    return played


def live_verdicts(
    episodes: Iterable[Episode],
    cases: dict[str, Case],
    scenarios: Sequence[str],
    kb: KnowledgeBase,
) -> list[EpisodeVerdict]:
    """Verdicts from the violations recorded while the episodes ran (no replay)."""
    out = []
    for ep in episodes:
        if ep.status == "error":
            out.append(_verdict(ep, status="skipped", errors=list(ep.errors)))
            continue
        errors = [e for e in ep.errors if e.startswith(CHECK_ERROR_PREFIX)]
        try:
            names = _played(ep, cases, scenarios, kb).extra.get("scenarios", [])
        except PolicyError:
            names = list(scenarios)
        out.append(
            _verdict(
                ep,
                status=_status(ep.violations, errors),
                scenarios=names,
                violations=list(ep.violations),
                errors=errors,
            )
        )
    return out


def replay(episode: Episode, case: Case, monitor: PolicyMonitor) -> list[Violation]:
    """Feed a stored transcript through a monitor, as the env did; the new violations."""
    monitor.reset(case)
    found: list[Violation] = []
    for ev in episode.events:
        clean = ev.model_copy(update={"violations": []}) if ev.violations else ev
        found.extend(monitor.observe(clean))
    return found


async def rescore(
    episodes: Iterable[Episode],
    cases: dict[str, Case],
    packs: Sequence[PolicyPack],
    kb: KnowledgeBase,
    scenarios: Sequence[str] = (),
    *,
    judge: Judge | None = None,
    on_verdict: Callable[[EpisodeVerdict], None] | None = None,
) -> list[EpisodeVerdict]:
    """Judge every stored episode under `packs`; the model is never called."""
    monitor = PolicyMonitor(packs, kb, judge=judge)
    out = []
    for ep in episodes:
        if ep.status == "error":
            v = _verdict(ep, status="skipped", errors=list(ep.errors))
        else:
            try:
                case = _played(ep, cases, scenarios, kb)
            except PolicyError as e:
                v = _verdict(ep, status="error", scenarios=list(scenarios), errors=[str(e)])
            else:
                violations = replay(ep, case, monitor)
                settled = await monitor.settle(judge)
                violations += [viol for _, viol in settled.violations]
                violations.sort(key=lambda x: x.turn)
                errors = [str(e) for e in settled.errors]
                v = _verdict(
                    ep,
                    status=_status(violations, errors),
                    scenarios=case.extra.get("scenarios", []),
                    violations=violations,
                    errors=errors,
                )
        out.append(v)
        if on_verdict is not None:
            on_verdict(v)
    return out
