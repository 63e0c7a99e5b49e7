"""Policy-monitor overhead per env step, structured and textual checks together.

Plays episodes of the scripted and oracle baselines on the bundled KB, every episode under the
scenario suite, with every shipped pack's latest version monitoring. Two figures per step:

* monitor time: the time spent inside `PolicyMonitor.observe` for all events of the step
  (the clinician's turn, the reply, injected lines), measured directly;
* env.step time with the monitor and, as the baseline in the same run, without it: the same
  agents, cases, scenarios and seeds replayed with no monitor (scenarios still inject lines).

A first, untimed pass over the same episodes warms the models and the embedding cache, so both
timed passes meet the same caches (as a long run does: agents repeat their questions across
episodes). Embeddings the monitor computes for clinician words are ones the patient's question
matcher would compute next anyway (same normalisation, shared cache), so part of the monitor's
time is taken off the env's; the paired env.step comparison shows the net cost.
Target: median monitor time < 5 ms per step.

    python bench/monitors.py [--episodes 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from clinicgym.agents.oracle import OracleAgent
from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.encoder import default_encoder
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.policies import PolicyMonitor, load_packs, make_scenarios
from clinicgym.policies.library import available


class TimedMonitor(PolicyMonitor):
    """A PolicyMonitor that adds up the time spent in `observe`."""

    spent = 0.0

    def observe(self, event, history=()):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return super().observe(event, history)
        finally:
            TimedMonitor.spent += time.perf_counter() - t


def play(kb, cases, packs, monitored: bool, seed: int):
    """(env.step seconds, monitor seconds) per timed step; violations seen."""
    steps: list[tuple[float, float]] = []
    violations = 0
    for i, case in enumerate(cases):
        for agent_cls in (ScriptedAgent, OracleAgent):
            monitors = [TimedMonitor(packs, kb)] if monitored else []
            env = ConsultationEnv(
                [case], kb=kb, monitors=monitors, scenarios=make_scenarios(["suite"], kb)
            )
            agent = agent_cls(kb)
            if isinstance(agent, OracleAgent):
                agent.read_case(case)
            obs, info = env.reset(seed=seed + i, options={"case": case})
            agent.reset(obs, info)
            done = False
            while not done:
                action = asyncio.run(agent.act(obs, info))
                TimedMonitor.spent = 0.0
                t = time.perf_counter()
                obs, _, term, trunc, info = env.step(action)
                took = time.perf_counter() - t
                done = term or trunc
                steps.append((took, TimedMonitor.spent))
            violations += len(info["episode"].violations)
    return steps, violations


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=40, help="cases per pass (2 agents each)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    kb = default_kb()
    matcher_for(kb)
    packs = load_packs([f"{p}@{max(v)}" for p, v in available().items()])
    cases = CaseSampler(kb).sample_many(args.episodes, args.seed)
    enc = default_encoder()

    t0 = time.perf_counter()
    play(kb, cases, packs, monitored=True, seed=args.seed)  # warm-up, not timed
    warm = time.perf_counter() - t0
    calls0 = enc.calls
    base, _ = play(kb, cases, packs, monitored=False, seed=args.seed)
    base_calls = enc.calls - calls0
    calls0 = enc.calls
    timed, violations = play(kb, cases, packs, monitored=True, seed=args.seed)
    mon_calls = enc.calls - calls0

    step_base = [s * 1000 for s, _ in base]
    step_mon = [s * 1000 for s, _ in timed]
    mon = [m * 1000 for _, m in timed]
    rules = sum(len(p.rules) for p in packs)
    print(f"packs: {', '.join(p.ref for p in packs)} ({rules} rules); scenario: suite")
    print(
        f"steps timed: {len(mon)} (monitored), {len(step_base)} (baseline); violations: {violations}"
    )
    print(
        f"monitor time per step:    median {statistics.median(mon):.3f} ms, "
        f"p90 {pct(mon, 0.9):.3f}, p99 {pct(mon, 0.99):.3f}, max {max(mon):.1f} ms "
        f"(target: median < 5 ms) -> {'PASS' if statistics.median(mon) < 5 else 'FAIL'}"
    )
    print(
        f"env.step without monitor: median {statistics.median(step_base):.3f} ms, "
        f"p90 {pct(step_base, 0.9):.3f} ms (baseline, same run)"
    )
    print(
        f"env.step with monitor:    median {statistics.median(step_mon):.3f} ms, "
        f"p90 {pct(step_mon, 0.9):.3f} ms; ratio of medians "
        f"{statistics.median(step_mon) / statistics.median(step_base):.2f}"
    )
    share = sum(mon) / sum(step_mon)
    print(f"share of monitored env.step time spent in monitors: {share:.1%}")
    print(
        f"MiniLM forward passes in the timed passes: {base_calls} without monitor, {mon_calls} "
        f"with (warm-up pass: {warm:.0f} s)"
    )


if __name__ == "__main__":
    main()
