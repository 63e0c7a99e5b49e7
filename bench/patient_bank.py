"""The patient against the question banks (bench/data/patient_bank): how often it answers as its
record requires, how often it contradicts it, and whether it ever names its diagnosis.

    python bench/patient_bank.py [--json out.json]

Asks every bank with `clinicgym.patients.patient.ask` (one patient per case, questions in order, as
`clinicgym patients ask` does) over AgentClinic's public cases, read from the shared data folder
beside the repository (never copied into it). `dev.jsonl` is the half the patient may be tuned
on, and so is `near_dev.jsonl` (near misses over the same cases); `heldout.jsonl` (MedQA)
and `nejm.jsonl` (NEJM) are held out: report both, tune on neither.
The last row, "held-out unseen", asks bench/data/unseen's own synthetic clinician-written cases
(in the repository, so it runs without the shared folder); it is held out too. "near misses"
asks the same cases questions written to tempt a patient into answering from a statement that
only sounds related (half of them the record cannot answer): held out, and its contradictions
are the figure to watch. "held-out unseen 2" (bench/data/unseen2) is a second such set, written
on 2026-12-07 before the patient was measured on it, after the first sets had been read while
changing the patient: 20 new cases, 300 questions, a third of them near misses.
"held-out unseen 3" (bench/data/unseen3) is a third, written on 2026-12-07 after unseen 2 had
been read, and measured first on the code before the changes it was written to judge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BANKS = Path(__file__).parent / "data" / "patient_bank"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "agentclinic"
UNSEEN = Path(__file__).resolve().parent / "data" / "unseen"
UNSEEN2 = Path(__file__).resolve().parent / "data" / "unseen2"
UNSEEN3 = Path(__file__).resolve().parent / "data" / "unseen3"
# (label, bank, cases): a relative name is read from BANKS or SHARED, an absolute path as is.
RUNS = (
    ("dev (tuned on)", "dev.jsonl", "agentclinic_medqa.jsonl"),
    ("near-miss dev", "near_dev.jsonl", "agentclinic_medqa.jsonl"),
    ("held-out MedQA", "heldout.jsonl", "agentclinic_medqa.jsonl"),
    ("held-out NEJM", "nejm.jsonl", "agentclinic_nejm.jsonl"),
    ("held-out unseen", UNSEEN / "questions.jsonl", UNSEEN / "cases.jsonl"),
    ("near misses", UNSEEN / "near_misses.jsonl", UNSEEN / "cases.jsonl"),
    ("held-out unseen 2", UNSEEN2 / "questions.jsonl", UNSEEN2 / "cases.jsonl"),
    ("held-out unseen 3", UNSEEN3 / "questions.jsonl", UNSEEN3 / "cases.jsonl"),
)


def main() -> int:
    """Print one row per bank; write the grades as JSON with --json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="Write the grades here.")
    args = p.parse_args()
    runs = RUNS if SHARED.exists() else [r for r in RUNS if Path(r[2]).is_absolute()]
    if len(runs) < len(RUNS):
        print(f"AgentClinic cases not found at {SHARED}: their rows are skipped", file=sys.stderr)
    import warnings

    from clinicgym.patients.importers.external import read_cases
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.patients.patient.ask import ask, grade, read_questions
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient

    kb = default_kb()
    matcher = matcher_for(kb)
    cases: dict[str | Path, list] = {}
    out = {}
    print(
        f"{'bank':17} {'questions':>9} {'right':>7} {'content':>7} {'facts+denials':>13} "
        f"{'unknown':>8} {'deflected':>9} {'contradictions':>14} {'leaks':>5} {'ms/answer':>9}"
    )
    for label, bank, source in runs:
        if source not in cases:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cases[source] = read_cases(SHARED / source, kb)
        rows = read_questions(BANKS / bank)
        t = time.perf_counter()
        answered = list(ask(cases[source], rows, lambda c: GroundedPatient(c, matcher)))
        ms = (time.perf_counter() - t) * 1000 / max(1, len(answered))
        g = grade(answered)
        by = g["by_expect"]
        share = {k: f"{v[0] / v[1]:.0%}" for k, v in by.items()}
        print(
            f"{label:17} {g['questions']:>9} {g['accuracy']:>7.1%} {g['content_accuracy']:>7.1%} "
            f"{g['fact_accuracy']:>13.1%} "
            f"{share.get('unknown', '-'):>8} {share.get('deflected', '-'):>9} "
            f"{g['contradictions']:>14} {g['leaks']:>5} {ms:>9.1f}"
        )
        out[label] = {**g, "ms_per_answer": ms}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
