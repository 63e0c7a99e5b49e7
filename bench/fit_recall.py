"""Fit the written-record patient's acceptance scorer (patients/patient/lexicon/recall_acceptance.yaml).

For every question of the development bank (bench/data/patient_bank/dev.jsonl only; the held-out
banks are never read), the patient's record look-up weighs a few candidate statements per part
of the question; a pair is positive when the statement is the one the row's `fact` quotes (same
field, most of the same words) and says the expected yes or no. A logistic model is fitted
with scikit-learn (needed here only; run time uses NumPy), its operating point chosen on
out-of-fold predictions (cases grouped): fewest contradictions first, then fewest misses.

    python bench/fit_recall.py [--write] [--folds 5]

Prints, per operating point, the part-level right / contradiction counts of the fitted model
and, in the same run, of the hand-set thresholds it replaces (the baseline).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from patient_bank import BANKS, SHARED  # the cases' folder, as the bank measure reads it

BANK = BANKS / "dev.jsonl"


def _gold(fact: Any, quote: str, field: str, stems: Any) -> bool:
    """Whether a record statement is the one a bank row's `fact` quotes: from the same field and
    sharing most of its words (either way round: a quote may cover several statements)."""
    if not (fact.source or "").endswith(field):
        return False
    g, f = stems(quote), stems(fact.text)
    if not g or not f:
        return False
    common = len(g & f)
    return max(common / len(g), common / len(f)) >= 0.6


def collect() -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Features and labels of every candidate pair, and per counted part what the hand-set
    rules said (for the baseline) and which pairs belong to it."""
    from clinicgym.patients.importers.external import read_cases
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.patients.patient import recall
    from clinicgym.patients.patient.ask import read_questions
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient

    kb = default_kb()
    matcher = matcher_for(kb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = read_cases(SHARED / "agentclinic_medqa.jsonl", kb)
    by_index = {
        c.lineage.index if c.lineage.index is not None else i: c for i, c in enumerate(cases)
    }
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    parts: list[dict[str, Any]] = []
    patients: dict[int, Any] = {}
    n = 0
    for row in read_questions(BANK):
        case = by_index[row["case"]]
        if row["case"] not in patients:
            patients[row["case"]] = GroundedPatient(case, matcher)
            if patients[row["case"]]._record is not None:
                patients[row["case"]]._record.trace = []
        patient = patients[row["case"]]
        index = patient._record
        if index is None or row["expect"] == "deflected":
            continue
        start = len(index.trace)
        patient.answer(row["question"], turn=1)
        traced = index.trace[start:]
        quotes = row["fact"].split(" | ") if row["fact"] else []
        fields = row["field"].split(" | ") if row["field"] else []
        wants = [(row["expect"], quotes[:1], fields[:1])]
        if "expect_second" in row:
            wants.append((row["expect_second"], quotes[1:2] or quotes[:1], fields[-1:]))
        for (want, quote, field), (_q, _part, cand, x, said, u) in zip(wants, traced, strict=False):
            y = np.zeros((len(cand), 2))  # (gold statement, right yes or no)
            if want in ("affirmed", "denied"):
                for m, k in enumerate(cand):
                    fact = index.facts[k]
                    y[m, 1] = float(said[m] == want)
                    if (
                        quote
                        and _gold(fact, quote[0], field[0], recall.content_stems)
                        and said[m] == want
                    ):
                        y[m, 0] = 1.0
            rule = x[:, recall.FEATURES.index("rules_accept")]
            parts.append(
                {
                    "case": row["case"],
                    "want": want,
                    "rows": list(range(n, n + len(cand))),
                    "said": said,
                    "rule": said[0]
                    if rule[0] and x[0, recall.FEATURES.index("score")] > 0
                    else "unknown",
                }
            )
            xs.append(np.hstack([x, u[None, :] * index._matrix[cand]]))
            ys.append(y)
            n += len(cand)
    return np.vstack(xs), np.vstack(ys), parts


def decide(p: np.ndarray, x: np.ndarray, part: dict[str, Any], veto: float, rescue: float) -> str:
    """What the patient says for one part with the scorer: the thresholds' statement unless its
    chance is below `veto`, else the likeliest statement with a chance of at least `rescue`
    (as RecordIndex.recall decides, less its conflict check)."""
    from clinicgym.patients.patient.recall import FEATURES

    rows = part["rows"]
    q = p[rows]
    rule = (x[rows, FEATURES.index("rules_accept")] > 0) & (x[rows, FEATURES.index("score")] > 0)
    accept = (rule & (q >= veto)) | (q >= rescue)
    if not accept.any():
        return "unknown"
    if accept[0] and rule[0]:
        return part["said"][0]
    return part["said"][int(np.argmax(np.where(accept, q, -1.0)))]


def tally(said: list[str], parts: list[dict[str, Any]]) -> tuple[int, int]:
    """(right, contradictions) over counted parts."""
    right = sum(s == t["want"] for s, t in zip(said, parts, strict=True))
    bad = sum(
        (s == "affirmed" and t["want"] in ("denied", "unknown"))
        or (s == "denied" and t["want"] == "affirmed")
        for s, t in zip(said, parts, strict=True)
    )
    return right, bad


def main() -> int:
    """Fit, choose the operating point out of fold, print figures; --write saves the weights."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="Write the weights file.")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.03, help="Inverse L2 strength.")
    ap.add_argument("--cache", type=Path, help="Keep the collected pairs here (a pickle).")
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"AgentClinic cases not found at {SHARED}: nothing to fit", file=sys.stderr)
        return 2
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    from clinicgym.patients.patient import recall

    if args.cache and args.cache.exists():
        x, y, parts = pickle.loads(args.cache.read_bytes())
    else:
        x, y, parts = collect()
        if args.cache:
            args.cache.write_bytes(pickle.dumps((x, y, parts)))
    x, y = x[:, : len(recall.FEATURES)], y[:, 0]  # the gold statement, with its yes or no
    groups = np.zeros(len(y), dtype=int)
    for t in parts:
        groups[t["rows"]] = t["case"]
    print(f"{len(parts)} counted parts, {len(y)} pairs, {int(y.sum())} positive")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    oof = np.zeros(len(y))
    for tr, te in GroupKFold(n_splits=args.folds).split(z, y, groups):
        model = LogisticRegression(C=args.C, max_iter=5000).fit(z[tr], y[tr])
        oof[te] = model.predict_proba(z[te])[:, 1]
    base = tally([t["rule"] for t in parts], parts)
    print(f"hand-set thresholds (baseline): right {base[0]}/{len(parts)}, contradictions {base[1]}")
    best: tuple[tuple[int, int], float, float] | None = None
    for veto in (0.0, 0.05, 0.1, 0.2, 0.3):
        for rescue in (0.5, 0.6, 0.7, 0.8, 0.9):
            r, b = tally([decide(oof, x, t, veto, rescue) for t in parts], parts)
            print(
                f"  veto {veto:.2f} rescue {rescue:.2f}: right {r}, contradictions {b} (out of fold)"
            )
            key = (b, -r)  # fewest contradictions, then most right, never below the baseline
            if r >= base[0] and (best is None or key < best[0]):
                best = (key, veto, rescue)
    veto, rescue = (best[1], best[2]) if best else (0.0, 1.0)
    model = LogisticRegression(C=args.C, max_iter=5000).fit(z, y)
    print(f"chosen veto {veto} rescue {rescue}")
    if args.write:
        out = {
            "schema_version": 1,
            "fitted_on": "bench/data/patient_bank/dev.jsonl by bench/fit_recall.py "
            f"(logistic, C={args.C}; veto and threshold chosen out of fold over {args.folds} case folds)",
            "features": list(recall.FEATURES),
            "mean": [round(float(v), 6) for v in mean],
            "scale": [round(float(v), 6) for v in scale],
            "coef": [round(float(v), 6) for v in model.coef_[0]],
            "intercept": round(float(model.intercept_[0]), 6),
            "threshold": rescue,
            "veto": veto,
        }
        path = recall.ACCEPTANCE_FILE
        header = "# Fitted by bench/fit_recall.py; do not edit by hand (refit instead).\n"
        path.write_text(header + yaml.safe_dump(out, sort_keys=False, width=100))
        recall.load_acceptance(path)
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
