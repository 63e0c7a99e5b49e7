"""The monitor engine: every rule of every pack, run on every event as the episode streams.

`PolicyMonitor` implements the env's `Monitor` protocol. For each event it works out the names
the event answers to, hands it to the checks of the rules watching one of them, and turns
findings into `Violation`s citing rule id, pack 'id@version', severity, turn, quote and source.
Texts are embedded at most once per event (shared by all rules and packs). Judge checks run
after the episode (`settle`); their undecidable verdicts are errors, kept apart from violations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from clinicgym.envs.episode import Episode, Event, Violation
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.policies.check import BaseCheck, Finding, Judge, get_check
from clinicgym.policies.context import EpisodeContext
from clinicgym.policies.errors import PackError
from clinicgym.policies.events import event_names
from clinicgym.policies.match import Embedder, MatchSpec
from clinicgym.policies.pack import PolicyPack, Rule, evidence_value

CHECK_ERROR_PREFIX = "policy check error: "
"""How an undecidable check is recorded in `Episode.errors` (never a pass, never a failure)."""
MAX_QUOTE = 500


@dataclass
class _Bound:
    pack: PolicyPack
    rule: Rule
    check: BaseCheck
    watch: frozenset[str]


@dataclass
class CheckError:
    """A check that could not decide at one event (an unparseable judge verdict)."""

    pack: str
    rule_id: str
    turn: int
    detail: str

    def __str__(self) -> str:
        where = f"{self.pack} rule '{self.rule_id}' at turn {self.turn}"
        return f"{CHECK_ERROR_PREFIX}{where}: {self.detail}"


@dataclass
class Settled:
    """What the deferred (judge) checks found after an episode."""

    violations: list[tuple[int, Violation]] = field(default_factory=list)
    """(index of the event in the transcript, violation)."""
    errors: list[CheckError] = field(default_factory=list)


class PolicyMonitor:
    """Runs the rules of one or more packs on every event; one monitor per episode at a time."""

    name = "policies"

    def __init__(
        self,
        packs: Sequence[PolicyPack],
        kb: KnowledgeBase,
        *,
        embedder: Embedder | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.packs = list(packs)
        self.kb = kb
        self.judge = judge
        self._embedder = embedder
        self._rules = [
            _Bound(pack, rule, chk, frozenset(rule.watches))
            for pack in self.packs
            for rule, chk in pack.build_checks()
        ]
        self._live = [b for b in self._rules if not b.check.deferred]
        self._deferred = [b for b in self._rules if b.check.deferred]
        self.ctx: EpisodeContext | None = None
        self.errors: list[CheckError] = []
        """Undecidable checks in the current episode."""

    @property
    def needs_judge(self) -> list[str]:
        """'pack@v/rule' of every rule that needs an LLM judge."""
        return [f"{b.pack.ref}/{b.rule.id}" for b in self._deferred]

    def reset(self, case: Case) -> None:
        self.ctx = EpisodeContext(case, self.kb, self._embedder)
        self.errors = []
        for b in self._rules:
            b.check.reset(self.ctx)

    def observe(self, event: Event, history: Sequence[Event] = ()) -> list[Violation]:
        ctx = self.ctx
        if ctx is None:
            raise RuntimeError("PolicyMonitor.observe before reset(case)")
        ctx.history.append(event)
        names = event_names(event)
        if "clinician" in names:
            ctx.clinician_turns += 1
        out: list[Violation] = []
        for b in self._rules:
            if names & b.watch:
                for f in b.check.observe(event, names, ctx):
                    if f.error:
                        self.errors.append(CheckError(b.pack.ref, b.rule.id, event.turn, f.detail))
                    else:
                        out.append(self._violation(b, event, f))
        return out

    def _violation(self, b: _Bound, event: Event, f: Finding) -> Violation:
        assert self.ctx is not None
        message = f"{b.rule.title}: {f.detail}"
        if b.rule.evidence:
            cited = "; ".join(
                f"{p}={evidence_value(p, event, self.ctx)!r}" for p in b.rule.evidence
            )
            message += f" [evidence: {cited}]"
        quote = f.quote if len(f.quote) <= MAX_QUOTE else f.quote[: MAX_QUOTE - 3] + "..."
        return Violation(
            rule_id=b.rule.id,
            pack=b.pack.ref,
            severity=b.rule.severity,
            turn=event.turn,
            quote=quote,
            message=message,
            source=b.rule.source.cite(),
        )

    async def settle(self, judge: Judge | None = None) -> Settled:
        """Decide the deferred (judge) checks of the current episode."""
        out = Settled(errors=list(self.errors))
        judge = judge or self.judge
        assert self.ctx is not None
        index = {id(e): i for i, e in enumerate(self.ctx.history)}
        for b in self._deferred:
            if judge is None:
                queued = getattr(b.check, "queue", [])
                out.errors.extend(
                    CheckError(b.pack.ref, b.rule.id, ev.turn, "no LLM judge was given; not scored")
                    for ev, _ in queued
                )
                b.check.reset(self.ctx)
                continue
            rule = f"{b.rule.title} ({b.rule.source.cite()})"
            for ev, f in await b.check.judge(judge, self.ctx, rule):
                if f.error:
                    out.errors.append(CheckError(b.pack.ref, b.rule.id, ev.turn, f.detail))
                else:
                    out.violations.append((index[id(ev)], self._violation(b, ev, f)))
        return out


def apply_settled(episode: Episode, settled: Settled) -> Episode:
    """The episode with judge violations attached to their events and check errors recorded."""
    if not settled.violations and not settled.errors:
        return episode
    events = list(episode.events)
    for i, v in settled.violations:
        events[i] = events[i].model_copy(update={"violations": [*events[i].violations, v]})
    live = [e for e in settled.errors if str(e) not in episode.errors]
    return episode.model_copy(
        update={
            "events": events,
            "violations": [v for e in events for v in e.violations],
            "errors": [*episode.errors, *(str(e) for e in live)],
        }
    )


def build_monitor(
    packs: Sequence[PolicyPack],
    kb: KnowledgeBase,
    *,
    embedder: Embedder | None = None,
    judge: Judge | None = None,
) -> PolicyMonitor | None:
    """A monitor for these packs, or None when there are none (no overhead at all)."""
    return PolicyMonitor(packs, kb, embedder=embedder, judge=judge) if packs else None


def check_kind(rule: Rule, pack: PolicyPack | None = None) -> str:
    """'structured', 'textual' or 'judge'. A composable check (respond_within, forbid ...)
    counts as textual only if one of its MatchSpecs reads the words (patterns, examples)."""
    info = get_check(rule.check.name)
    if info is None:
        return "unknown"
    if info.kind == "textual" and pack is not None:
        specs = [m for v in dict(pack.check_args(rule.id)).values() for m in _specs(v)]
        if specs and not any(s.patterns or s.examples for s in specs):
            return "structured"
    return info.kind


def _specs(value: object) -> list[MatchSpec]:
    if isinstance(value, MatchSpec):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, MatchSpec)]
    return []


def require_judge(packs: Sequence[PolicyPack], judge: Judge | None) -> None:
    """Refuse to start a run whose packs have judge checks but no judge to ask."""
    needing = [f"{p.ref}/{r.id}" for p in packs for r in p.rules if check_kind(r) == "judge"]
    if needing and judge is None:
        raise PackError(
            "policy packs",
            [
                f"rules {needing} use LLM-judge checks, but no judge model was given; pass a "
                "judge (a chat callable) or leave these packs out"
            ],
        )
