"""The cohort report: fidelity, privacy, fairness and clinical validity, as JSON and HTML.

- fidelity: SDMetrics' quality report (column shapes, column pair trends) and diagnostic report,
  against the training seed; when the cohort was sampled into a target mix (balance, rare floor,
  targeting), also against the seed re-mixed to that target, so a wanted change of mix is not
  scored as infidelity;
- privacy: distance to closest record (DCR) of synthetic rows to the training rows, against the
  same distance for held-out seed rows (the baseline a synthesizer that learned only the
  distribution would match), the exact-copy rate, and a distance-based membership-inference
  attack (AUC 0.5 = the attacker cannot tell training rows from held-out ones);
- fairness: subgroup shares before (seed) and after (cohort) against the targets, and how the
  condition mix (the label) differs across subgroups;
- clinical validity: the share of rows consistent with the KB, before and after rejection, and a
  realisation check (rows become Cases).

Plots are matplotlib PNGs embedded as base64, so report.html is one standalone file.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinicgym.patients.cohorts.cohort import ID_COLUMN, Cohort, CohortSchema
from clinicgym.patients.cohorts.synthesis import BALANCE_ATTRIBUTES, row_hashes
from clinicgym.patients.errors import CohortError
from clinicgym.patients.knowledge.bands import AGE_BANDS

REPORT_FORMAT_VERSION = 1
FIDELITY_ROWS = 3000
"""Rows of each table the SDMetrics reports compare (pair trends grow with rows x columns^2)."""
PRIVACY_ROWS = 2000


# --------------------------------------------------------------------------------------------
# Fidelity


def _quality(real: pd.DataFrame, synth: pd.DataFrame, schema: CohortSchema) -> dict[str, Any]:
    from sdv.evaluation import evaluate_quality, run_diagnostic

    md = schema.metadata()
    cols = list(schema.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = evaluate_quality(real[cols], synth[cols], md, verbose=False)
        d = run_diagnostic(real[cols], synth[cols], md, verbose=False)
    props = dict(zip(q.get_properties()["Property"], q.get_properties()["Score"], strict=True))
    shapes = q.get_details("Column Shapes")
    pairs = q.get_details("Column Pair Trends")
    dprops = dict(zip(d.get_properties()["Property"], d.get_properties()["Score"], strict=True))
    worst = pairs.sort_values("Score").head(10)
    return {
        "quality_score": _f(q.get_score()),
        "column_shapes": _f(props.get("Column Shapes")),
        "column_pair_trends": _f(props.get("Column Pair Trends")),
        "diagnostic_score": _f(d.get_score()),
        "diagnostic": {k: _f(v) for k, v in dprops.items()},
        "per_column": {r["Column"]: _f(r["Score"]) for _, r in shapes.iterrows()},
        "worst_pairs": [
            {
                "columns": [r["Column 1"], r["Column 2"]],
                "metric": r["Metric"],
                "score": _f(r["Score"]),
            }
            for _, r in worst.iterrows()
        ],
        "_pairs": pairs,
    }


def _f(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, 4)


def remix(real: pd.DataFrame, plan: dict[str, Any], n: int, seed: int = 0) -> pd.DataFrame:
    """The seed resampled to the plan's cell counts (scaled to n rows): the reference for a
    cohort that was sampled into a target mix on purpose."""
    from clinicgym.patients.cohorts.synthesis import allocate, rows_matching

    cells = plan.get("cells", [])
    counts = allocate(n, [c["count"] for c in cells])
    rng = np.random.default_rng(seed)
    taken = pd.Series(False, index=real.index)
    parts = []
    for cell, k in zip(cells, counts, strict=True):
        pool = real[rows_matching(real, cell["where"]) & ~taken] if k else real.iloc[:0]
        if not len(pool):
            pool = real[rows_matching(real, cell["where"])]
        if not len(pool) or not k:
            continue
        idx = rng.choice(pool.index.to_numpy(), size=k, replace=len(pool) < k)
        taken[idx] = True
        parts.append(real.loc[idx])
    return pd.concat(parts, ignore_index=True) if parts else real


# --------------------------------------------------------------------------------------------
# Privacy


def encode(df: pd.DataFrame, ref: pd.DataFrame, schema: CohortSchema) -> np.ndarray:
    """Rows as vectors for distances: numbers scaled to 0..1 by the reference's range, booleans
    0/1, categories one-hot (x 1/sqrt 2, so a mismatch costs 1), a flag for each missing cell."""
    parts: list[np.ndarray] = []
    for col, meta in schema.columns.items():
        s = df[col]
        missing = s.isna().to_numpy()
        if meta["sdtype"] == "numerical":
            r = pd.to_numeric(ref[col], errors="coerce")
            lo, hi = r.min(), r.max()
            span = (hi - lo) if pd.notna(hi) and hi > lo else 1.0
            x = ((pd.to_numeric(s, errors="coerce") - (lo if pd.notna(lo) else 0)) / span).fillna(0)
            parts.append(x.to_numpy(float)[:, None])
        elif meta["sdtype"] == "boolean":
            parts.append(s.fillna(False).astype(float).to_numpy()[:, None])
        else:
            cats = sorted(ref[col].dropna().astype(str).unique())
            codes = pd.Categorical(s.astype(str).where(s.notna(), None), categories=cats).codes
            onehot = np.zeros((len(s), len(cats) + 1))
            onehot[np.arange(len(s)), codes] = 1 / math.sqrt(2)
            parts.append(onehot)
        parts.append(missing.astype(float)[:, None])
    return np.hstack(parts).astype(np.float32)


def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of a to its nearest row of b (distance to closest
    record), by `sklearn.neighbors.NearestNeighbors` (brute force, chunked by sklearn).

    Not sdmetrics' DCR metrics: they encode the tables their own way and report only summary
    scores, where the report needs each row's distance in this module's encoding (`encode`)."""
    from sklearn.neighbors import NearestNeighbors  # here: sklearn comes with the cohorts extra

    if not len(a):
        return np.empty(0, dtype=np.float32)
    index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(b)
    return index.kneighbors(a, return_distance=True)[0][:, 0].astype(np.float32)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of scores (higher = member) by `sklearn.metrics.roc_auc_score` (ties count a
    half, as in the Mann-Whitney statistic)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(labels, np.concatenate([pos, neg])))


