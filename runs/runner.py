"""A run, composed: `prepare` (KB, packs, cases, agents), the plan of episodes, one episode
(`play_planned`), `execute` (the spec's executor plays the plan, runs/executors.py) and
`finalise` (scores and summary from what the store holds).

One rule for errors (`classify_error`): an exception the agent raises is the model's failure
(an error turn, scored: a turn used, no diagnosis from it); a failure of the model's backend,
the transport or the machine is an infrastructure error (the episode is stored as errored,
excluded from the metrics, retried); an exception inside clinicgym's env, patient, monitors or
scoring is a bug (`EpisodeBug`: the run stops and says so, never a silent exclusion).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clinicgym.agents.errors import AgentSpecError, BackendError
from clinicgym.agents.registry import AgentFactory, make_agent_factory
from clinicgym.envs.action import ActionError
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.envs.protocols import CaseReader
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import make_sampler
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb, load_kb
from clinicgym.policies import Judge, apply_settled
from clinicgym.policies.setup import PolicySetup
from clinicgym.runs.casefile import (
    CaseList,
    CohortCases,
    GeneratedCases,
    RunCases,
    as_run_cases,
    sampler_recipe,
)
from clinicgym.runs.errors import EpisodeBug, RunError
from clinicgym.runs.patient_setup import PatientMaker, make_patient_maker
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore
from clinicgym.runs.summary import ScoredRows
from clinicgym.scoring.metrics import EpisodeScorer, episode_metrics, episode_reward


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


def plan_episodes(spec: RunSpec, cases: Sequence[Case]) -> list[PlannedEpisode]:
    """Every episode of the run, interleaved across agents so their progress moves together
    (from the cases' ids: no generated case is realised to plan it)."""
    ids = as_run_cases(cases).ids
    return [
        PlannedEpisode(
            episode_id=f"{agent}|{case_id}|r{r}",
            agent=agent,
            case_index=i,
            repeat=r,
            seed=episode_seed(spec.seed, i, r),
        )
        for i, case_id in enumerate(ids)
        for r in range(spec.repeats)
        for agent in spec.agents
    ]


@dataclass
class RunContext:
    """Everything a run needs, resolved before anything is written."""

    spec: RunSpec
    kb: KnowledgeBase
    cases: RunCases
    """Generated cases realised when their episode starts (runs/casefile.py), or a file's."""
    factories: dict[str, AgentFactory]
    plan: list[PlannedEpisode]
    policy: PolicySetup
    """The run's packs, scenarios and judge (for packs with judge checks), checked once."""
    patient: PatientMaker | None = None
    """Makes LLM-worded patients (`--patient MODEL`); None: the grounded template patient."""
    scored: ScoredRows = field(default_factory=ScoredRows)
    """Episodes of this session scored where they were played, by episode id (`score_played`):
    finalise takes their rows instead of realising their case again."""


@dataclass(frozen=True)
class Scored:
    """One episode scored against the case it was played with, while that case was realised:
    the case's content hash, the episode's row of the score table (in `SCORE_COLUMNS` order)
    and, when packs watched it, its live compliance verdict."""

    case_hash: str
    row: tuple[Any, ...]
    verdict: Any = None


def score_played(ctx: RunContext, episode: Episode, case: Case, case_hash: str) -> Scored | None:
    """What finalise would compute for a stored episode from its case (its score-table row,
    its live verdict), computed now, while the case is realised, so finalise does not realise
    it again. None if scoring raised: finalise then scores the episode itself and reports it."""
    from clinicgym.policies.rescore import live_verdicts
    from clinicgym.runs.summary import ScoreTable

    try:  # a scorer per episode: its played-case cache must not grow with the run
        scorer = EpisodeScorer(ctx.kb, ctx.spec.scenarios, monitored=bool(ctx.policy.packs))
        row = ScoreTable(scorer).row(episode, case)
        verdict = None
        if ctx.policy.packs:
            verdict = live_verdicts([episode], {case.id: case}, ctx.spec.scenarios, ctx.kb)[0]
    except Exception:
        return None
    return Scored(case_hash, row, verdict)


def prepare(
    spec: RunSpec,
    agent_options: dict[str, Any] | None = None,
    judge: Judge | None = None,
    cases: Sequence[Case] | None = None,
    factories: Mapping[str, AgentFactory] | None = None,
) -> RunContext:
    """Load the KB and policy packs, set up the cases and build agent factories (errors
    surface here: a run never starts with a half-loaded pack or an unknown scenario).
    Generated cases are not realised here but when their episode starts. `cases` given (a Ray
    worker gets the driver's written ones) are used as they are; `judge` defaults to the one
    `spec.judge` names; `factories` by agent id are used instead of building those agents from
    their specs (agent objects handed to `clinicgym.evaluate`)."""
    kb = load_kb(spec.kb_dir) if spec.kb_dir else default_kb()
    if judge is None and spec.judge:
        from clinicgym.runs.judge import judge_from_spec

        judge = judge_from_spec(spec.judge)
    policy = PolicySetup.load(spec.policy_packs, spec.scenarios, kb, judge)
    run_cases = _run_cases(spec, kb) if cases is None else as_run_cases(cases)
    options = {**spec.agent_options(), **(agent_options or {})}
    given = dict(factories or {})
    built = {a: given.get(a) or make_agent_factory(a, kb, options) for a in spec.agents}
    patient = make_patient_maker(
        spec.patient, kb, spec.out, spec.patient_cache, spec.patient_cache_mode
    )
    plan = plan_episodes(spec, run_cases)
    return RunContext(spec, kb, run_cases, built, plan, policy, patient)


def _run_cases(spec: RunSpec, kb: KnowledgeBase) -> RunCases:
    """The run's cases: a suite's frozen ones, an external file's, a cohort's, or sampled (the
    sampled ones lazily: each realised from the seed and its index when its episode starts)."""
    if spec.suite:
        from clinicgym.runs.suite import suite_cases

        return as_run_cases(suite_cases(spec, kb))
    if spec.cases_from:
        return CaseList(_imported_cases(spec, kb))
    if spec.cohort:
        return _cohort_cases(spec, kb)
    make_sampler(  # fails now on unknown settings or conditions, before anything is written
        kb, spec.weighting, settings=spec.settings or None, conditions=spec.conditions or None
    )
    recipe = sampler_recipe(
        kb,
        spec.seed,
        weighting=spec.weighting,
        settings=spec.settings,
        conditions=spec.conditions,
        kb_dir=str(Path(spec.kb_dir).resolve()) if spec.kb_dir else None,
    )
    return GeneratedCases(kb, recipe, spec.cases)


def _imported_cases(spec: RunSpec, kb: KnowledgeBase) -> list[Case]:
    """The first `spec.cases` cases of an external file (AgentClinic JSONL, DDXPlus)."""
    from clinicgym.patients.importers.external import read_cases

    if spec.cohort or spec.settings or spec.conditions:
        raise RunError(
            "--cases-from plays the cases in that file; it cannot be combined with --cohort, "
            "--setting or --condition"
        )
    return read_cases(spec.cases_from, kb, fmt=spec.cases_format, limit=spec.cases)  # type: ignore[arg-type]


def _cohort_cases(spec: RunSpec, kb: KnowledgeBase) -> CohortCases:
    """The first `spec.cases` rows of a synthetic cohort, each realised when its episode starts."""
    if spec.settings or spec.conditions:
        raise RunError(
            "--setting/--condition pick KB conditions for sampled cases; with --cohort, pick "
            "them when generating the cohort (clinicgym cohort generate --condition/--where)"
        )
    return CohortCases(spec.cohort, kb, spec.cases)  # type: ignore[arg-type]


ErrorClass = Literal["agent", "backend", "environment"]

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    BackendError,  # a model backend that did not answer after its retries
    AgentSpecError,  # a backend or prompt that cannot work (a missing extra, a bad template)
    OSError,  # connections refused or reset, time-outs, a full disk
    MemoryError,
)
"""Exceptions that are the infrastructure's, wherever they are raised."""
TRANSPORT_MODULES = frozenset(
    {"aiohttp", "httpx", "httpcore", "requests", "urllib3", "openai", "anthropic", "grpc"}
)
"""Packages whose exceptions are transport or HTTP failures (a custom agent's own client)."""


