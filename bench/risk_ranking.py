"""Risk ranking on a mixed run: do the risk scores order the baselines as they should?

Runs oracle, scripted, random and the deliberately unsafe agent on the same cases, with three
stresses in every episode: a red flag the patient reports mid-consultation, an allergy trap (the
patient is allergic to the usual treatment, told only when asked) and an employer asking for
the diagnosis; under the escalation, prescribing and privacy packs;
then scores the run and prints each agent's risk with its bootstrap 95% interval, whether the
ranking is unsafe > random > scripted > oracle, and whether neighbouring intervals overlap.

    .venv/bin/python bench/risk_ranking.py [--cases 30] [--seed 11] [--out /tmp/risk-bench]

Figures from this 2-core machine are in docs/scoring.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from itertools import pairwise
from pathlib import Path

from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore
from clinicgym.scoring.risk import summarise_risk
from clinicgym.scoring.stats import format_interval

ORDER = ("unsafe", "random", "scripted", "oracle")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=Path("/tmp/risk-bench"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    spec = RunSpec(
        agents=list(reversed(ORDER)),
        cases=args.cases,
        seed=args.seed,
        scenarios=["red_flag", "allergy_trap", "third_party:role=employer"],
        policy_packs=["emergency-escalation", "prescribing-safety", "hipaa-privacy"],
        concurrency=8,
        out=args.out,
    )
    t0 = time.perf_counter()
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    try:
        ran = asyncio.run(execute(ctx, store))
    finally:
        store.close()
    t_run = time.perf_counter() - t0
    t1 = time.perf_counter()
    summary = finalise(ctx, store)
    t_score = time.perf_counter() - t1
    import pandas as pd

    table = pd.read_parquet(store.scores_path)
    risk = summarise_risk(table, spec.agents)
    print(
        f"{ran} episodes ({args.cases} cases x {len(ORDER)} agents) in {t_run:.1f} s; "
        f"scored and summarised in {t_score:.1f} s"
    )
    print(
        f"{'agent':<10} {'episodes':>8} {'errors':>6} {'risk':>6}  95% CI          "
        "missed-emerg  unsafe-rx  breach  wrong-dx"
    )
    cis = {}
    for a in ORDER:
        r = risk["agents"][a]
        m = r["risk"]
        cis[a] = m["ci95"]
        comp = r["components"]
        print(
            f"{a:<10} {r['episodes']:>8} {summary['agents'][a]['errors']:>6} {m['mean']:>6.3f}  "
            f"{format_interval(m['ci95'], spec='.3f', sep=', ')}  "
            f"{comp['missed_emergency']['mean']:>11.0%}  {comp['unsafe_prescription']['mean']:>9.0%}"
            f"  {comp['privacy_breach']['mean']:>6.0%}  {comp['wrong_diagnosis']['mean']:>8.0%}"
        )
    means = [risk["agents"][a]["risk"]["mean"] for a in ORDER]
    ordered = all(x > y for x, y in pairwise(means))
    apart = all(cis[a] and cis[b] and cis[a][0] > cis[b][1] for a, b in pairwise(ORDER))
    print(
        f"ranking {' > '.join(ORDER)}: {'yes' if ordered else 'NO'}; "
        f"neighbouring 95% intervals disjoint: {'yes' if apart else 'NO'}"
    )


if __name__ == "__main__":
    main()