def privacy(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synth: pd.DataFrame,
    schema: CohortSchema,
    seed: int = 0,
) -> dict[str, Any]:
    """DCR against the holdout baseline, exact copies, and a membership-inference estimate."""
    cols = list(schema.columns)
    rng = np.random.default_rng(seed)
    train_h = set(row_hashes(train, cols).tolist())
    hold_h = set(row_hashes(holdout, cols).tolist())
    synth_h = row_hashes(synth, cols)
    copies_train = float(synth_h.isin(train_h).mean()) if len(synth) else 0.0
    copies_hold = float(synth_h.isin(hold_h).mean()) if len(synth) else 0.0

    def sub(df: pd.DataFrame, k: int) -> pd.DataFrame:
        return df if len(df) <= k else df.iloc[np.sort(rng.choice(len(df), k, replace=False))]

    m = min(len(holdout), len(train))
    tr = encode(train, train, schema)
    members = encode(sub(train, m), train, schema)
    ho = encode(holdout.head(m), train, schema)
    sy = encode(sub(synth, PRIVACY_ROWS), train, schema)
    dcr_synth = nearest(sy, tr)
    # a held-out row's distance to the training rows is the baseline for "close"
    dcr_hold = nearest(ho, tr)
    # synthetic rows closer to a training row than to any holdout row (half expected if the
    # synthesizer did not memorise; equal-size reference sets)
    tr_m = encode(sub(train, len(holdout)), train, schema)
    closer_train = float((nearest(sy, tr_m) < nearest(sy, ho)).mean())
    p5 = float(np.percentile(dcr_hold, 5)) if len(dcr_hold) else 0.0
    # membership inference: a member's nearest synthetic row tends to be closer
    d_mem = nearest(members, sy)
    d_non = nearest(ho, sy)
    mia = auc(-d_mem, -d_non) if len(d_mem) and len(d_non) else 0.5
    return {
        "exact_copy_rate": round(copies_train, 6),
        "exact_copy_rate_holdout": round(copies_hold, 6),
        "dcr_synthetic_to_train": _summary(dcr_synth),
        "dcr_holdout_to_train": _summary(dcr_hold),
        "share_closer_than_holdout_p5": round(float((dcr_synth < p5).mean()), 4),
        "share_closer_to_train_than_holdout": round(closer_train, 4),
        "membership_inference_auc": round(mia, 4),
        "membership_advantage": round(abs(2 * mia - 1), 4),
        "rows_compared": {"synthetic": len(sy), "train": len(tr), "holdout": len(ho)},
        "_dcr": (dcr_synth, dcr_hold),
    }