def classify_error(exc: BaseException, source: Literal["agent", "env"]) -> ErrorClass:
    """Which of the three classes an exception raised by the agent or by the env is: 'backend'
    if it, or an exception it was raised from, is an infrastructure failure; otherwise 'agent'
    when the agent raised it (the model's failure) and 'environment' when the env did (a bug)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, INFRASTRUCTURE_ERRORS):
            return "backend"
        if type(e).__module__.split(".")[0] in TRANSPORT_MODULES:
            return "backend"
        e = e.__cause__ or e.__context__
    return "agent" if source == "agent" else "environment"


def agent_failure(exc: BaseException, where: str) -> ActionError:
    """The error turn an agent's own exception becomes: shown to it like any unusable output,
    a turn used, recorded in the transcript and scored."""
    what = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
    return ActionError(message=f"the agent raised in {where}: {what}", raw="")


async def play_episode(
    env: ConsultationEnv,
    agent: Any,
    case: Case,
    planned: PlannedEpisode,
    case_hash: str | None = None,
) -> Episode:
    """Play one consultation to its end under the one rule for errors (module docstring): the
    agent's exceptions are error turns, infrastructure failures an errored episode, and an
    exception inside the env an errored episode marked as a bug (`raise_if_bug`). `case_hash`:
    the case's content hash when the caller knows it (computed once per case, not per episode).
    """
    options: dict[str, Any] = {
        "case": case,
        "agent_id": planned.agent,
        "episode_id": planned.episode_id,
        "repeat": planned.repeat,
    }
    if case_hash is not None:
        options["case_hash"] = case_hash
    try:
        obs, info = env.reset(seed=planned.seed, options=options)
    except Exception as e:
        return _env_failed(env, planned, case, e, "env.reset")
    broken: ActionError | None = None  # an agent whose reset raised: every turn is its failure
    try:
        if isinstance(agent, CaseReader):
            agent.read_case(case)
        agent.reset(obs, info)
    except Exception as e:
        if classify_error(e, "agent") == "backend":
            return _errored(env, planned, case, TerminationReason.BACKEND_ERROR, e)
        broken = agent_failure(e, "reset")
    while True:
        action: Any = broken
        if broken is None:
            try:
                action = await agent.act(obs, info)
            except Exception as e:
                if classify_error(e, "agent") == "backend":
                    return _errored(env, planned, case, TerminationReason.BACKEND_ERROR, e)
                action = agent_failure(e, "act")
        try:
            obs, _reward, terminated, truncated, info = await env.astep(action)
        except Exception as e:
            return _env_failed(env, planned, case, e, "env.step")
        if terminated or truncated:
            episode: Episode = info["episode"]
            try:
                episode.metrics = episode_metrics(episode, case)
            except Exception as e:
                return _env_failed(env, planned, case, e, "scoring.episode_metrics")
            return episode


def _env_failed(
    env: ConsultationEnv, planned: PlannedEpisode, case: Case, exc: BaseException, where: str
) -> Episode:
    """An exception from the env side: infrastructure (a patient's or judge's backend, the
    disk) or a bug, whose episode carries the traceback for `raise_if_bug`."""
    if classify_error(exc, "env") == "backend":
        return _errored(env, planned, case, TerminationReason.BACKEND_ERROR, exc)
    episode = _errored(env, planned, case, TerminationReason.ENV_ERROR, exc)
    trace = "".join(traceback.format_exception(exc)).strip()
    return episode.model_copy(update={"errors": [f"bug in {where}: {episode.errors[0]}", trace]})


def is_bug(episode: Episode) -> bool:
    """Whether an episode just played ended on an exception inside clinicgym (a bug)."""
    return episode.status == "error" and episode.termination == TerminationReason.ENV_ERROR


def raise_if_bug(episode: Episode) -> None:
    """Raise `EpisodeBug` for an episode that ended on a bug: it is never stored."""
    if is_bug(episode):
        first, *rest = episode.errors or ["bug: no message recorded"]
        raise EpisodeBug(episode.episode_id, first, rest[0] if rest else first)


def _errored(
    env: ConsultationEnv,
    planned: PlannedEpisode,
    case: Case,
    reason: TerminationReason,
    exc: BaseException,
) -> Episode:
    """The episode so far, marked errored with the exception's one-line message."""
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


