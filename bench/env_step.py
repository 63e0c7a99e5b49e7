"""Env overhead per step: patient answer included, agent excluded.

Plays episodes of the scripted baseline on the bundled KB and times only `env.step` (the agent's
thinking is outside the timer), until `--steps` steps are timed. Two action streams:

* `scripted`: the baseline's own questions (canonical KB wording; the encoder cache warms up, as
  in a real run where agents repeat questions across episodes);
* `novel`: every question made unique (a different opener per step), so every ask is a cache
  miss and pays a MiniLM forward pass: the worst case.

Baseline in the same run: one MiniLM forward pass of a short question, so the figures can be read
as "overhead beyond the one embedding we cannot avoid". Target: median < 10 ms per step.

    python bench/env_step.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np

from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.envs.action import Ask
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.encoder import default_encoder
from clinicgym.patients.patient.matching import matcher_for

OPENERS = [
    "",
    "Can you tell me, ",
    "I'd like to know: ",
    "Quick question. ",
    "Thinking about today, ",
    "One more thing. ",
    "Sorry to ask again, but ",
    "Tell me honestly, ",
]


def _novel(action: object, step: int) -> object:
    if isinstance(action, Ask):
        return Ask(question=f"{OPENERS[step % len(OPENERS)]}{action.question} (#{step})")
    return action


def time_steps(n_steps: int, mode: str, seed: int = 0) -> tuple[list[float], dict[str, int]]:
    kb = default_kb()
    sampler = CaseSampler(kb)
    env = ConsultationEnv(sampler, kb=kb)
    encoder = default_encoder()
    calls0 = encoder.calls
    times: list[float] = []
    kinds: dict[str, int] = {}
    episode = 0
    while len(times) < n_steps:
        agent = ScriptedAgent(kb)
        obs, info = env.reset(seed=seed + episode)
        agent.reset(obs, info)
        episode += 1
        done = False
        while not done and len(times) < n_steps:
            action = asyncio.run(agent.act(obs, info))
            if mode == "novel":
                action = _novel(action, len(times))
            kinds[type(action).__name__] = kinds.get(type(action).__name__, 0) + 1
            t0 = time.perf_counter()
            obs, _r, term, trunc, info = env.step(action)
            times.append((time.perf_counter() - t0) * 1000)
            done = term or trunc
    kinds["episodes"] = episode
    kinds["encoder_forward_passes"] = encoder.calls - calls0
    return times, kinds


def encoder_baseline(n: int = 200) -> list[float]:
    enc = default_encoder()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        enc.encode([f"Have you noticed anything unusual about symptom {i} lately?"])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    matcher_for(default_kb())
    setup_s = time.perf_counter() - t0
    results: dict[str, object] = {"setup_seconds": round(setup_s, 2)}
    base = encoder_baseline()
    results["minilm_forward_pass"] = _stats(base)
    for mode in ("scripted", "novel"):
        times, kinds = time_steps(args.steps, mode)
        s = _stats(times)
        s["steps"] = len(times)
        s["median_over_one_forward_pass"] = round(
            s["median_ms"] / results["minilm_forward_pass"]["median_ms"], 2
        )  # type: ignore[index]
        s["mix"] = kinds
        results[mode] = s
    print(f"env overhead per step (agent excluded), bundled KB {default_kb().version}")
    print(f"  setup (KB, MiniLM, question matrix): {results['setup_seconds']} s")
    b = results["minilm_forward_pass"]
    print(
        f"  baseline, one MiniLM forward pass:  median {b['median_ms']:.2f} ms, p95 {b['p95_ms']:.2f} ms"
    )  # type: ignore[index]
    for mode in ("scripted", "novel"):
        r = results[mode]
        print(
            f"  {mode:8s} {r['steps']} steps: median {r['median_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms, "  # type: ignore[index]
            f"mean {r['mean_ms']:.2f} ms; {r['median_over_one_forward_pass']}x one forward pass; "  # type: ignore[index]
            f"target median < 10 ms: {'MET' if r['median_ms'] < 10 else 'MISSED'}"  # type: ignore[index]
        )
        print(f"           mix: {r['mix']}")  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
