"""Is the benchmark an instrument? Where the information is, and how much inquiry is worth.

Plays presentation-first cases (the default generator) with baselines that bracket what a
model can do, and prints, for all cases and for each difficulty tier:

* `opening`: diagnoses from the opening line alone with the KB posterior (the floor of inquiry);
* `scripted#budget=B`: the KB-aware Bayesian history taker limited to B questions, exams and
  tests, for each budget; `scripted` at its default (the turn budget); and `ceiling`, scripted
  with no budget, never stopping early, and 60 turns; and `record`, what each case's whole
  record points to with every result in, whatever its delay (no episode: the ceiling of what
  the records allow);
* `random`, and `oracle` (reads the answer: scoring's maximum);

with top-1 accuracy (Wilson 95% interval), mean turns and must-ask coverage; then whether
inquiry matters (scripted's accuracy with must-ask coverage >= 50% against below 50%, in each
scripted run and pooled over the budgets, and the
share of cases whose scripted diagnosis changes when the must-ask facts are masked); and,
with `--plausibility N`, the plausibility validator's count over N generated cases. A plot of
accuracy against budget goes to `--plot`.

    python bench/validity.py --cases 200 --seed 0 --plot docs/img/validity_budget.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from scipy.stats import binomtest

from clinicgym.agents.registry import make_agent_factory
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.plausibility import violations
from clinicgym.patients.cases.posterior import record_verdict
from clinicgym.patients.cases.presentation import PresentationSampler
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb, load_kb
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.scoring.diagnosis import matches
from clinicgym.scoring.inquiry import coverage
from clinicgym.scoring.probes._play import play
from clinicgym.scoring.probes.masking import mask_case, masked_concepts, masked_patient_factory

CEILING_TURNS = 60


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of k successes in n."""
    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def pct(k: int, n: int) -> str:
    """'62% [55-68]'."""
    if n == 0:
        return "-"
    lo, hi = wilson(k, n)
    return f"{100 * k / n:.0f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


def must_ask(case: Case) -> list[str]:
    """The must-ask facts a clinician has to elicit (not the complaint, not identifiers)."""
    return [
        f.id
        for f in case.facts
        if f.salience == "must_ask" and f.category not in ("chief_complaint", "phi")
    ]


async def _play_all(
    kb: KnowledgeBase,
    cases: Sequence[Case],
    agents: dict[str, tuple[str, int]],
    progress: Progress,
) -> dict[str, list[dict[str, Any]]]:
    """Every agent on every case: top-1, turns, coverage (None for an errored episode)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    task = progress.add_task("episodes", total=len(agents) * len(cases))
    for label, (spec, turns) in agents.items():
        factory = make_agent_factory(spec, kb)
        for i, case in enumerate(cases):
            played = await play(factory, case, kb, seed=i, max_turns=turns, label=label)
            ep = played.episode
            row: dict[str, Any] = {"case": case.id, "tier": case.difficulty.tier}  # type: ignore[union-attr]
            if ep is None:
                row["error"] = played.error
            else:
                dx = ep.outcome.diagnoses
                row["top1"] = bool(dx and matches(dx[0].name, case.diagnosis))
                row["dx"] = dx[0].name if dx else None
                row["turns"] = ep.turns
                row["coverage"] = coverage(ep, case)
            out[label].append(row)
            progress.advance(task)
    return out


async def _masked(
    kb: KnowledgeBase, cases: Sequence[Case], max_turns: int, progress: Progress
) -> list[str | None]:
    """Scripted's top diagnosis on each case with its must-ask facts masked."""
    factory = make_agent_factory("scripted", kb)
    matcher = matcher_for(kb)
    out: list[str | None] = []
    task = progress.add_task("masked", total=len(cases))
    for i, case in enumerate(cases):
        ids = must_ask(case)
        masked = mask_case(case, ids, kb)
        patient = masked_patient_factory(matcher, masked_concepts(case, ids))
        played = await play(
            factory, masked, kb, seed=i, max_turns=max_turns, patient_factory=patient
        )
        dx = played.episode.outcome.diagnoses if played.episode else []
        out.append(dx[0].name if dx else None)
        progress.advance(task)
    return out