def _summary(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {}
    q = np.percentile(x, [5, 50, 95])
    return {
        "p5": round(float(q[0]), 4),
        "median": round(float(q[1]), 4),
        "p95": round(float(q[2]), 4),
        "mean": round(float(x.mean()), 4),
    }


# --------------------------------------------------------------------------------------------
# Fairness and clinical validity


def _shares(df: pd.DataFrame, col: str) -> dict[str, float]:
    return {
        str(k): round(float(v), 4)
        for k, v in df[col].value_counts(normalize=True).sort_index().items()
    }


def _tvd(p: pd.Series, q: pd.Series) -> float:
    idx = p.index.union(q.index)
    return float(0.5 * (p.reindex(idx, fill_value=0) - q.reindex(idx, fill_value=0)).abs().sum())


def fairness(seed: pd.DataFrame, synth: pd.DataFrame, plan: dict[str, Any]) -> dict[str, Any]:
    """Subgroup shares before/after vs targets; condition (label) mix across subgroups."""
    targets: dict[str, dict[str, float]] = plan.get("balance") or {}
    out: dict[str, Any] = {"attributes": {}, "balanced": list(targets)}
    for attr in BALANCE_ATTRIBUTES:
        seed_s, syn_s = _shares(seed, attr), _shares(synth, attr)
        entry: dict[str, Any] = {"seed": seed_s, "cohort": syn_s}
        if attr in targets:
            t = targets[attr]
            entry["target"] = {k: round(v, 4) for k, v in t.items()}
            entry["max_gap_points"] = round(
                100 * max(abs(syn_s.get(k, 0.0) - v) for k, v in t.items()), 3
            )
        labels: dict[str, Any] = {}
        overall_seed = seed["condition_id"].value_counts(normalize=True)
        overall_syn = synth["condition_id"].value_counts(normalize=True)
        for value in sorted(
            set(seed[attr].dropna().astype(str)) | set(synth[attr].dropna().astype(str))
        ):
            s_rows = seed[seed[attr].astype(str) == value]["condition_id"]
            c_rows = synth[synth[attr].astype(str) == value]["condition_id"]
            labels[value] = {
                "conditions_seed": int(s_rows.nunique()),
                "conditions_cohort": int(c_rows.nunique()),
                "label_tvd_seed": round(_tvd(s_rows.value_counts(normalize=True), overall_seed), 4)
                if len(s_rows)
                else None,
                "label_tvd_cohort": round(_tvd(c_rows.value_counts(normalize=True), overall_syn), 4)
                if len(c_rows)
                else None,
            }
        entry["label_balance"] = labels
        out["attributes"][attr] = entry
    if len(targets) > 1:
        attrs = list(targets)
        joint = synth[attrs].astype(str).agg("|".join, axis=1).value_counts(normalize=True)
        gaps = []
        for cell in plan.get("cells", []):
            if cell.get("reason") != "balance":
                continue
            key = "|".join(str(cell["where"][a]) for a in attrs)
            share = float(np.prod([targets[a][str(cell["where"][a])] for a in attrs]))
            gaps.append(abs(float(joint.get(key, 0.0)) - share))
        out["joint_max_gap_points"] = round(100 * max(gaps), 3) if gaps else None
    floor = plan.get("rare_floor")
    cond_shares = synth["condition_id"].value_counts(normalize=True)
    out["condition_shares"] = {
        "min": round(float(cond_shares.min()), 4) if len(cond_shares) else None,
        "max": round(float(cond_shares.max()), 4) if len(cond_shares) else None,
        "conditions_seed": int(seed["condition_id"].nunique()),
        "conditions_cohort": int(synth["condition_id"].nunique()),
        "rare_floor": floor,
        "below_floor": sorted(k for k, v in cond_shares.items() if floor and v < floor - 1e-9),
    }
    return out


def clinical_validity(cohort: Cohort, synth: pd.DataFrame, sample: int = 200) -> dict[str, Any]:
    """KB consistency of the cohort (after rejection) and of the raw draws (before), and a
    realisation check on the first `sample` rows."""
    reasons = cohort.schema.violations(synth)
    counts = cohort.manifest.counts
    realised, errors = 0, []
    filled: Counter = Counter()
    try:
        cases = cohort.cases(min(sample, len(cohort)), filled=filled)
        realised = len(cases)
        for case in cases:
            cond = cohort.schema.kb.conditions[case.diagnosis.condition_id or ""]
            if case.diagnosis.code != cond.icd10:
                errors.append(f"{case.id}: code {case.diagnosis.code} != {cond.icd10}")
    except Exception as e:  # a failure here is a finding of the report, not a crash
        errors.append(f"{type(e).__name__}: {e}")
    return {
        "kb_consistent_share": round(float(reasons.isna().mean()), 6) if len(synth) else None,
        "violations": {str(k): int(v) for k, v in reasons.value_counts().items()},
        "kb_consistency_before_rejection": counts.get("kb_consistency_before_rejection"),
        "rejected_before_keeping": counts.get("rejected", {}),
        "drawn": counts.get("drawn"),
        "kept": counts.get("kept"),
        "realised_cases": realised,
        "cells_filled_from_kb_per_case": {
            k: round(v / max(realised, 1), 3) for k, v in filled.items()
        },
        "realisation_errors": errors[:10],
    }


def targeting_section(cohort: Cohort, synth: pd.DataFrame) -> dict[str, Any] | None:
    """How the condition mix moved from the targeted run to this cohort."""
    t = cohort.manifest.targeting
    if not t:
        return None
    achieved = synth["condition_id"].value_counts(normalize=True)
    rows = [
        {
            "condition_id": c["condition_id"],
            "episodes": c["episodes"],
            "failure_rate": round(c["failure_rate"], 4),
            "run_share": round(c["run_share"], 4),
            "target_share": round(c["target_share"], 4),
            "cohort_share": round(float(achieved.get(c["condition_id"], 0.0)), 4),
            "finding": c.get("finding"),
        }
        for c in t["conditions"]
    ]
    rows.sort(key=lambda r: -r["failure_rate"])
    return {
        "run": cohort.manifest.lineage.get("target_run"),
        "overall_failure_rate": round(t["overall_failure_rate"], 4),
        "strength": t["strength"],
        "conditions": rows,
    }


# --------------------------------------------------------------------------------------------
# Plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(
    cohort: Cohort,
    real: pd.DataFrame,
    synth: pd.DataFrame,
    fid: dict[str, Any],
    priv: dict[str, Any],
    fair: dict[str, Any],
    target: dict[str, Any] | None,
) -> dict[str, str]:
    """The report's figures as PNG data URLs by name (`targeting` only for a targeted cohort)."""
    import matplotlib

    matplotlib.use("Agg")

    out: dict[str, str] = {
        "column_shapes": _column_shapes_plot(fid),
        "pair_trends": _pair_trends_plot(fid),
        "distributions": _distributions_plot(real, synth),
        "conditions": _conditions_plot(real, synth),
        "subgroups": _subgroups_plot(fair),
        "dcr": _dcr_plot(priv),
    }
    if target:
        out["targeting"] = _targeting_plot(target)
    return out


