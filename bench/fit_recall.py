"""Fit the written-record patient's acceptance scorer (patients/patient/lexicon/recall_acceptance.yaml).

For every question of the banks the patient may be tuned on (by default every bank of
bench/patient_bank.py that has been read: dev, its near misses, and the earlier held-out sets
whose figures were read while changing the patient; never `held-out unseen 3`, which judges the
result), the patient's record look-up weighs a few candidate statements per part of the
question; a pair is positive when the statement is the one the row's `fact` quotes (same field,
most of the same words) and says the expected yes or no. A logistic model is fitted with
scikit-learn (needed here only; run time uses NumPy), its operating point chosen on out-of-fold
predictions (cases grouped): fewest contradictions first, then fewest misses.

    python bench/fit_recall.py [--write] [--folds 5] [--bank LABEL ...]

Prints, per operating point, the part-level right / contradiction counts of the fitted model
and, in the same run, of the hand-set thresholds it replaces (the baseline); then, for each
bank, the same counts of a model fitted on the other banks only (leave one bank out: how well
the scorer carries to a set of cases and questions it has not seen).
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
from patient_bank import BANKS, RUNS, SHARED  # the banks and cases, as the bank measure reads them

HELD_OUT = ("held-out unseen 3",)
"""Banks never fitted on: they judge the fitted scorer."""


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


def collect(
    labels: list[str],
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Features and labels of every candidate pair of the named banks, and per counted part what
    the hand-set rules said (for the baseline), its bank and case, and which pairs belong to it."""
    from clinicgym.patients.importers.external import read_cases
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.patients.patient import recall
    from clinicgym.patients.patient.ask import read_questions
    from clinicgym.patients.patient.matching import matcher_for

    kb = default_kb()
    matcher = matcher_for(kb)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    parts: list[dict[str, Any]] = []
    n = 0
    sources: dict[Any, Any] = {}
    for label, bank, source in RUNS:
        if label not in labels:
            continue
        if source not in sources:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cases = read_cases(SHARED / source, kb)
            sources[source] = {
                c.lineage.index if c.lineage.index is not None else i: c
                for i, c in enumerate(cases)
            }
        by_index = sources[source]
        patients: dict[int, Any] = {}
        for row in read_questions(BANKS / bank):
            n = _collect_row(row, label, by_index, patients, matcher, recall, xs, ys, parts, n)
    return np.vstack(xs), np.vstack(ys), parts


def _collect_row(
    row: dict[str, Any],
    label: str,
    by_index: dict[Any, Any],
    patients: dict[Any, Any],
    matcher: Any,
    recall: Any,
    xs: list[np.ndarray],
    ys: list[np.ndarray],
    parts: list[dict[str, Any]],
    n: int,
) -> int:
    """Ask one bank row and append its parts' candidate pairs; the next pair's row number."""
    from clinicgym.patients.patient.patient import GroundedPatient

    case = by_index[row["case"]]
    if row["case"] not in patients:
        patients[row["case"]] = GroundedPatient(case, matcher)
        if patients[row["case"]]._record is not None:
            patients[row["case"]]._record.trace = []
    patient = patients[row["case"]]
    index = patient._record
    if index is None or row["expect"] == "deflected":
        return n
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
                "case": f"{label}/{row['case']}",
                "bank": label,
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
    return n


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


def _fit(z: np.ndarray, y: np.ndarray, c: float) -> Any:
    """A logistic model of the gold statement on standardised features."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000).fit(z, y)


def _out_of_fold(z: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, c: float) -> Any:
    """Each pair's chance from a model fitted without its case."""
    from sklearn.model_selection import GroupKFold

    oof = np.zeros(len(y))
    for tr, te in GroupKFold(n_splits=folds).split(z, y, groups):
        oof[te] = _fit(z[tr], y[tr], c).predict_proba(z[te])[:, 1]
    return oof


