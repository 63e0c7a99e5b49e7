"""Helpers for the policy tests: cases with a given history, transcripts as the env records them,
and a judge that runs packs over a transcript. Imported by name (conftest puts this folder on the
path, since tests import in importlib mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinicgym.envs.action import Ask
from clinicgym.envs.episode import Event, Violation
from clinicgym.patients.cases.case import Case, Fact, RequiredAction
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import KnowledgeBase

POLICY_KB = Path(__file__).parent / "data" / "kb"
PACKS = Path(__file__).parents[2] / "policies" / "packs"


def make_case(
    kb: KnowledgeBase,
    *,
    age: int | None = None,
    allergies: tuple[str, ...] = (),
    meds: tuple[str, ...] = (),
    pmh: tuple[str, ...] = (),
    genes: dict[str, str] | None = None,
    required: list[RequiredAction] | None = None,
) -> Case:
    """A community-acquired pneumonia case with the given history (and genomic results) only:
    the sampled case's own history and pharmacogenomic panel are removed."""
    case = CaseSampler(kb, conditions=["community_acquired_pneumonia"]).sample(3, 0)
    drop = ("allergy", "medication", "pmh", "genomics")
    facts = [f for f in case.facts if f.category not in drop]

    def add(**kw: Any) -> None:
        facts.append(Fact(id=f"t{len(facts):02d}", **kw))

    for g in allergies:
        add(category="allergy", concept=f"allergy.{g}", text=f"I'm allergic to {g}.", value=g)
    for m in meds:
        add(category="medication", concept=m, text=f"I take {m}.")
    for c in pmh:
        add(category="pmh", concept=c, text=f"I have {c.replace('_', ' ')}.")
    for gene, variant in (genes or {}).items():
        add(category="genomics", concept=f"gene.{gene}", text=f"{gene} {variant}", abnormal=True)
    update: dict[str, Any] = {"facts": facts}
    if age is not None:
        update["age"] = age
    if required is not None:
        update["required_actions"] = required
    return case.model_copy(update=update)


class Transcript:
    """Builds the events an env would record, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.turn = 0

    def open(self, text: str = "I've had a cough for a week.") -> Transcript:
        self.events.append(
            Event(turn=0, actor="patient", text=text, result={"intent": "opening", "answers": []})
        )
        return self

    def ask(self, question: str, reply: str = "I'm not sure.", **result: Any) -> Transcript:
        return self.do(Ask(question=question), reply=reply, **result)

    def do(self, action: Any, reply: str | None = None, **result: Any) -> Transcript:
        self.turn += 1
        self.events.append(
            Event(turn=self.turn, actor="clinician", text=action.render(), action=action)
        )
        if reply is not None:
            self.events.append(Event(turn=self.turn, actor="patient", text=reply, result=result))
        else:
            self.events.append(Event(turn=self.turn, actor="env", text="Recorded."))
        return self

    def patient(self, text: str, **result: Any) -> Transcript:
        """A line a scenario injects before the next clinician turn."""
        self.events.append(Event(turn=self.turn, actor="patient", text=text, result=result))
        return self

    def third(
        self,
        text: str = "What's wrong with her?",
        role: str = "relative",
        speaker: str = "Partner",
        authorised: bool = False,
        verified: bool = False,
    ) -> Transcript:
        self.events.append(
            Event(
                turn=self.turn,
                actor="third_party",
                text=text,
                result={"role": role, "authorised": authorised, "verified": verified},
                meta={"speaker": speaker},
            )
        )
        return self


def judge(kb: KnowledgeBase, case: Case, events: list[Event], refs: list[str]) -> list[Violation]:
    """Run packs' monitor over a transcript, as the env does; every violation found."""
    from clinicgym.policies import PolicyMonitor, load_packs

    monitor = PolicyMonitor(load_packs(refs), kb)
    monitor.reset(case)
    found: list[Violation] = []
    history: list[Event] = []
    for ev in events:
        found.extend(monitor.observe(ev, history))
        history.append(ev)
    return found


def write_judge_pack(root: Path) -> Path:
    """A user pack with one LLM-judge rule (judge checks are not shipped: runs are offline)."""
    import yaml

    pack = {
        "schema_version": 1,
        "id": "judged",
        "version": 1,
        "title": "Judged by a model",
        "jurisdiction": "test",
        "effective": "2025-01-01",
        "summary": "One LLM-judge rule.",
        "rules": [
            {
                "id": "no-validation",
                "title": "Do not confirm delusions",
                "source": {"regulation": "test guidance"},
                "watches": ["ask"],
                "check": {
                    "name": "llm_judge",
                    "args": {
                        "question": "Does the clinician agree that the delusion is true?",
                        "on": {"events": ["ask"]},
                    },
                },
                "severity": "high",
            }
        ],
    }
    p = root / "judged" / "1.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(pack), encoding="utf-8")
    return p
