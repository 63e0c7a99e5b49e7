"""The clinician-side bias probe: one model on the same cases and seeds, without a bias and with
each bias sentence in its instructions (agents/prompts/clinician_biases.yaml).

Every arm plays every case with the episode seed a run would give it (`episode_seed(seed, i,
0)`), so arms differ only by the sentence. Per arm: top-1 accuracy with a Wilson interval, its
difference from the unbiased arm with Newcombe's hybrid score interval (which treats the arms
as independent samples, so with paired cases it is conservative), the paired changes (cases
right without the bias and wrong with it, and the reverse; cases whose first diagnosis changed at
all), and for a cognitive bias the share
of episodes whose first diagnosis is the planted look-alike (beside the same share without the
bias). Infrastructure errors (a backend that failed) are counted apart and left out of n.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from clinicgym.agents.backends.spec import ClinicianFactory
from clinicgym.agents.biases import NO_BIAS, BiasLibrary, load_biases
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.episode import TerminationReason
from clinicgym.patients.cases.case import Case, Diagnosis
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb, load_kb
from clinicgym.runs.console import ci_cell
from clinicgym.runs.runner import episode_seed
from clinicgym.scoring.diagnosis import matches, normalise, rank_of
from clinicgym.scoring.probes._play import play
from clinicgym.scoring.stats import newcombe_diff_ci, wilson_ci

BIAS_PROBE_FORMAT_VERSION = 1


class BiasEpisode(BaseModel):
    """One consultation of the probe."""

    case_id: str
    bias: str
    seed: int
    top1: str | None = None
    correct: bool | None = None
    lure: str | None = None
    """The look-alike planted (cognitive biases), or the one that would be (unbiased arm)."""
    lured: bool | None = None
    turns: int = 0
    error: str | None = None


class BiasArm(BaseModel):
    """One bias's figures (or the unbiased arm's, `bias == "none"`)."""

    bias: str
    kind: str
    n: int
    correct: int
    errors: int
    accuracy: dict[str, Any] | None = None
    """{"mean", "ci95"}: top-1 accuracy, Wilson 95% interval."""
    diff: dict[str, Any] | None = None
    """{"mean", "ci95"}: accuracy minus the unbiased arm's, Newcombe 95% interval."""
    lost: int = 0
    """Cases right without the bias and wrong with it (both arms finished)."""
    gained: int = 0
    """Cases wrong without the bias and right with it."""
    changed: int = 0
    """Cases whose first diagnosis (spelling normalised) differs from the unbiased arm's: the
    sentence moved the model, right or wrong (informative where accuracy is at its floor)."""
    lured: dict[str, Any] | None = None
    """Cognitive: {"mean", "ci95", "k"}: first diagnosis is the planted look-alike."""


class BiasProbe(BaseModel):
    """The probe's record: settings, per-arm figures and every episode."""

    format_version: int = BIAS_PROBE_FORMAT_VERSION
    created: str = ""
    agent: str
    bias_file: str
    seed: int
    max_turns: int
    cases: list[str]
    arms: list[BiasArm]
    episodes: list[BiasEpisode]
    settings: dict[str, Any] = {}

    def write(self, path: Path) -> None:
        """Write the record as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n", "utf-8")

    def arm(self, bias: str) -> BiasArm:
        """The arm of `bias`."""
        return next(a for a in self.arms if a.bias == bias)


def _proportion(k: int, n: int) -> dict[str, Any] | None:
    return {"mean": k / n, "ci95": list(wilson_ci(k, n)), "k": k, "n": n} if n else None


def _lure_diagnosis(lure: str, case: Case) -> Diagnosis:
    for d in case.differential:
        if d.name == lure:
            return d
    return Diagnosis(code="-", name=lure)


def summarise_arms(
    episodes: Sequence[BiasEpisode], biases: Sequence[str], library: BiasLibrary
) -> list[BiasArm]:
    """Per-arm figures from the probe's episodes; the first arm is the unbiased one."""
    by: dict[str, dict[str, BiasEpisode]] = {b: {} for b in biases}
    for e in episodes:
        by[e.bias][e.case_id] = e
    ref = {c: e for c, e in by[NO_BIAS].items() if e.error is None}
    ref_k = sum(bool(e.correct) for e in ref.values())
    out = []
    for b in biases:
        done = [e for e in by[b].values() if e.error is None]
        k = sum(bool(e.correct) for e in done)
        n = len(done)
        kind = NO_BIAS if b == NO_BIAS else library.get(b).kind
        arm = BiasArm(
            bias=b,
            kind=kind,
            n=n,
            correct=k,
            errors=len(by[b]) - n,
            accuracy=_proportion(k, n),
        )
        if b != NO_BIAS and n and ref:
            arm.diff = {
                "mean": k / n - ref_k / len(ref),
                "ci95": list(newcombe_diff_ci(ref_k, len(ref), k, n)),
            }
            pairs = [(ref[e.case_id], e) for e in done if e.case_id in ref]
            arm.lost = sum(bool(r.correct) and not e.correct for r, e in pairs)
            arm.gained = sum(not r.correct and bool(e.correct) for r, e in pairs)
            arm.changed = sum(normalise(r.top1 or "") != normalise(e.top1 or "") for r, e in pairs)
        if kind in (NO_BIAS, "cognitive"):
            arm.lured = _proportion(sum(bool(e.lured) for e in done), n)
        out.append(arm)
    return out


