"""`clinicgym.evaluate(...)`: the Python entry point to a run, for notebooks and scripts.

It is `clinicgym run` without the command line: the arguments are the run options under their
Python names (`agents` for `--agent`, `packs` for `--pack`, ...), resolved into the same
`RunSpec` by `runs.config.resolve_spec`, then played by the same `prepare`, executor, store and
`finalise` (runs/runner.py). The run directory is the CLI's, so `clinicgym report`, `summary`,
`submit` and `leaderboard verify` read it, and the same spec gives the same scores either way.

    import clinicgym

    result = clinicgym.evaluate(agents=["scripted", "my_agents:Cautious"], cases=5, out="runs/x")
    result["scripted"].accuracy          # top-1 accuracy, with result["scripted"].interval

Agents are spec strings (as `--agent` takes them, custom `module:Class` included) or objects
with the Agent protocol (envs/protocols.py); an object is copied for each episode (deepcopy),
so its state never leaks between episodes, and it is recorded in the run under its `agent_id`.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinicgym.runs.errors import ConfigError

if TYPE_CHECKING:
    from clinicgym.envs.episode import Episode
    from clinicgym.envs.protocols import Agent

CasesArg = int | str | os.PathLike[str] | None

_RENAMED = {"packs": "pack", "scenarios": "scenario", "names": "name"}
"""evaluate() argument -> the `clinicgym run` option it is (a list where the CLI repeats)."""


@dataclass(frozen=True)
class AgentResult:
    """One agent's numbers from the run's summary.json: top-1 accuracy with its 95% interval,
    the episodes it played, and the policy violations the monitors recorded."""

    agent: str
    """The agent's id in the run: its spec string, or an object's `agent_id`."""
    name: str
    """Its display name (`names=`, else the spec without a base URL)."""
    episodes: int
    """Episodes stored, errored ones included."""
    errors: int
    """Episodes that ended in an infrastructure error (left out of the metrics)."""
    accuracy: float | None
    """Top-1 diagnostic accuracy over the completed episodes (None if none completed)."""
    interval: tuple[float, float] | None
    """95% Wilson interval of `accuracy` (None where undefined)."""
    top3: float | None
    violations: int | None
    """Policy violations recorded live; None when no policy pack was monitored."""
    violations_by_severity: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    """Every metric of summary.json: name -> {mean, ci95, n, method}."""

    def __repr__(self) -> str:
        acc = "-" if self.accuracy is None else f"{self.accuracy:.0%}"
        ci = (
            f" [{self.interval[0] * 100:.0f}-{self.interval[1] * 100:.0f}]" if self.interval else ""
        )
        viol = "" if self.violations is None else f", violations={self.violations}"
        err = f", errors={self.errors}" if self.errors else ""
        return (
            f"AgentResult({self.name!r}, accuracy={acc}{ci}, episodes={self.episodes}{err}{viol})"
        )


@dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate` returns: per-agent results, the run directory and its summary."""

    run_dir: Path
    """The run directory (manifest.json, cases.jsonl, episodes.jsonl, scores.parquet, ...)."""
    agents: dict[str, AgentResult]
    """By agent id, in the order the agents were given."""
    planned_episodes: int
    stored_episodes: int
    episodes_run: int
    """Episodes played by this call (fewer than planned when it resumed a run)."""
    summary: dict[str, Any] = field(repr=False)
    """summary.json as written."""

    def __getitem__(self, agent: str) -> AgentResult:
        """An agent's result by id or display name."""
        if agent in self.agents:
            return self.agents[agent]
        for r in self.agents.values():
            if r.name == agent:
                return r
        raise KeyError(f"{agent!r}: the run's agents are {list(self.agents)}")

    @property
    def episodes(self) -> int:
        """Episodes stored in the run directory."""
        return self.stored_episodes

    @property
    def violations(self) -> int | None:
        """Policy violations over all agents; None when no pack was monitored."""
        counts = [r.violations for r in self.agents.values() if r.violations is not None]
        return sum(counts) if counts else None

    def scores(self) -> Any:
        """The per-episode scores (scores.parquet) as a pandas DataFrame: one row per episode,
        one column per metric, for analyses the summary does not make."""
        import pandas as pd

        from clinicgym.runs.layout import RunPaths

        return pd.read_parquet(RunPaths(self.run_dir).scores)

    def __repr__(self) -> str:
        rows = ", ".join(repr(r) for r in self.agents.values())
        return f"EvaluationResult(run_dir='{self.run_dir}', episodes={self.episodes}, [{rows}])"