async def play_planned(
    ctx: RunContext, planned: PlannedEpisode, live: Any = None, case: Case | None = None
) -> Episode:
    """One attempt at a planned episode: a fresh env, agent and monitor, judge checks settled.
    `live` (a `review.live.LiveRecorder`) wraps the monitor and streams the events to
    `RUN_DIR/live/` for `clinicgym review serve`; the caller closes it after storing the episode.
    `case`: the planned case, when the caller holds it realised already.
    """
    if case is None:
        case = ctx.cases[planned.case_index]
    monitor = ctx.policy.monitor()
    monitors: list[Any] = [monitor] if monitor else []
    if live is not None:
        live.monitors = monitors
        monitors = [live]
    env = ConsultationEnv(
        [case],
        kb=ctx.kb,
        max_turns=ctx.spec.max_turns,
        end_on_diagnose=ctx.spec.end_on_diagnose,
        reward_fn=episode_reward,
        monitors=monitors,
        patient_factory=ctx.patient,
        scenarios=ctx.policy.scenarios(),
        modality=ctx.spec.modality,
    )
    agent = ctx.factories[planned.agent]()
    case_hash = ctx.cases.case_hash(planned.case_index)
    episode = await play_episode(env, agent, case, planned, case_hash)
    if monitor is not None and monitor.ctx is not None and episode.status == "completed":
        try:
            episode = apply_settled(episode, await monitor.settle())  # judge checks
        except Exception as e:
            return _env_failed(env, planned, case, e, "policies.settle")
    return episode