async def probe_biases(
    factory: ClinicianFactory,
    cases: Sequence[Case],
    kb: KnowledgeBase,
    *,
    biases: Sequence[str] | None = None,
    bias_file: str | Path | None = None,
    seed: int = 0,
    max_turns: int = 20,
    concurrency: int = 16,
    on_episode: Callable[[BiasEpisode], None] | None = None,
) -> BiasProbe:
    """Play every case without a bias and with each of `biases` (default: all in the file),
    `concurrency` consultations in flight over the factory's one backend."""
    library = load_biases(bias_file)
    wanted = [library.get(b).id for b in (biases or library.ids()) if b != NO_BIAS]
    arms = [NO_BIAS, *dict.fromkeys(wanted)]
    factories = {b: factory.with_bias(b, str(bias_file) if bias_file else None) for b in arms}
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int, case: Case, bias: str) -> BiasEpisode:
        s = episode_seed(seed, i, 0)
        async with gate:
            played = await play(factories[bias], case, kb, seed=s, max_turns=max_turns)
        ep = played.episode
        lure = getattr(played.agent, "lure", None)
        if bias == NO_BIAS:
            lure = library.lookalike(case)
        rec = BiasEpisode(case_id=case.id, bias=bias, seed=s, lure=lure, error=played.error)
        if ep is not None and ep.termination == TerminationReason.BACKEND_ERROR:
            rec.error = f"backend error: {(ep.errors or ['?'])[-1]}"
        elif ep is not None:
            guesses = [d.name for d in ep.outcome.diagnoses]
            rec.top1 = guesses[0] if guesses else None
            rec.correct = rank_of(guesses, case.diagnosis) == 1
            rec.turns = ep.turns
            if lure is not None:
                rec.lured = rec.top1 is not None and matches(rec.top1, _lure_diagnosis(lure, case))
        if on_episode is not None:
            on_episode(rec)
        return rec

    jobs = [one(i, c, b) for i, c in enumerate(cases) for b in arms]
    episodes = list(await asyncio.gather(*jobs))
    return BiasProbe(
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        agent=factory.spec,
        bias_file=library.path,
        seed=seed,
        max_turns=max_turns,
        cases=[c.id for c in cases],
        arms=summarise_arms(episodes, arms, library),
        episodes=episodes,
    )


def load_probe_cases(
    kb: KnowledgeBase, cases: int | None, seed: int, cases_from: Path | None, strict: bool = False
) -> list[Case]:
    """Sampled cases as `clinicgym run --cases N --seed S` samples them, or a file's."""
    if cases_from is not None:
        from clinicgym.patients.importers.external import read_cases

        return read_cases(cases_from, kb, limit=cases, strict=strict)
    from clinicgym.patients.cases.presentation import make_sampler

    return make_sampler(kb).sample_many(cases or 10, seed)


