"""The transcript both envs write: events the monitors see, the outcome, the `Episode`.

Private to `envs`. `ConsultationEnv` and the structured env's record mode write their events
through one `Transcript`, so an ask, a chart result or a diagnosis is recorded the same way
whichever env played it, and the same seed gives the same `Episode.transcript()`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from clinicgym import __version__
from clinicgym.envs.action import Action, RankedDiagnosis
from clinicgym.envs.episode import Episode, Event, Outcome, TerminationReason, Violation
from clinicgym.envs.protocols import Monitor
from clinicgym.patients.cases.case import Case
from clinicgym.patients.patient.chart import ChartResult
from clinicgym.patients.patient.patient import PatientReply

ID_OPTIONS = ("agent_id", "episode_id", "repeat")
"""`reset` options an episode record takes its ids from."""
OPENING_FIELDS = frozenset({"intent", "answers"})
"""What the opening's event keeps of the patient's reply."""


class Transcript:
    """One episode's events, each shown to every monitor before it is kept, and its outcome."""

    def __init__(self, monitors: Sequence[Monitor] = ()) -> None:
        self.monitors = monitors
        """The env's own list, shared: a monitor the env is given later watches too."""
        self.events: list[Event] = []
        self.outcome = Outcome()
        self.ids: dict[str, Any] = {}
        self.started = 0.0

    def reset(self, case: Case, options: Mapping[str, Any]) -> None:
        """Start a new episode on `case` (monitors reset; ids taken from the reset options)."""
        self.events = []
        self.outcome = Outcome()
        self.ids = {k: options[k] for k in ID_OPTIONS if k in options}
        self.started = time.time()
        for m in self.monitors:
            m.reset(case)

    def record(self, event: Event) -> None:
        """Append an event after every monitor has looked at it."""
        found: list[Violation] = []
        for m in self.monitors:
            found.extend(m.observe(event, self.events))
        if found:
            event = event.model_copy(update={"violations": found})
        self.events.append(event)

    def clinician(self, turn: int, action: Action, meta: dict[str, Any] | None = None) -> None:
        """The clinician's parsed action, as its text form."""
        self.record(
            Event(
                turn=turn,
                actor="clinician",
                text=action.render(),
                action=action,
                t=time.time(),
                meta=meta or {},
            )
        )

    def unusable(
        self, turn: int, text: str, error: str, meta: dict[str, Any] | None = None
    ) -> None:
        """A clinician turn that named no action: an error turn."""
        self.record(
            Event(
                turn=turn, actor="clinician", text=text, error=error, t=time.time(), meta=meta or {}
            )
        )

    def patient(self, turn: int, reply: PatientReply, fields: Collection[str]) -> dict[str, Any]:
        """The patient's reply (turn 0: the opening); `fields` of it go in the event's result."""
        result = reply.model_dump(include=set(fields))
        self.record(
            Event(
                turn=turn,
                actor="patient",
                text=reply.text,
                result=result,
                revealed=reply.revealed,
                t=time.time(),
            )
        )
        return result

    def chart(
        self,
        turn: int,
        res: ChartResult,
        text: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An examination or test result (`text` if the env words it otherwise); its result."""
        result: dict[str, Any] = {
            "ok": res.ok,
            "target": res.target,
            "answers": res.answers,
            "revealed": res.revealed,
            **(extra or {}),
        }
        self.record(
            Event(
                turn=turn,
                actor="env",
                text=res.text if text is None else text,
                result=result,
                revealed=res.revealed,
                t=time.time(),
            )
        )
        return result

    def note(self, turn: int, text: str, result: dict[str, Any] | None = None) -> str:
        """What the env says back to an action (recorded, pending, delivered); its text."""
        self.record(Event(turn=turn, actor="env", text=text, result=result or {}, t=time.time()))
        return text

    def diagnosis(self, turn: int, diagnoses: list[RankedDiagnosis], *, ends: bool) -> str:
        """Record the ranked diagnoses in the outcome; the env's reply."""
        self.outcome.diagnoses = list(diagnoses)
        names = "; ".join(d.name for d in diagnoses)
        over = " The consultation is over." if ends else ""
        return self.note(turn, f"Diagnosis recorded: {names}.{over}")

    def referral(self, turn: int, to: str, urgency: str) -> str:
        """Record a referral in the outcome; the env's reply."""
        self.outcome.referrals.append({"to": to, "urgency": urgency, "turn": turn})
        return self.note(turn, f"Referral recorded: {to} ({urgency}).")

    def violations(self, turn: int) -> list[Violation]:
        """The violations the monitors found on `turn`."""
        return [v for e in self.events if e.turn == turn for v in e.violations]

    def episode(
        self,
        case: Case,
        case_hash: str,
        *,
        seed: int,
        turns: int,
        reason: TerminationReason,
        versions: Mapping[str, str],
    ) -> Episode:
        """The episode so far, as the run store keeps it."""
        return Episode(
            episode_id=str(self.ids.get("episode_id", f"{case.id}:{seed}")),
            case_id=case.id,
            case_hash=case_hash,
            agent_id=str(self.ids.get("agent_id", "unknown")),
            seed=seed,
            repeat=int(self.ids.get("repeat", 0)),
            termination=reason,
            turns=turns,
            events=list(self.events),
            outcome=self.outcome.model_copy(deep=True),
            violations=[v for e in self.events for v in e.violations],
            versions={"clinicgym": __version__, **versions},
            started=self.started,
            finished=time.time(),
        )