def evaluate(
    agents: Sequence[str | Agent] | str | Agent,
    *,
    suite: str | None = None,
    cases: CasesArg = None,
    out: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    repeats: int | None = None,
    max_turns: int | None = None,
    concurrency: int | None = None,
    packs: Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    names: Sequence[str] | Mapping[str, str] | None = None,
    kb: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    progress: bool = False,
    on_episode: Callable[[Episode], None] | None = None,
    **options: Any,
) -> EvaluationResult:
    """Play `agents` on a suite or on cases and score them, as `clinicgym run` does; returns the
    per-agent results. Every argument is checked before any case is made or model loaded.

    `cases`: a number of cases to generate, or a case file (AgentClinic JSONL, DDXPlus) to play;
    `suite`: a named suite ('core', 'emergency@4') or a suite directory; neither: 30 generated
    cases, as the CLI. `out`: the run directory (the same one again resumes the run; default
    runs/run-<time>). `options`: any other `clinicgym run` option by its Python name
    (`weighting`, `setting`, `patient`, `judge`, `modality`, `temperature`, `retries`, ...).
    `progress`: the CLI's progress bars on stderr; `on_episode`: called with each stored episode.
    """
    spec, objects, imported = _resolve(
        agents, suite, cases, out, seed, repeats, max_turns, concurrency, packs, scenarios,
        names, kb, config, options,
    )  # fmt: skip
    work = lambda: _play(spec, objects, imported, progress, on_episode)  # noqa: E731
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    return _in_thread(work)  # a notebook's loop is running: play on a loop of our own


def _case_flags(suite: str | None, cases: CasesArg) -> dict[str, Any]:
    """The CLI flags for where the cases come from (a suite, a count or a case file), checked."""
    flags: dict[str, Any] = {}
    if suite is not None and cases is not None:
        raise ConfigError(
            f"evaluate(): give suite= or cases=, not both (suite {suite!r} fixes its own cases)"
        )
    if suite is not None:
        flags["suite"] = str(suite)
    if isinstance(cases, bool) or not isinstance(cases, int | str | os.PathLike | type(None)):
        raise ConfigError(
            f"evaluate(): cases= takes a number of cases or a case file path, got {cases!r}"
        )
    if isinstance(cases, int):
        flags["cases"] = cases
    elif cases is not None:
        path = Path(cases)
        if not path.exists():
            raise ConfigError(
                f"evaluate(): cases={str(cases)!r} is not a number and no such file exists "
                "(a case file: AgentClinic JSONL or a DDXPlus release)"
            )
        flags["cases_from"] = str(path)
    return flags