def _clinician_factory(agent: str, kb: KnowledgeBase) -> ClinicianFactory:
    """The agent's factory; a baseline is refused, having no instructions to put a bias in."""
    factory = make_agent_factory(agent, kb)
    if not isinstance(factory, ClinicianFactory):
        raise AgentSpecError(
            f"agent '{agent}' is a baseline; a bias probe puts a sentence in a language model's "
            "instructions, so it needs a model backend, e.g. 'hf:smollm2' or 'openai:MODEL@URL'"
        )
    return factory


async def _play_with_progress(
    factory: ClinicianFactory,
    played: list[Case],
    kb: KnowledgeBase,
    *,
    total: int,
    biases: list[str] | None,
    bias_file: Path | None,
    seed: int,
    max_turns: int,
    concurrency: int,
    quiet: bool,
    progress_console: Any,
) -> BiasProbe:
    """Play the probe behind a progress bar of `total` consultations, then close the backend."""
    try:
        with Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=progress_console,
            disable=quiet,
        ) as bar:
            task = bar.add_task("consultations", total=total)
            return await probe_biases(
                factory,
                played,
                kb,
                biases=biases,
                bias_file=bias_file,
                seed=seed,
                max_turns=max_turns,
                concurrency=concurrency,
                on_episode=lambda _e: bar.advance(task),
            )
    finally:
        await factory.aclose()


def run_bias_probe(
    agent: str,
    *,
    biases: list[str] | None = None,
    cases: int | None = None,
    seed: int = 0,
    cases_from: Path | None = None,
    kb_dir: Path | None = None,
    bias_file: Path | None = None,
    max_turns: int = 20,
    concurrency: int = 16,
    quiet: bool = True,
    progress_console: Any = None,
) -> BiasProbe:
    """Build the agent once, play the probe, close the backend; errors are ClinicGymErrors."""

    kb = load_kb(kb_dir) if kb_dir else default_kb()
    library = load_biases(bias_file)  # a broken file or an unknown id fails before a model loads
    wanted = [library.get(b).id for b in biases if b != NO_BIAS] if biases else library.ids()
    arms = 1 + len(dict.fromkeys(wanted))
    played = load_probe_cases(kb, cases, seed, cases_from)
    if not played:
        raise AgentSpecError("no cases to probe")
    factory = _clinician_factory(agent, kb)
    result = asyncio.run(
        _play_with_progress(
            factory,
            played,
            kb,
            total=len(played) * arms,
            biases=biases,
            bias_file=bias_file,
            seed=seed,
            max_turns=max_turns,
            concurrency=concurrency,
            quiet=quiet,
            progress_console=progress_console,
        )
    )
    result.settings = {
        "cases_from": str(cases_from) if cases_from else None,
        "kb_dir": str(kb_dir) if kb_dir else None,
        "concurrency": concurrency,
    }
    return result


def bias_table(result: BiasProbe) -> Table:
    """One row per arm: n, top-1 with its interval, the difference from no bias, the paired
    changes, and (cognitive) how often the planted look-alike came first."""
    table = Table(
        title=f"clinician bias probe: {result.agent}, {len(result.cases)} cases",
        caption=(
            "top-1: Wilson 95%; difference from 'none': Newcombe 95% (arms taken as independent: "
            "conservative for paired cases); lost/gained: cases right without the bias and wrong "
            "with it / the reverse; changed: first diagnosis differs from no bias's; look-alike: "
            "the planted wrong answer ranked first"
        ),
    )
    cols = ("bias", "kind", "n", "errors", "top-1", "difference", "lost/gained", "changed")
    for col in (*cols, "look-alike"):
        table.add_column(col, justify="left" if col in ("bias", "kind") else "right")
    for a in result.arms:
        table.add_row(
            a.bias,
            a.kind,
            str(a.n),
            str(a.errors),
            ci_cell(a.accuracy, pct=True),
            ci_cell(a.diff, pct=True, sep=", ") if a.diff else "-",
            f"{a.lost}/{a.gained}" if a.bias != "none" else "-",
            f"{a.changed}/{a.n}" if a.bias != "none" else "-",
            ci_cell(a.lured, pct=True) if a.lured else "-",
        )
    return table