def _record_rows(
    sampler: PresentationSampler, cases: Sequence[Case], seed: int
) -> list[dict[str, Any]]:
    """What each case's whole record points to (`posterior.record_verdict`): every finding,
    examination and test the setting can do, whatever its delay. No episode is played, so no
    turns and no coverage: the ceiling of what the records allow."""
    out = []
    for i, case in enumerate(cases):
        record = sampler.sample_record(np.random.default_rng([seed, i]))
        verdict = sampler.kb.conditions[record_verdict(sampler.kb, record)].name
        out.append(
            {
                "case": case.id,
                "tier": case.difficulty.tier,  # type: ignore[union-attr]
                "top1": matches(verdict, case.diagnosis),
                "dx": verdict,
                "turns": None,
                "coverage": None,
            }
        )
    return out


def coverage_split(rows: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Top-1 successes and episodes with must-ask coverage >= 50% ('high') and below ('low')."""
    ok = [r for r in rows if "error" not in r and r.get("coverage") is not None]
    hi = [r for r in ok if r["coverage"] >= 0.5]
    lo = [r for r in ok if r["coverage"] < 0.5]
    return {
        "high": [sum(r["top1"] for r in hi), len(hi)],
        "low": [sum(r["top1"] for r in lo), len(lo)],
    }


def _summary_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    k = sum(r["top1"] for r in ok)
    covs = [r["coverage"] for r in ok if r["coverage"] is not None]
    turns = [r["turns"] for r in ok if r["turns"] is not None]
    return {
        "n": len(ok),
        "errors": len(rows) - len(ok),
        "top1": k,
        "top1_ci": wilson(k, len(ok)),
        "turns": statistics.fmean(turns) if turns else None,
        "coverage": statistics.fmean(covs) if covs else None,
    }


def _table(title: str, results: dict[str, list[dict[str, Any]]], tier: str | None) -> Table:
    t = Table(title=title)
    for col in ("agent", "n", "top-1 [95% CI]", "turns", "must-ask coverage"):
        t.add_column(col, justify="left" if col == "agent" else "right")
    for label, rows in results.items():
        rows = [r for r in rows if tier is None or r["tier"] == tier]
        if not rows:
            continue
        s = _summary_row(rows)
        t.add_row(
            label,
            str(s["n"]),
            pct(s["top1"], s["n"]),
            f"{s['turns']:.1f}" if s["turns"] is not None else "-",
            f"{100 * s['coverage']:.0f}%" if s["coverage"] is not None else "-",
        )
    return t


def _plot(path: Path, budgets: list[int], results: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys, lo, hi = [], [], [], []
    points = [(0, "opening")] + [(b, f"scripted#budget={b}") for b in budgets]
    for b, label in points:
        s = _summary_row(results[label])
        xs.append(b)
        ys.append(100 * s["top1"] / s["n"])
        lo.append(100 * (s["top1"] / s["n"] - s["top1_ci"][0]))
        hi.append(100 * (s["top1_ci"][1] - s["top1"] / s["n"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label="scripted, by budget")
    lines = (
        ("scripted (default)", "scripted", "--", "tab:blue"),
        ("ceiling (no budget, 60 turns)", "ceiling", ":", "black"),
        ("record (every result, no time limit)", "record", (0, (1, 4)), "tab:green"),
        ("random", "random", "-.", "tab:red"),
    )
    for text, label, style, colour in lines:
        s = _summary_row(results[label])
        y = 100 * s["top1"] / s["n"]
        ax.axhline(y, linestyle=style, color=colour, linewidth=1, label=f"{text}: {y:.0f}%")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("symlog", base=2, linthresh=1)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("questions, examinations and tests allowed (0 = opening line only)")
    ax.set_ylabel("top-1 accuracy, % (Wilson 95% CI)")
    ax.set_ylim(0, 105)
    ax.set_title("Accuracy against inquiry budget")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _count_violations(
    sampler: PresentationSampler, n: int, seed: int, progress: Progress
) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    task = progress.add_task("plausibility", total=n)
    for i in range(n):
        for v in violations(sampler.sample(seed, i), sampler.kb):
            counts[v.split(":", 1)[0]] += 1
        progress.advance(task)
    return dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", default="2,4,8,16")
    ap.add_argument("--max-turns", type=int, default=20, help="the default suites' turn budget")
    ap.add_argument("--kb", type=Path, help="a KB directory (default: the bundled one)")
    ap.add_argument("--plot", type=Path, help="write the accuracy-against-budget plot here")
    ap.add_argument("--json", type=Path, help="write every figure here as JSON")
    ap.add_argument("--plausibility", type=int, default=0, help="validate this many cases too")
    ap.add_argument("--no-mask", action="store_true", help="skip the masking measure")
    ap.add_argument("--only", help="comma-separated agent labels to play (default: all)")
    args = ap.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    console = Console(width=120)
    started = time.perf_counter()
    kb = load_kb(args.kb) if args.kb else default_kb()
    sampler = PresentationSampler(kb)
    cases = sampler.sample_many(args.cases, args.seed, prefix="validity")
    turns = args.max_turns
    agents: dict[str, tuple[str, int]] = {"opening": ("opening", turns)}
    agents |= {f"scripted#budget={b}": (f"scripted#budget={b}", turns) for b in budgets}
    agents["scripted"] = ("scripted", turns)
    agents["ceiling"] = ("scripted#budget=inf,stop=1", CEILING_TURNS)
    agents["random"] = ("random", turns)
    agents["oracle"] = ("oracle", turns)
    keep = set(args.only.split(",")) if args.only else set()
    if args.only:
        agents = {k: v for k, v in agents.items() if k in keep}
    with Progress(console=console, transient=True) as progress:
        results = asyncio.run(_play_all(kb, cases, agents, progress))
        if not args.only or "record" in keep:
            results["record"] = _record_rows(sampler, cases, args.seed)
        masked = [] if args.no_mask else asyncio.run(_masked(kb, cases, turns, progress))
        plaus = _count_violations(sampler, args.plausibility, args.seed, progress)
    console.print(_table(f"All {len(cases)} cases (seed {args.seed})", results, None))
    tiers: dict[str, int] = defaultdict(int)
    for c in cases:
        tiers[c.difficulty.tier] += 1  # type: ignore[union-attr]
    for tier in ("easy", "medium", "hard"):
        if tiers[tier]:
            console.print(_table(f"Tier {tier}: {tiers[tier]} cases", results, tier))
    figures: dict[str, Any] = {
        "cases": len(cases),
        "seed": args.seed,
        "kb_version": kb.version,
        "tiers": dict(tiers),
        "agents": {k: _summary_row(v) for k, v in results.items()},
    }
    splits = {
        label: coverage_split(rows)
        for label, rows in results.items()
        if label == "scripted" or label.startswith("scripted#budget=")
    }
    if splits:
        pooled = [r for label in splits for r in results[label]]
        splits["pooled over budgets"] = coverage_split(pooled)
        split_table = Table(title="Inquiry: scripted's top-1 by must-ask coverage")
        for col in ("run", "coverage >= 50%", "coverage < 50%", "difference"):
            split_table.add_column(col, justify="left" if col == "run" else "right")
        for label, sp in splits.items():
            (k_hi, n_hi), (k_lo, n_lo) = sp["high"], sp["low"]
            diff = f"{100 * (k_hi / n_hi - k_lo / n_lo):+.0f} points" if n_hi and n_lo else "-"
            split_table.add_row(
                label, f"{pct(k_hi, n_hi)} (n={n_hi})", f"{pct(k_lo, n_lo)} (n={n_lo})", diff
            )
        console.print(split_table)
        figures["coverage_split"] = splits
    if masked and "scripted" in results:
        changed = sum(
            (m or "") != (r.get("dx") or "")
            for m, r in zip(masked, results["scripted"], strict=True)
        )
        console.print(
            f"Masking the must-ask facts changes scripted's diagnosis in {pct(changed, len(cases))} "
            "of cases"
        )
        figures["masking_changed"] = [changed, len(cases)]
    if args.plausibility:
        total = sum(plaus.values())
        console.print(
            f"Plausibility: {total} violations in {args.plausibility} generated cases"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(plaus.items()))})" if total else "")
        )
        figures["plausibility"] = {"cases": args.plausibility, "violations": plaus}
    if args.plot and not args.only:
        _plot(args.plot, budgets, results)
        console.print(f"Plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    console.print(f"[dim]{time.perf_counter() - started:.0f} s[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
