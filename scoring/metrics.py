"""Per-episode metrics. Each says what it measures in one line (`METRICS`)."""

from __future__ import annotations

from clinicgym.envs.episode import Episode
from clinicgym.patients.case import Case
from clinicgym.scoring.diagnosis import rank_of

METRICS: dict[str, str] = {
    "diagnostic_accuracy": "1 if the clinician's first-ranked diagnosis is the case's, else 0.",
    "top3_accuracy": "1 if the case's diagnosis is among the clinician's first three, else 0.",
    "inquiry_coverage": (
        "Share of the case's must-ask facts the clinician elicited (by question, exam or test), "
        "not counting those given in the opening."
    ),
    "turns": "Clinician turns used, errors included.",
    "error_turns": "Clinician turns whose output could not be parsed into an action.",
}


def episode_metrics(episode: Episode, case: Case) -> dict[str, float | None]:
    """The metrics of one completed episode against its case."""
    guesses = [d.name for d in episode.outcome.diagnoses]
    rank = rank_of(guesses, case.diagnosis)
    opening = {fid for e in episode.events if e.turn == 0 for fid in e.revealed}
    elicited = {fid for e in episode.events if e.turn > 0 for fid in e.revealed}
    must = {f.id for f in case.facts if f.salience == "must_ask"} - opening
    coverage = len(must & elicited) / len(must) if must else None
    return {
        "diagnostic_accuracy": float(rank == 1),
        "top3_accuracy": float(rank is not None and rank <= 3),
        "inquiry_coverage": coverage,
        "turns": float(episode.turns),
        "error_turns": float(sum(1 for e in episode.events if e.actor == "clinician" and e.error)),
    }


def episode_reward(episode: Episode, case: Case) -> float:
    """The env's default terminal reward: 1 for a correct first diagnosis, 0.5 for top-3, else 0.

    Documented and deliberately simple; RL shaping options come with the RL issue.
    """
    rank = rank_of([d.name for d in episode.outcome.diagnoses], case.diagnosis)
    if rank == 1:
        return 1.0
    if rank is not None and rank <= 3:
        return 0.5
    return 0.0
