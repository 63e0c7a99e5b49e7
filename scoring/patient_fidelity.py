"""Patient fidelity: is the benchmark measuring the model, or the simulator's mistakes?

Per episode and per run, from stored transcripts and their cases:

* `grounded_answer_rate`: share of patient answers whose first wording was already grounded
  (the answer guard caught nothing; the template patient scores 1), and `replaced_rate`: share
  where the guard fell back to the grounded template after a failed rewrite;
* `guard_catches`: what the live guard caught before the clinician saw it, by kind;
* `unsupported_claim_rate`, `contradiction_rate`, `diagnosis_leak_rate`, `overshare_rate`,
  `omission_rate`, `role_break_rate`: an
  independent audit of the answers the clinician actually saw, re-run with the guard over the
  transcript (so the rates are measured, not assumed from the live guard's verdicts);
* `elicitable_must_ask`: share of the case's must-ask history facts that the KB's own question
  for them retrieves (a property of patient and case: what a competent clinician could get).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.patients.patient.guard import AnswerGuard
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.scoring.stats import mean_ci

AUDIT_KINDS = {
    "unsupported": "unsupported_claim_rate",
    "contradiction": "contradiction_rate",
    "leak": "diagnosis_leak_rate",
    "overshare": "overshare_rate",
    "omission": "omission_rate",
    "role": "role_break_rate",
}


def elicitable_must_ask(case: Case, kb: KnowledgeBase) -> float | None:
    """Share of must-ask history facts (not the chief complaint) the KB question retrieves."""
    m = matcher_for(kb)
    must = [
        f
        for f in case.facts
        if f.salience == "must_ask"
        and f.how_revealed == "ask"
        and f.category != "chief_complaint"
        and f.concept in kb.findings
    ]
    if not must:
        return None
    hits = 0
    for f in must:
        q = kb.findings[f.concept].question or f.concept
        hits += any(x.target == f.concept for x in m.match(q))
    return hits / len(must)


def episode_fidelity(episode: Episode, case: Case, kb: KnowledgeBase) -> dict[str, Any]:
    """Fidelity figures of one episode's patient."""
    guard = AnswerGuard(case, matcher_for(kb), kb)
    told: set[str] = set()
    turns = replaced = clean = 0
    live: Counter[str] = Counter()
    audit: Counter[str] = Counter()
    for e in episode.events:
        if e.actor != "patient" or e.turn == 0:
            told |= {a["concept"] for a in e.result.get("answers", [])}
            continue
        turns += 1
        caught = e.result.get("guard", [])
        clean += not caught
        for c in caught:
            live[c["kind"]] += 1
        if e.result.get("guarded"):
            replaced += 1
        answers = e.result.get("answers", [])
        allowed = {a["concept"] for a in answers}
        expected = {a["concept"]: a["status"] for a in answers if a["status"] != "withheld"}
        grounded = e.result.get("grounded_text") or e.text
        for c in guard.check(
            e.text, grounded_text=grounded, allowed=allowed, told=told, expected=expected
        ):
            audit[c.kind] += 1
        told |= {a["concept"] for a in e.result.get("answers", []) if a["status"] != "withheld"}
    out: dict[str, Any] = {
        "patient_turns": turns,
        "grounded_answer_rate": clean / turns if turns else None,
        "replaced_rate": replaced / turns if turns else None,
        "guard_catches": dict(live),
    }
    for kind, name in AUDIT_KINDS.items():
        out[name] = audit[kind] / turns if turns else None
    out["elicitable_must_ask"] = elicitable_must_ask(case, kb)
    return out