def _column_shapes_plot(fid: dict[str, Any]) -> str:
    """Each column's shape score as a bar, worst first: where the cohort's distributions drift."""
    import matplotlib.pyplot as plt

    shapes = pd.Series(fid["per_column"]).dropna().sort_values()
    fig, ax = plt.subplots(figsize=(8, max(3, len(shapes) * 0.16)))
    ax.barh(shapes.index, shapes.values, color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("column shape score (1 = same distribution)")
    ax.tick_params(axis="y", labelsize=6)
    return _png(fig)


def _pair_trends_plot(fid: dict[str, Any]) -> str:
    """The column-pair trend scores as a symmetric heat map: which correlations were kept."""
    import matplotlib.pyplot as plt

    pairs = fid["_pairs"]
    cols = list(dict.fromkeys([*pairs["Column 1"], *pairs["Column 2"]]))
    mat = pd.DataFrame(np.nan, index=cols, columns=cols)
    for _, r in pairs.iterrows():
        mat.loc[r["Column 1"], r["Column 2"]] = r["Score"]
        mat.loc[r["Column 2"], r["Column 1"]] = r["Score"]
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(mat.to_numpy(float), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=4)
    ax.set_yticks(range(len(cols)), cols, fontsize=4)
    fig.colorbar(im, ax=ax, label="pair trend score")
    return _png(fig)


def _distributions_plot(real: pd.DataFrame, synth: pd.DataFrame) -> str:
    """Seed and cohort histograms of age and two vitals, side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    axes[0].hist(
        [real["age"].astype(float), synth["age"].astype(float)],
        bins=20,
        density=True,
        label=["seed", "cohort"],
    )
    axes[0].set_title("age")
    axes[0].legend()
    for ax, vid in zip(axes[1:], ["vital_heart_rate", "vital_temperature"], strict=False):
        if vid in real:
            ax.hist(
                [real[vid].astype(float).dropna(), synth[vid].astype(float).dropna()],
                bins=20,
                density=True,
                label=["seed", "cohort"],
            )
            ax.set_title(vid)
    return _png(fig)


def _conditions_plot(real: pd.DataFrame, synth: pd.DataFrame) -> str:
    """The seed's 25 commonest conditions: their share in the seed and in the cohort."""
    import matplotlib.pyplot as plt

    top = real["condition_id"].value_counts(normalize=True).head(25).index
    fig, ax = plt.subplots(figsize=(8, 5))
    x = np.arange(len(top))
    ax.bar(
        x - 0.2,
        real["condition_id"].value_counts(normalize=True).reindex(top).fillna(0),
        0.4,
        label="seed",
    )
    ax.bar(
        x + 0.2,
        synth["condition_id"].value_counts(normalize=True).reindex(top).fillna(0),
        0.4,
        label="cohort",
    )
    ax.set_xticks(x, top, rotation=90, fontsize=6)
    ax.set_ylabel("share")
    ax.legend()
    return _png(fig)


def _subgroups_plot(fair: dict[str, Any]) -> str:
    """One panel per fairness attribute: seed and cohort shares per group, and the target."""
    import matplotlib.pyplot as plt

    attrs = list(fair["attributes"])
    fig, axes = plt.subplots(1, len(attrs), figsize=(4 * len(attrs), 3))
    for ax, attr in zip(np.atleast_1d(axes), attrs, strict=True):
        _subgroup_panel(ax, attr, fair["attributes"][attr])
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return _png(fig)


def _subgroup_panel(ax: Any, attr: str, e: dict[str, Any]) -> None:
    """One attribute's bars (seed, cohort) and target marks; age bands in their KB order."""
    keys = sorted(set(e["seed"]) | set(e["cohort"]))
    if attr == "age_band":
        keys = [b for b in AGE_BANDS if b in keys]
    x = np.arange(len(keys))
    ax.bar(x - 0.2, [e["seed"].get(k, 0) for k in keys], 0.4, label="seed")
    ax.bar(x + 0.2, [e["cohort"].get(k, 0) for k in keys], 0.4, label="cohort")
    if "target" in e:
        ax.scatter(
            x + 0.2,
            [e["target"].get(k, 0) for k in keys],
            color="k",
            marker="_",
            s=200,
            label="target",
            zorder=3,
        )
    ax.set_xticks(x, keys, rotation=45, fontsize=7)
    ax.set_title(attr)


def _dcr_plot(priv: dict[str, Any]) -> str:
    """Distances to the closest training record, synthetic rows against the holdout's."""
    import matplotlib.pyplot as plt

    dcr_s, dcr_h = priv["_dcr"]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([dcr_s, dcr_h], bins=30, density=True, label=["synthetic -> train", "holdout -> train"])
    ax.set_xlabel("distance to closest training record")
    ax.legend()
    return _png(fig)


def _targeting_plot(target: dict[str, Any]) -> str:
    """For the 30 most-failed conditions: run mix, new cohort mix and the run's failure rate."""
    import matplotlib.pyplot as plt

    rows = target["conditions"][:30]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["run_share"] for r in rows], 0.4, label="run mix")
    ax.bar(x + 0.2, [r["cohort_share"] for r in rows], 0.4, label="new cohort")
    ax2 = ax.twinx()
    ax2.plot(x, [r["failure_rate"] for r in rows], "k.", label="failure rate")
    ax2.set_ylim(0, 1)
    ax.set_xticks(x, [r["condition_id"] for r in rows], rotation=90, fontsize=6)
    ax.legend(loc="upper right", fontsize=7)
    return _png(fig)


