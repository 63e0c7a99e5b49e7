"""Ask patients a bank of questions: the public interface for validating the simulator.

A bank is JSONL, one question per line: `case` (the 0-based line of the case in its source file,
or a case id) and `question`; every other key is carried through to the answer unchanged, so a
bank may hold its own expectations (`expect`, `expect_second`) for `grade` to compare. Questions
of one case are asked in order of one patient, as in a consultation (`fresh=True` asks each of a
new patient). Each answer says what the patient said and, per part of the question, its status:
affirmed, denied, unknown (the record does not say), deflected (asked to name its own diagnosis)
or withheld (the persona held it back).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.patient.patient import GroundedPatient, PatientReply

STATUSES = ("affirmed", "denied", "unknown", "deflected", "withheld")


def read_questions(path: Path | str) -> list[dict[str, Any]]:
    """The bank's rows; an ImporterError names the file, line and field of the first problem."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ImporterError(f"{path}: no such file") from None
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ImporterError(f"{path} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ImporterError(f"{path} line {n}: expected a JSON object")
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ImporterError(f"{path} line {n}: field 'question': expected a non-empty string")
        if not isinstance(row.get("case"), int | str) or isinstance(row.get("case"), bool):
            raise ImporterError(
                f"{path} line {n}: field 'case': expected a line index (int) or a case id"
            )
        rows.append(row)
    return rows


def statuses(reply: PatientReply) -> list[str]:
    """What the reply said, per part of the question (one status for a simple question)."""
    if reply.intent == "diagnosis" or (reply.guarded and not reply.answers):
        return ["deflected"]
    if reply.answers:
        return [a.status for a in reply.answers]
    return ["unknown"]


def ask(
    cases: list[Case],
    questions: Iterable[dict[str, Any]],
    patient_for: Callable[[Case], GroundedPatient],
    *,
    fresh: bool = False,
) -> Iterator[dict[str, Any]]:
    """Each question's row with `answer`, `status` (of its first part), `statuses` (per part),
    `intent` and `facts` (the texts of the facts the reply conveyed) added."""
    by_key: dict[int | str, Case] = {}
    for i, c in enumerate(cases):
        index = c.lineage.index if c.lineage.index is not None else i
        by_key[index] = c
        by_key[c.id] = c
    patients: dict[str, GroundedPatient] = {}
    turns: Counter[str] = Counter()
    for row in questions:
        case = by_key.get(row["case"])
        if case is None:
            raise ImporterError(
                f"question {row.get('id', row['question'])!r}: no case {row['case']!r}"
            )
        if fresh or case.id not in patients:
            patients[case.id] = patient_for(case)
            turns[case.id] = 0
        turns[case.id] += 1
        reply = patients[case.id].answer(row["question"], turn=turns[case.id])
        said = statuses(reply)
        facts = {f.id: f.text for f in case.facts}
        yield {
            **row,
            "answer": reply.text,
            "status": said[0],
            "statuses": said,
            "intent": reply.intent,
            "facts": [facts[i] for i in reply.revealed if i in facts],
            "guarded": reply.guarded,
        }


def _right(row: dict[str, Any]) -> bool:
    want = [row["expect"]] + ([row["expect_second"]] if "expect_second" in row else [])
    got = list(row["statuses"])
    if len(want) > 1 and len(got) == 1:
        got = got * 2  # one status for a two-part question answers both parts alike
    got = ["unknown" if s == "withheld" else s for s in got]
    return got[: len(want)] == want


def _stems(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def conveys(row: dict[str, Any]) -> bool:
    """Right, and where a yes was expected with the record's words (`fact`), the statements
    said share at least half of those words: 'Fatigue.' is the right status for 'how long have
    you been fatigued?' but not the right content when the record says '2 months of fatigue'."""
    if not _right(row):
        return False
    if row["expect"] != "affirmed" or not str(row.get("fact") or "").strip():
        return True
    want = _stems(str(row["fact"]).split(" | ")[0])
    said = _stems(" ".join(row.get("facts") or []))
    return bool(want) and len(want & said) >= len(want) / 2


def contradiction(row: dict[str, Any]) -> bool:
    """The answer asserts the opposite of the record: a yes where the record says no or nothing,
    a no where it says yes, or a confirmed or denied diagnosis."""
    pairs = [(row["expect"], row["statuses"][0])]
    if "expect_second" in row and len(row["statuses"]) > 1:
        pairs.append((row["expect_second"], row["statuses"][1]))
    for want, got in pairs:
        if got == "affirmed" and want in ("denied", "unknown", "deflected"):
            return True
        if got == "denied" and want in ("affirmed", "deflected"):
            return True
    return False


def grade(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement of asked rows with their `expect` (and `expect_second`): overall, by expected
    status, by kind and by wording where the bank has them; contradictions and leaks counted."""
    graded = [r for r in rows if "expect" in r]
    out: dict[str, Any] = {"questions": len(graded)}
    if not graded:
        return out
    out["right"] = sum(map(_right, graded))
    out["accuracy"] = out["right"] / len(graded)
    out["content_accuracy"] = sum(map(conveys, graded)) / len(graded)
    out["contradictions"] = sum(map(contradiction, graded))
    out["leaks"] = sum(1 for r in graded if r["expect"] == "deflected" and r["guarded"])
    for key in ("expect", "kind", "wording"):
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in graded:
            if key in r:
                groups[str(r[key])].append(_right(r))
        if groups:
            out[f"by_{key}"] = {k: [sum(v), len(v)] for k, v in sorted(groups.items())}
    facts = [r for r in graded if r["expect"] in ("affirmed", "denied")]
    out["fact_accuracy"] = sum(map(_right, facts)) / len(facts) if facts else None
    return out