def _operating_point(
    oof: np.ndarray, x: np.ndarray, parts: list[dict[str, Any]]
) -> tuple[float, float]:
    """(veto, rescue) with the fewest contradictions, then the most right, out of fold, never
    below the hand-set thresholds' right count."""
    base = tally([t["rule"] for t in parts], parts)
    print(f"hand-set thresholds (baseline): right {base[0]}/{len(parts)}, contradictions {base[1]}")
    best: tuple[tuple[int, int], float, float] | None = None
    for veto in (0.0, 0.05, 0.1, 0.2, 0.3):
        for rescue in (0.5, 0.6, 0.7, 0.8, 0.9):
            r, b = tally([decide(oof, x, t, veto, rescue) for t in parts], parts)
            print(
                f"  veto {veto:.2f} rescue {rescue:.2f}: right {r}, contradictions {b} (out of fold)"
            )
            key = (b, -r)
            if r >= base[0] and (best is None or key < best[0]):
                best = (key, veto, rescue)
    return (best[1], best[2]) if best else (0.0, 1.0)


def _leave_one_bank_out(
    z: np.ndarray, y: np.ndarray, x: np.ndarray, parts: list[dict[str, Any]], c: float, op: Any
) -> None:
    """Per bank: right and contradictions of a model fitted on the other banks, beside the
    hand-set thresholds, at the chosen operating point."""
    banks = sorted({t["bank"] for t in parts})
    if len(banks) < 2:
        return
    print("leave one bank out (part level: right / contradictions, scorer vs thresholds):")
    for bank in banks:
        mine = [t for t in parts if t["bank"] == bank]
        rows = np.array([r for t in mine for r in t["rows"]])
        train = np.ones(len(y), dtype=bool)
        train[rows] = False
        p = np.zeros(len(y))
        p[rows] = _fit(z[train], y[train], c).predict_proba(z[rows])[:, 1]
        r, b = tally([decide(p, x, t, *op) for t in mine], mine)
        r0, b0 = tally([t["rule"] for t in mine], mine)
        print(f"  {bank:20} {len(mine):5} parts  scorer {r:5} / {b:3}   thresholds {r0:5} / {b0:3}")


def main() -> int:
    """Fit, choose the operating point out of fold, print figures; --write saves the weights."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="Write the weights file.")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.03, help="Inverse L2 strength.")
    ap.add_argument("--cache", type=Path, help="Keep the collected pairs here (a pickle).")
    ap.add_argument("--bank", action="append", help="A bank label (repeatable); default: all read.")
    args = ap.parse_args()
    labels = args.bank or [r[0] for r in RUNS if r[0] not in HELD_OUT]
    if held := sorted(set(labels) & set(HELD_OUT)):
        print(f"refusing to fit on held-out banks: {held}", file=sys.stderr)
        return 2
    if not SHARED.exists():
        print(f"AgentClinic cases not found at {SHARED}: nothing to fit", file=sys.stderr)
        return 2
    from clinicgym.patients.patient import recall

    if args.cache and args.cache.exists():
        x, y, parts = pickle.loads(args.cache.read_bytes())
    else:
        x, y, parts = collect(labels)
        if args.cache:
            args.cache.write_bytes(pickle.dumps((x, y, parts)))
    x, y = x[:, : len(recall.FEATURES)], y[:, 0]  # the gold statement, with its yes or no
    names = {case: k for k, case in enumerate(sorted({t["case"] for t in parts}))}
    groups = np.zeros(len(y), dtype=int)
    for t in parts:
        groups[t["rows"]] = names[t["case"]]
    print(f"{len(parts)} counted parts, {len(y)} pairs, {int(y.sum())} positive")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    oof = _out_of_fold(z, y, groups, args.folds, args.C)
    veto, rescue = _operating_point(oof, x, parts)
    print(f"chosen veto {veto} rescue {rescue}")
    _leave_one_bank_out(z, y, x, parts, args.C, (veto, rescue))
    model = _fit(z, y, args.C)
    if args.write:
        out = {
            "schema_version": 1,
            "fitted_on": f"the banks {', '.join(labels)} by bench/fit_recall.py "
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