def _option_flags(arguments: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """evaluate()'s other arguments, those given, as the CLI flags they stand for, cast alike."""
    from clinicgym.runs.config import CLI_FIELDS
    from clinicgym.runs.spec import RunSpec

    flags: dict[str, Any] = {}
    for arg, value in arguments:
        if value is None:
            continue
        option = _RENAMED.get(arg, arg)
        if isinstance(value, str) and option in ("pack", "scenario", "setting", "condition"):
            value = [value]
        if option in CLI_FIELDS and option not in ("agent", "name"):
            field_name, cast = CLI_FIELDS[option]
            try:
                flags[field_name] = cast(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"evaluate(): {arg}={value!r}: {e}") from None
        elif arg in RunSpec.model_fields and arg not in ("agents", "names"):
            flags[arg] = value
        else:
            raise ConfigError(_unknown_argument(arg))
    return flags


def _resolve(
    agents: Any,
    suite: str | None,
    cases: CasesArg,
    out: Any,
    seed: int | None,
    repeats: int | None,
    max_turns: int | None,
    concurrency: int | None,
    packs: Sequence[str] | None,
    scenarios: Sequence[str] | None,
    names: Sequence[str] | Mapping[str, str] | None,
    kb: Any,
    config: Any,
    options: dict[str, Any],
) -> tuple[Any, dict[str, Any], list[Any] | None]:
    """The run's spec, the agent objects by id, and a case file's imported cases; raises a
    ClinicGymError naming the argument for anything wrong, before any expensive work."""
    from clinicgym.runs.config import resolve_spec
    from clinicgym.runs.imported import imported_run_cases

    ids, objects = _agents(agents)
    flags: dict[str, Any] = {"agents": ids, **_case_flags(suite, cases)}
    named = {
        "out": out,
        "seed": seed,
        "repeats": repeats,
        "max_turns": max_turns,
        "concurrency": concurrency,
        "packs": packs,
        "scenarios": scenarios,
        "kb": kb,
    }
    flags.update(_option_flags([*named.items(), *options.items()]))
    if names is not None:
        flags["names"] = dict(names) if isinstance(names, Mapping) else list(names)
    spec = resolve_spec(config, flags)
    if objects and spec.executor != "local":
        raise ConfigError(
            f"evaluate(): agent objects ({', '.join(objects)}) play in this process; "
            "executor='ray' needs agents as spec strings ('module:Class') that workers import"
        )
    spec, imported = imported_run_cases(spec, given="cases" in flags, say=_warn_import)
    return spec, objects, imported


def _warn_import(report: Any) -> None:
    """A case file's skipped lines and notes, as a warning (the CLI prints them)."""
    from clinicgym.runs.imported import report_lines

    lines = report_lines(report)
    if lines:
        warnings.warn("\n".join(lines), stacklevel=4)


def _unknown_argument(arg: str) -> str:
    """An error for an argument that is no run option, with the likely one."""
    from clinicgym.runs.config import CLI_FIELDS
    from clinicgym.runs.spec import RunSpec

    if arg in ("agent", "name"):
        return f"evaluate(): {arg}= is {arg}s= here (a list, one per agent)"
    known = sorted({*CLI_FIELDS, *_RENAMED, *RunSpec.model_fields} - {"agent", "name"})
    close = difflib.get_close_matches(arg, known, n=1)
    return (
        f"evaluate(): unknown argument {arg!r}"
        + (f"; did you mean {close[0]!r}?" if close else "")
        + " It takes the options of `clinicgym run` under their Python names (`clinicgym run "
        "--help`; docs/integrations.md) and the RunSpec fields (runs/spec.py)"
    )


def _agents(agents: Any) -> tuple[list[str], dict[str, Any]]:
    """Agent ids in order, and the objects among them by id (checked: the Agent protocol, and
    a copy per episode); spec strings are checked as `clinicgym run` checks them."""
    from clinicgym.agents.registry import check_agent_object, check_agent_spec

    if isinstance(agents, str) or not isinstance(agents, Sequence):
        agents = [agents]
    if not agents:
        raise ConfigError("evaluate(): agents= is empty; give at least one agent")
    ids: list[str] = []
    objects: dict[str, Any] = {}
    for i, agent in enumerate(agents):
        if isinstance(agent, str):
            check_agent_spec(agent)
            ids.append(agent.strip())
            continue
        what = f"evaluate(): agents[{i}]"
        if isinstance(agent, type):
            raise ConfigError(
                f"{what} is the class {agent.__name__}; pass an instance ({agent.__name__}(...)) "
                f"or the spec '{agent.__module__}:{agent.__qualname__}'"
            )
        check_agent_object(agent, what)
        agent_id = getattr(agent, "agent_id", None)
        if not isinstance(agent_id, str) or not agent_id.strip():
            raise ConfigError(f"{what}: its agent_id must be a non-empty string, got {agent_id!r}")
        try:
            copy.deepcopy(agent)
        except Exception as e:
            raise ConfigError(
                f"{what} ({agent_id}): it is copied for each episode (copy.deepcopy), which "
                f"failed: {type(e).__name__}: {e}. Name its class as a spec instead "
                f"('{type(agent).__module__}:{type(agent).__qualname__}'), so each episode "
                "builds its own"
            ) from None
        ids.append(agent_id)
        objects[agent_id] = agent
    dupes = sorted({a for a in ids if ids.count(a) > 1})
    if dupes:
        raise ConfigError(
            f"evaluate(): two agents share the id {dupes}; give each object its own agent_id"
        )
    return ids, objects


def _copies(agent: Any) -> Callable[[], Any]:
    """A factory of fresh copies of `agent`, one per episode; a knowledge base among its
    attributes is shared, not copied (read-only, and copying it costs 0.1 s an episode)."""
    from clinicgym.patients.knowledge.kb import KnowledgeBase

    attrs = list(getattr(agent, "__dict__", {}).values())
    shared = [*attrs, *(getattr(v, "kb", None) for v in attrs)]  # e.g. a posterior model's
    keep = {id(v): v for v in shared if isinstance(v, KnowledgeBase)}
    return lambda: copy.deepcopy(agent, dict(keep))


def _play(
    spec: Any,
    objects: dict[str, Any],
    imported: list[Any] | None,
    progress: bool,
    on_episode: Callable[[Any], None] | None,
) -> EvaluationResult:
    """Prepare, play, store and finalise the run, as `clinicgym run` does (runs/cli/main.py)."""
    from clinicgym.patients.patient.encoder import minilm_path
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.runs.runner import execute, finalise, prepare
    from clinicgym.runs.store import RunStore

    minilm_path()  # the patient's weights: a light install without them fails before any work
    factories = {a: _copies(o) for a, o in objects.items()}
    ctx = prepare(spec, cases=imported, factories=factories)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    matcher_for(ctx.kb)
    try:
        if progress:
            from rich.console import Console

            from clinicgym.runs.progress import RunProgress

            err = Console(stderr=True)
            with RunProgress(
                ctx.plan, store.finished_ids(), err, log=err, names=spec.display_names()
            ) as bars:

                def both(episode: Any) -> None:
                    bars.on_episode(episode)
                    if on_episode is not None:
                        on_episode(episode)

                ran = asyncio.run(execute(ctx, store, both))
        else:
            ran = asyncio.run(execute(ctx, store, on_episode))
    finally:
        store.close()
    summary = finalise(ctx, store)
    return result_from_summary(summary, spec, Path(spec.out), ran)


def result_from_summary(
    summary: dict[str, Any], spec: Any, run_dir: Path, ran: int = 0
) -> EvaluationResult:
    """The typed result of a run from its summary.json and spec (also for a stored run)."""
    names = spec.display_names()
    compliance = (summary.get("compliance") or {}).get("agents", {})
    out: dict[str, AgentResult] = {}
    for agent in spec.agents:
        s = summary["agents"].get(agent, {})
        metrics = s.get("metrics", {})
        top1 = metrics.get("diagnostic_accuracy") or {}
        top3 = metrics.get("top3_accuracy") or {}
        ci = top1.get("ci95")
        c = compliance.get(agent)
        out[agent] = AgentResult(
            agent=agent,
            name=names.get(agent, agent),
            episodes=int(s.get("episodes", 0)),
            errors=int(s.get("errors", 0)),
            accuracy=top1.get("mean"),
            interval=(float(ci[0]), float(ci[1])) if ci else None,
            top3=top3.get("mean"),
            violations=int(c["violations"]) if c is not None else None,
            violations_by_severity=dict(c.get("by_severity", {})) if c is not None else {},
            metrics=metrics,
        )
    return EvaluationResult(
        run_dir=run_dir,
        agents=out,
        planned_episodes=int(summary.get("planned_episodes", 0)),
        stored_episodes=int(summary.get("stored_episodes", 0)),
        episodes_run=ran,
        summary=summary,
    )


def _in_thread(work: Callable[[], EvaluationResult]) -> EvaluationResult:
    """Run `work` (which starts its own event loop) in a thread and wait for it: evaluate()
    called where a loop is already running, as in a Jupyter cell."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, name="clinicgym-evaluate")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


__all__ = ["AgentResult", "EvaluationResult", "evaluate"]