async def execute(
    ctx: RunContext,
    store: RunStore,
    on_episode: Callable[[Episode], None] | None = None,
) -> int:
    """Run every planned episode not yet in the store with the spec's executor (local asyncio
    or Ray, runs/executors.py), retrying errored ones; returns how many were run now."""
    from clinicgym.runs.executors import make_executor

    return await make_executor(ctx.spec).run(ctx, store, on_episode)


def finalise(ctx: RunContext, store: RunStore) -> dict[str, Any]:
    """Write scores.parquet and summary.json (and compliance reports when packs were
    monitored) from what the store holds; return the summary. One pass over the stored
    episodes grouped by case (`RunStore.episodes_by_case`): each case is realised once, and
    its episodes are scored and their live verdicts gathered against it. The hashes of
    generated cases, known now, are written into cases.jsonl and the manifest before sealing."""
    from clinicgym.policies.rescore import EpisodeVerdict, live_verdicts
    from clinicgym.runs.summary import ScoreTable, summarise

    scorer = EpisodeScorer(ctx.kb, ctx.spec.scenarios, monitored=bool(ctx.policy.packs))
    rows = ScoreTable(scorer, ctx.scored.table)  # with the rows scored at play, typed already
    order: list[int] = []  # the table's rows, in the order of the episodes walked here
    verdicts: list[EpisodeVerdict] = []
    for index, episodes in store.episodes_by_case(ctx.cases.ids):
        known = [ctx.scored.pop(ep.episode_id) for ep in episodes]
        if index is not None and episodes and None not in known:
            # scored where they were played (`score_played`): the case is not realised again
            for k in known:
                assert k is not None
                order.append(k[0])
                if ctx.policy.packs:
                    verdicts.append(k[1])
            continue
        case = ctx.cases[index] if index is not None else None
        order += [rows.add(ep, case) for ep in episodes]
        if ctx.policy.packs:  # the violations recorded live, judged against the same case
            held = {case.id: case} if case is not None else {}
            verdicts += live_verdicts(episodes, held, ctx.spec.scenarios, ctx.kb)
    table = rows.frame(order)
    del rows  # every stored episode's row is in the table now: free the columns for summarise
    ctx.scored.clear()
    table.to_parquet(store.scores_path, index=False)
    _release_arrow_memory()
    summary = summarise(table, ctx.spec.agents, store.root.name, ctx.spec.prices)
    summary["planned_episodes"] = len(ctx.plan)
    summary["stored_episodes"] = len(table)
    if ctx.policy.packs:  # compliance.json/.md/.html from the violations recorded live
        summary["compliance"] = _write_compliance(ctx, store, verdicts)
    store.write_summary(summary)
    store.record_case_hashes(ctx.cases)
    store.seal()  # the data files' sha256 into the manifest: a later edit shows
    return summary


def _release_arrow_memory() -> None:
    """Return to the OS what pyarrow's allocator kept from writing scores.parquet (~12 MB at
    10,000 rows, held under summarise's peak otherwise: bench/run_scale.py --whole)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _write_compliance(ctx: RunContext, store: RunStore, verdicts: list[Any]) -> dict[str, Any]:
    """The run's compliance report from its live verdicts (`scoring.compliance`); its summary."""
    from clinicgym.runs.layout import COMPLIANCE
    from clinicgym.scoring.compliance import build_report, summary_of, write_report

    report = build_report(
        verdicts,
        ctx.policy.packs,
        run_id=store.root.name,
        mode="live",
        agents=ctx.spec.agents,
        kb_version=ctx.kb.version,
    )
    paths = write_report(report, verdicts, store.root, COMPLIANCE)
    return {"files": sorted(p.name for p in paths.values()), "agents": summary_of(report)}
