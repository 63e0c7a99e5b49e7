"""Environment steps per second: the structured env (one process, and vectorised over 2
workers), against Gymnasium's CartPole measured in the same run, and the text env with its
embedded patient.

* structured, single process: random actions, resets included (each case compiled once per
  process and then replayed from the cache: the figure is for a warm suite);
* structured, `SyncVectorEnv` and `AsyncVectorEnv` over 2 envs (`shared_memory=True`: the Box
  observation needs no Text-space workaround), steps per second counted over both envs, with
  the full per-step `info` and with `lean_info=True`;
* text env: the scripted baseline's actions (agent excluded from the timer), so every question
  goes through the MiniLM matcher and the grounded patient.

    python bench/structured_env.py [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import clinicgym  # noqa: F401  (registers the ids)
from clinicgym.agents.scripted import ScriptedAgent
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.matching import matcher_for

ID = "clinicgym/Consultation-Structured-v0"
SUITE = 200


def single(env: gym.Env, seconds: float, seed: int = 0) -> float:
    """Steps per second of one env under uniformly random actions."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n_actions = int(env.action_space.n)
    acts = rng.integers(n_actions, size=1_000_000)
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            _o, _r, term, trunc, _i = env.step(int(acts[n % len(acts)]))
            n += 1
            if term or trunc:
                env.reset()
        if time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def vector(venv: gym.vector.VectorEnv, seconds: float, seed: int = 0) -> float:
    """Env steps per second (summed over the sub-envs) of a vector env under random actions."""
    rng = np.random.default_rng(seed)
    venv.reset(seed=seed)
    k, n_actions = venv.num_envs, int(venv.single_action_space.n)
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(200):
            venv.step(rng.integers(n_actions, size=k))
            n += k
        if time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def warm(env: gym.Env) -> None:
    """Compile the bench's suite before timing (the replay cache, as in a long training run)."""
    for i in range(SUITE):
        env.unwrapped.case_at(i)


def text_env(steps: int) -> tuple[float, float]:
    """(steps per second, setup seconds) of the text env on the scripted baseline's actions."""
    kb = default_kb()
    t0 = time.perf_counter()
    matcher_for(kb)
    setup = time.perf_counter() - t0
    env = ConsultationEnv(CaseSampler(kb), kb=kb)
    timed, n, episode = 0.0, 0, 0
    while n < steps:
        obs, info = env.reset(seed=episode)
        agent = ScriptedAgent(kb)
        agent.reset(obs, info)
        episode += 1
        while n < steps:
            action = asyncio.run(agent.act(obs, info))
            t = time.perf_counter()
            obs, _r, term, trunc, info = env.step(action)
            timed += time.perf_counter() - t
            n += 1
            if term or trunc:
                break
    return n / timed, setup


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="timing window per measurement")
    ap.add_argument("--text-steps", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, float] = {}
    out["cartpole_steps_per_s"] = single(gym.make("CartPole-v1").unwrapped, args.seconds)
    env = gym.make(ID, n_cases=SUITE).unwrapped
    warm(env)
    out["structured_single_steps_per_s"] = single(env, args.seconds)

    for lean in (False, True):

        def make(lean: bool = lean) -> gym.Env:
            e = gym.make(ID, n_cases=SUITE, lean_info=lean)
            warm(e)
            return e

        tag = "_lean" if lean else ""
        sync = gym.vector.SyncVectorEnv([make, make])
        out[f"structured_sync2{tag}_steps_per_s"] = vector(sync, args.seconds)
        sync.close()
        asyn = gym.vector.AsyncVectorEnv([make, make], shared_memory=True)
        out[f"structured_async2{tag}_steps_per_s"] = vector(asyn, args.seconds)
        asyn.close()
    out["text_env_steps_per_s"], out["text_env_setup_s"] = text_env(args.text_steps)
    base = out["cartpole_steps_per_s"]
    s1 = out["structured_single_steps_per_s"]
    print("env steps per second (random actions; resets included; warm case cache)")
    print(f"  CartPole-v1 (baseline, same run)        {base:10.0f}")
    print(f"  structured, single process              {s1:10.0f}  ({s1 / base:.2f}x CartPole)")
    for key, label in (
        ("structured_sync2_steps_per_s", "structured, SyncVectorEnv x2            "),
        ("structured_async2_steps_per_s", "structured, AsyncVectorEnv x2           "),
        ("structured_sync2_lean_steps_per_s", "structured, SyncVectorEnv x2, lean_info "),
        ("structured_async2_lean_steps_per_s", "structured, AsyncVectorEnv x2, lean_info"),
    ):
        v = out[key]
        print(f"  {label} {v:10.0f}  ({v / s1:.2f}x single process)")
    t = out["text_env_steps_per_s"]
    print(
        f"  text env, embedded patient (scripted)   {t:10.1f}  (structured is {s1 / t:.0f}x faster); matcher setup {out['text_env_setup_s']:.1f}s"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