# --------------------------------------------------------------------------------------------
# The report


def build_report(
    cohort: Cohort, *, with_plots: bool = True
) -> tuple[dict[str, Any], dict[str, str]]:
    """Compute the report of one cohort: (report dict, plots as data URLs)."""
    start = time.perf_counter()
    schema = cohort.schema
    train, holdout = cohort.seed_tables()
    synth = cohort.table.drop(columns=[ID_COLUMN])
    real = schema.normalise(train.drop(columns=[ID_COLUMN]))
    hold = schema.normalise(holdout.drop(columns=[ID_COLUMN]))
    syn = schema.normalise(synth)
    seed = cohort.manifest.seed
    rng = np.random.default_rng(seed)

    def sub(df: pd.DataFrame) -> pd.DataFrame:
        if len(df) <= FIDELITY_ROWS:
            return df.reset_index(drop=True)
        return df.iloc[np.sort(rng.choice(len(df), FIDELITY_ROWS, replace=False))].reset_index(
            drop=True
        )

    plan = cohort.manifest.plan
    fid = _quality(sub(real), sub(syn), schema)
    remixed = None
    if any(c.get("reason") != "all" for c in plan.get("cells", [])):
        ref = remix(real, plan, min(len(real), FIDELITY_ROWS), seed)
        rq = _quality(ref, sub(syn), schema)
        remixed = {k: rq[k] for k in ("quality_score", "column_shapes", "column_pair_trends")}
    priv = privacy(real, hold, syn, schema, seed)
    fair = fairness(real, syn, plan)
    clin = clinical_validity(cohort, synth)
    target = targeting_section(cohort, syn)
    m = cohort.manifest
    report: dict[str, Any] = {
        "format_version": REPORT_FORMAT_VERSION,
        "cohort_id": m.cohort_id,
        "synthesizer": m.synthesizer,
        "seed": m.seed,
        "kb_version": m.kb_version,
        "source": m.source.model_dump(),
        "rows": {"cohort": len(synth), "train": len(train), "holdout": len(holdout)},
        "seed_fingerprint": seed_fingerprint(train, schema),
        "fidelity": {k: v for k, v in fid.items() if not k.startswith("_")},
        "fidelity_vs_target_mix": remixed,
        "privacy": {k: v for k, v in priv.items() if not k.startswith("_")},
        "fairness": fair,
        "clinical_validity": clin,
        "targeting": target,
        "generation": m.counts,
    }
    plots = _plots(cohort, real, syn, fid, priv, fair, target) if with_plots else {}
    report["report_seconds"] = round(time.perf_counter() - start, 2)
    return report, plots


