"""Planted behaviour, recovered by the probes: figures for docs/scoring.md.

1. Fact attribution: the planted agent of the tests (tests/scoring/probe_agents.py) asks six
   fixed questions and states a confidence that depends on exactly two facts (0.1 + 0.45 per
   key fact the patient affirmed). On every sampled case of the small test KB where at least
   two of the concepts it asks about are present facts, the two keys are set to two of them,
   and the share of the Shapley mass (|value|) on those two facts is printed, with the mean
   and a bootstrap 95% interval over cases.
2. Counterfactual fairness: the sex-biased agent (names another diagnosis for men), fully and
   on half the patients (even ages), against its unbiased copy on adult pneumonia cases; the
   sex flip rate of each with its 95% interval, and the insurance flip rate and the seed
   control as negative checks.

    .venv/bin/python bench/planted_probes.py [--cases 40] [--max-probed 6] [--permutations 2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import load_kb
from clinicgym.scoring.probes._play import play
from clinicgym.scoring.probes.attribution import attribute
from clinicgym.scoring.probes.counterfactual import counterfactual
from clinicgym.scoring.probes.masking import default_players
from clinicgym.scoring.stats import format_ci, mean_ci

ROOT = Path(__file__).parents[1]
SMALL_KB = ROOT / "tests" / "data" / "kb_small"


def _probe_agents():
    """The planted agents the tests use (one definition for tests and figures)."""
    spec = importlib.util.spec_from_file_location(
        "probe_agents", ROOT / "tests" / "scoring" / "probe_agents.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["probe_agents"] = module
    spec.loader.exec_module(module)
    return module


def _ci(m: dict) -> str:
    return f"{format_ci(m, spec='.3f', sep=', ')} (n={m['n']})"


async def attribution_figures(kb, agents, cases: int, max_probed: int, permutations: int) -> None:
    sampler = CaseSampler(kb)
    masses = []
    t0 = time.perf_counter()
    for i in range(cases):
        if len(masses) >= max_probed:
            break
        case = sampler.sample(0, i)
        # which of the agent's questions this case's patient affirms (on the full case)
        full = await play(lambda: agents.PlantedAgent(keys=()), case, kb, seed=0)
        players = set(default_players(case))
        concepts = list(
            dict.fromkeys(
                f.concept
                for f in case.facts
                if f.id in players and f.present and f.concept in full.agent.affirmed
            )
        )
        if len(concepts) < 2:
            continue
        keys = tuple(concepts[:2])
        a = await attribute(
            lambda k=keys: agents.PlantedAgent(keys=k),
            case,
            kb,
            agent="planted",
            permutations=permutations,
            lime_samples=24,
        )
        key_ids = [f.fact_id for f in a.facts if f.concept in keys]
        mass = a.mass_on(key_ids)
        masses.append(mass)
        lime_top2 = {f.fact_id for f in sorted(a.facts, key=lambda f: -abs(f.lime or 0))[:2]}
        print(
            f"  {case.id:<28} players={len(a.facts):>2} keys={'+'.join(keys):<28} "
            f"mass on keys={mass:.3f}  LIME top-2 = keys: {lime_top2 == set(key_ids)}  "
            f"coalitions played={a.evaluations}"
        )
    if not masses:
        print("no case probed (--max-probed 0, or no case with two affirmed concepts)")
        return
    print(
        f"attribution mass on the two planted facts over {len(masses)} cases: "
        f"{_ci(mean_ci(masses))}; min {min(masses):.3f}; "
        f">= 0.9 on every case: {'yes' if min(masses) >= 0.9 else 'NO'} "
        f"({time.perf_counter() - t0:.0f} s)"
    )


AGENTS = {"fully biased": (True, 1), "half biased": (True, 2), "unbiased": (False, 1)}
"""Sex-biased agents: biased or not, and on patients whose age is a multiple of what."""


async def counterfactual_figures(kb, agents, cases: int) -> None:
    sampled = CaseSampler(kb, conditions=["community_acquired_pneumonia"]).sample_many(cases, 3)
    adults = [c for c in sampled if c.age >= 18]
    t0 = time.perf_counter()
    rates = {}
    for label, (biased, every) in AGENTS.items():
        r = await counterfactual(
            lambda b=biased, n=every: agents.SexBiasedAgent(b, every=n),
            adults,
            kb,
            agent=label,
            attributes=["sex", "insurance"],
        )
        rates[label] = r.summary["sex"]["flip_rate"]
        for attr in ("sex", "insurance", "control"):
            s = r.summary[attr]
            print(
                f"  {label:<12} {attr:<9} pairs={s['pairs']:>3} errors={s['errors']}  "
                f"flip rate {_ci(s['flip_rate'])}"
            )
    u = rates["unbiased"]
    for label in ("fully biased", "half biased"):
        b = rates[label]
        print(
            f"sex flip rate, {label} vs unbiased on {len(adults)} adult cases: "
            f"{b['mean']:.2f} vs {u['mean']:.2f}; intervals disjoint: "
            f"{'yes' if _apart(b, u) else 'NO'}"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=40, help="cases sampled for each probe")
    ap.add_argument("--max-probed", type=int, default=6, help="cases attributed at most")
    ap.add_argument("--permutations", type=int, default=2)
    args = ap.parse_args()
    kb = load_kb(SMALL_KB)
    agents = _probe_agents()
    print("fact attribution, planted two-fact agent (small test KB):")
    asyncio.run(attribution_figures(kb, agents, args.cases, args.max_probed, args.permutations))
    print("counterfactual sex flip, planted bias (small test KB, adult pneumonia cases):")
    asyncio.run(counterfactual_figures(kb, agents, args.cases))


def _apart(hi: dict, lo: dict) -> bool:
    """True if `hi`'s interval lies wholly above `lo`'s (False if either is undefined)."""
    if not hi.get("ci95") or not lo.get("ci95"):
        return False
    return hi["ci95"][0] > lo["ci95"][1]


if __name__ == "__main__":
    main()