def run_fidelity(
    episodes: Iterable[Episode], cases: dict[str, Case], kb: KnowledgeBase
) -> dict[str, Any]:
    """Run-level fidelity: each rate as mean with a bootstrap 95% interval, catches summed."""
    rows = [
        episode_fidelity(ep, cases[ep.case_id], kb)
        for ep in episodes
        if ep.status == "completed" and ep.case_id in cases
    ]
    catches: Counter[str] = Counter()
    for r in rows:
        catches.update(r["guard_catches"])
    out: dict[str, Any] = {
        "episodes": len(rows),
        "patient_turns": sum(r["patient_turns"] for r in rows),
        "guard_catches": dict(catches),
    }
    for name in (
        "grounded_answer_rate",
        "replaced_rate",
        *AUDIT_KINDS.values(),
        "elicitable_must_ask",
    ):
        out[name] = mean_ci([r[name] for r in rows])
    return out


FAULT_LOOKUP = 0.7
"""A plain MiniLM look-up of the clinician's question over the record's history statements at or
above this cosine means the record answers the question: "I don't know" is then the patient's
fault, not the clinician's."""
_ASKED_CATEGORIES = ("chief_complaint", "hpi", "ros", "pmh", "social", "family", "medication")


def warm_fault_lookup(kb: KnowledgeBase) -> int:
    """Put the embeddings of every history wording a generated case can hold
    (`patients.cases.realise.history_wordings`: about 1,400 texts for the bundled KB, most of the
    facts `patient_faults` embeds) into the sentence encoder's cache, read from the on-disk
    cache of fixed texts (computed there once per KB and model). Without it each process that
    scores episodes embeds them as the cases come, about 10 ms a text. Returns how many."""
    from clinicgym.patients.cases.realise import history_wordings
    from clinicgym.patients.patient.encoder import default_encoder
    from clinicgym.patients.patient.matching import cached_embeddings

    enc = default_encoder()
    texts = history_wordings(kb)
    enc.remember(texts, cached_embeddings(enc, texts))
    return len(texts)


def patient_faults(episode: Episode, case: Case) -> list[dict[str, Any]]:
    """Turns where the simulator, not the clinician, lost information: the patient said it did
    not know what a plain sentence look-up finds in its record, blocked an answer its record
    could not settle, or had a reply replaced for naming the diagnosis. Each: turn, kind and the
    clinician's question."""
    from clinicgym.patients.patient.encoder import default_encoder

    asked: dict[int, str] = {}
    for e in episode.events:
        if (
            e.actor == "clinician"
            and e.action is not None
            and getattr(e.action, "tool", "") == "ask"
        ):
            asked[e.turn] = str(getattr(e.action, "question", ""))
    faults: list[dict[str, Any]] = []
    unknown: list[tuple[int, str]] = []
    for e in episode.events:
        if e.actor != "patient" or e.turn == 0:
            continue
        q = asked.get(e.turn, "")
        for c in e.result.get("guard", []):
            if c.get("kind") in ("contradiction", "leak"):
                faults.append({"turn": e.turn, "kind": f"blocked_{c['kind']}", "question": q})
        statuses = [a.get("status") for a in e.result.get("answers", [])]
        told = bool(e.result.get("revealed"))  # 'Rash on the back. Not sure.' to 'itchy?'
        if q and statuses and all(s == "unknown" for s in statuses) and not told:
            unknown.append((e.turn, q))
    facts = (  # the record's history statements: read only when a question went unanswered
        [f for f in case.facts if f.category in _ASKED_CATEGORIES and f.text.strip()]
        if unknown
        else []
    )
    if facts:
        enc = default_encoder()
        sims = enc.encode([q for _, q in unknown]) @ enc.encode([f.text for f in facts]).T
        for (turn, q), row in zip(unknown, sims, strict=True):
            if float(row.max()) >= FAULT_LOOKUP:
                faults.append({"turn": turn, "kind": "unanswered", "question": q})
    return faults


def patient_fault(episode: Episode, case: Case, correct: float) -> float | None:
    """For a failed episode (wrong first diagnosis): 1 if the patient was at fault at least once
    (`patient_faults`), else 0; None for a correct one. Its mean over a run is the share of
    failed episodes with a simulator fault (tau2-bench found its user simulator caused up to 30%
    of failures)."""
    if correct:
        return None
    return float(bool(patient_faults(episode, case)))
