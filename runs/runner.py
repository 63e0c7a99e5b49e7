"""The local executor: agents x cases x repeats as asyncio episodes, with a concurrency limit.

`concurrency` workers pull planned episodes from one iterator, so memory stays flat however many
episodes a run holds. Each finished episode is appended to the store before the next is taken;
an episode whose agent or env raises is stored as an error (counted apart, never scored).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from clinicgym.agents.registry import AgentFactory, make_agent_factory
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.envs.protocols import CaseReader
from clinicgym.patients.case import Case
from clinicgym.patients.kb import KnowledgeBase, default_kb, load_kb
from clinicgym.patients.matching import matcher_for
from clinicgym.patients.sampler import CaseSampler
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore
from clinicgym.runs.summary import score_table, summarise
from clinicgym.scoring.metrics import episode_metrics, episode_reward


@dataclass(frozen=True)
class PlannedEpisode:
    """One episode of the plan: which agent plays which case, which repeat, with which seed."""

    episode_id: str
    agent: str
    case_index: int
    repeat: int
    seed: int


def episode_seed(run_seed: int, case_index: int, repeat: int) -> int:
    """The env/agent seed of one episode: the same for every agent on the same case and repeat."""
    return int(np.random.SeedSequence([run_seed, case_index, repeat]).generate_state(1)[0])


def plan_episodes(spec: RunSpec, cases: list[Case]) -> list[PlannedEpisode]:
    """Every episode of the run, interleaved across agents so their progress moves together."""
    return [
        PlannedEpisode(
            episode_id=f"{agent}|{case.id}|r{r}",
            agent=agent,
            case_index=i,
            repeat=r,
            seed=episode_seed(spec.seed, i, r),
        )
        for i, case in enumerate(cases)
        for r in range(spec.repeats)
        for agent in spec.agents
    ]


@dataclass
class RunContext:
    """Everything a run needs, resolved before anything is written."""

    spec: RunSpec
    kb: KnowledgeBase
    cases: list[Case]
    factories: dict[str, AgentFactory]
    plan: list[PlannedEpisode]


def prepare(spec: RunSpec, agent_options: dict[str, Any] | None = None) -> RunContext:
    """Load the KB, generate the cases and build agent factories (errors surface here)."""
    kb = load_kb(spec.kb_dir) if spec.kb_dir else default_kb()
    sampler = CaseSampler(
        kb,
        weighting=spec.weighting,
        settings=spec.settings or None,
        conditions=spec.conditions or None,
    )
    cases = sampler.sample_many(spec.cases, spec.seed)
    factories = {a: make_agent_factory(a, kb, agent_options) for a in spec.agents}
    return RunContext(spec, kb, cases, factories, plan_episodes(spec, cases))


async def play_episode(
    env: ConsultationEnv,
    agent: Any,
    case: Case,
    planned: PlannedEpisode,
) -> Episode:
    """Play one consultation to its end; agent or env exceptions become an errored episode."""
    if isinstance(agent, CaseReader):
        agent.read_case(case)
    options = {
        "case": case,
        "agent_id": planned.agent,
        "episode_id": planned.episode_id,
        "repeat": planned.repeat,
    }
    try:
        obs, info = env.reset(seed=planned.seed, options=options)
        agent.reset(obs, info)
    except Exception as e:
        return _errored(env, planned, case, TerminationReason.ENV_ERROR, e)
    while True:
        try:
            action = await agent.act(obs, info)
        except Exception as e:
            return _errored(env, planned, case, TerminationReason.AGENT_ERROR, e)
        try:
            obs, _reward, terminated, truncated, info = env.step(action)
        except Exception as e:
            return _errored(env, planned, case, TerminationReason.ENV_ERROR, e)
        if terminated or truncated:
            episode: Episode = info["episode"]
            episode.metrics = episode_metrics(episode, case)
            return episode


def _errored(
    env: ConsultationEnv,
    planned: PlannedEpisode,
    case: Case,
    reason: TerminationReason,
    exc: BaseException,
) -> Episode:
    where = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    message = f"{planned.agent} on {case.id}: {where}"
    try:
        episode = env.episode(reason)
    except Exception:
        episode = Episode(
            episode_id=planned.episode_id,
            case_id=case.id,
            agent_id=planned.agent,
            seed=planned.seed,
            termination=reason,
            turns=0,
        )
    return episode.model_copy(
        update={
            "episode_id": planned.episode_id,
            "agent_id": planned.agent,
            "repeat": planned.repeat,
            "status": "error",
            "errors": [message],
            "metrics": {},
            "finished": time.time(),
        }
    )


async def execute(
    ctx: RunContext,
    store: RunStore,
    on_episode: Callable[[Episode], None] | None = None,
) -> int:
    """Run every planned episode not yet in the store; returns how many were run now."""
    done = store.finished_ids()
    todo: Iterator[PlannedEpisode] = (p for p in ctx.plan if p.episode_id not in done)
    matcher_for(ctx.kb)  # build the shared question matcher once, before the workers start
    count = 0

    async def worker() -> None:
        nonlocal count
        for planned in todo:
            case = ctx.cases[planned.case_index]
            env = ConsultationEnv(
                [case],
                kb=ctx.kb,
                max_turns=ctx.spec.max_turns,
                end_on_diagnose=ctx.spec.end_on_diagnose,
                reward_fn=episode_reward,
            )
            agent = ctx.factories[planned.agent]()
            episode = await play_episode(env, agent, case, planned)
            store.append(episode)
            count += 1
            if on_episode is not None:
                on_episode(episode)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(ctx.spec.concurrency)))
    return count


def finalise(ctx: RunContext, store: RunStore) -> dict[str, Any]:
    """Write scores.parquet and summary.json from what the store holds; return the summary."""
    cases = {c.id: c for c in ctx.cases}
    table = score_table(store.iter_episodes(), cases)
    table.to_parquet(store.scores_path, index=False)
    summary = summarise(table, ctx.spec.agents, store.root.name)
    summary["planned_episodes"] = len(ctx.plan)
    summary["stored_episodes"] = len(table)
    store.write_summary(summary)
    return summary