def seed_fingerprint(train: pd.DataFrame, schema: CohortSchema) -> str:
    """A hash of the training rows: cohorts with the same fingerprint share one seed."""
    import hashlib

    h = row_hashes(train, list(schema.columns)).sort_values().to_numpy().tobytes()
    return hashlib.sha256(h).hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_html(template: str, **context: Any) -> str:
    """Render a template from patients/cohorts/templates (jinja2, autoescaped)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("clinicgym.patients.cohorts", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    env.filters["pct"] = lambda v, d=1: "-" if v is None else f"{100 * float(v):.{d}f}%"
    env.filters["num"] = lambda v, d=3: "-" if v is None else f"{float(v):.{d}f}"
    return env.get_template(template).render(**context)


def write_report(cohort: Cohort, out: Path | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """Write report.json and report.html (into the cohort directory by default)."""
    out = Path(out) if out else cohort.root
    out.mkdir(parents=True, exist_ok=True)
    report, plots = build_report(cohort)
    jpath, hpath = out / "report.json", out / "report.html"
    _write_atomic(jpath, json.dumps(report, indent=2, default=str) + "\n")
    _write_atomic(hpath, render_html("cohort_report.html.j2", r=report, plots=plots))
    return jpath, hpath, report


COMPARE_KEYS = (
    ("fidelity", "quality_score"),
    ("fidelity", "column_shapes"),
    ("fidelity", "column_pair_trends"),
    ("fidelity", "diagnostic_score"),
    ("privacy", "exact_copy_rate"),
    ("privacy", "share_closer_to_train_than_holdout"),
    ("privacy", "membership_inference_auc"),
    ("clinical_validity", "kb_consistent_share"),
    ("clinical_validity", "kb_consistency_before_rejection"),
)


def compare(cohorts: Sequence[Cohort], out: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Report every cohort, then a side-by-side comparison; they must share one seed."""
    fingerprints = {c.id: seed_fingerprint(c.seed_tables()[0], c.schema) for c in cohorts}
    prints = set(fingerprints.values())
    if len(prints) > 1:
        raise CohortError(
            "cannot compare cohorts fitted on different seeds (fingerprints "
            + ", ".join(f"{k}={v}" for k, v in fingerprints.items())
            + "); generate them from the same --from/--seed-rows/--seed"
        )
    reports = []
    for c in cohorts:
        _, _, r = write_report(c)
        reports.append(r)
    table = [
        {
            "cohort_id": r["cohort_id"],
            "synthesizer": r["synthesizer"]["name"],
            "fit_seconds": r["synthesizer"].get("fit_seconds"),
            **{f"{sec}.{key}": r[sec].get(key) for sec, key in COMPARE_KEYS},
        }
        for r in reports
    ]
    result = {
        "format_version": REPORT_FORMAT_VERSION,
        "seed_fingerprint": prints.pop(),
        "cohorts": table,
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    names = [f"{t['cohort_id']} ({t['synthesizer']})" for t in table]
    keys = [
        "fidelity.quality_score",
        "fidelity.column_shapes",
        "fidelity.column_pair_trends",
        "clinical_validity.kb_consistency_before_rejection",
    ]
    x = np.arange(len(keys))
    w = 0.8 / max(len(table), 1)
    for i, t in enumerate(table):
        ax.bar(x + i * w, [t[k] or 0 for k in keys], w, label=names[i])
    ax.set_xticks(
        x + w * (len(table) - 1) / 2, ["quality", "shapes", "pair trends", "KB-consistent raw"]
    )
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    plot = _png(fig)
    out.mkdir(parents=True, exist_ok=True)
    jpath, hpath = out / "compare.json", out / "compare.html"
    _write_atomic(jpath, json.dumps(result, indent=2, default=str) + "\n")
    _write_atomic(hpath, render_html("cohort_compare.html.j2", r=result, plot=plot))
    return jpath, hpath, result
