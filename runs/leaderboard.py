"""Leaderboard submissions: pack a finished run into a bundle, verify a bundle, build the site.

A bundle is a zip of the run's `manifest.json`, `cases.jsonl`, `episodes.jsonl` (the
transcripts) and `summary.json` (the claimed numbers), plus `bundle.json` with each file's
sha256 and what the submitter declares (who they are, which model each agent is). A hidden
suite's bundle carries no `cases.jsonl`: its cases stay with the maintainer.

`verify` trusts nothing in a bundle but the transcripts, and those only as the submitter's
claim. The suite version, its frozen cases hash and its recipe (case count, turn budget,
repeats, run seed, scenarios, pinned packs, modality) come from this install's registry
(`runs/suites.yaml`), never from the bundle's manifest; an unknown suite or version is
rejected. Every score is re-derived: each clinician action re-parsed from the stored events,
the outcome, turn count and ending rebuilt from them (`runs/rederive.py`), the registry's
policy packs replayed over the transcript, the episodes scored again and summarised; any
difference from a stored outcome, violation list or the claimed summary is a rejection reason.
Every reason is collected. What this cannot catch: a transcript edited consistently (the
model's reply, the action and the outcome alike) with every hash recomputed. Bundles are not
signed; the hidden suite, run by the maintainer, is the answer to that (docs/runs.md).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from clinicgym import __version__
from clinicgym.errors import ClinicGymError
from clinicgym.runs import layout
from clinicgym.runs.errors import LeaderboardError
from clinicgym.runs.records import (
    SUMMARY_FORMAT_VERSION,
    ManifestSpec,
    PackRecord,
    RunFileError,
    RunManifest,
    RunSummary,
    SuiteRecord,
    parse_manifest,
    parse_summary,
)
from clinicgym.runs.store import RunStore
from clinicgym.scoring.metric_registry import PERCENT, shown_in
from clinicgym.scoring.stats import format_ci

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from clinicgym.envs.episode import Episode
    from clinicgym.patients.cases.case import Case
    from clinicgym.patients.knowledge.kb import KnowledgeBase
    from clinicgym.runs.suite import SuiteDef, SuiteVersion

    R = TypeVar("R", RunManifest, RunSummary)

    KBChoice = KnowledgeBase | Path | str | Sequence[KnowledgeBase | Path | str] | None
    """The KB verify re-scores with: one, several (picked by version), or None (bundled)."""

BUNDLE_FORMAT_VERSION = 1
BUNDLE_INDEX = "bundle.json"
BUNDLE_FILES = layout.BUNDLED
"""What a bundle carries besides its index: the manifest, cases, transcripts, summary."""
HIDDEN_WITHHELD = (layout.CASES,)
"""What a hidden suite's bundle leaves out: its cases, which only the maintainer regenerates."""
BOARD_METRICS = tuple(m.name for m in shown_in("board"))
"""Columns of the leaderboard page (each a mean with its 95% interval; the metric registry)."""
PERCENT_METRICS = frozenset(BOARD_METRICS) & PERCENT
"""Board metrics that are shares, shown as whole percents."""
RANK_METRIC = "diagnostic_accuracy"
"""What the board ranks by: top-1 accuracy, as displayed (whole percents)."""
REFERENCE_AGENTS = frozenset({"oracle", "scripted", "random", "opening", "unsafe", "human"})
"""Agent kinds shipped with clinicgym (baselines, the oracle, a person at the terminal): shown
on the board for reference, never ranked."""
MODEL_CARD_FIELDS = ("model", "parameters", "url", "notes")
"""What a submitter may declare per agent (`clinicgym submit --card`); shown as declared."""
SPEC_MUST = {"end_on_diagnose": True, "patient": "grounded"}
"""Run settings a suite does not list but every submission plays alike (the env's defaults)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def agent_kind(spec: str) -> str:
    """'openai:MODEL@URL' -> 'openai'; 'scripted#budget=4' -> 'scripted'."""
    return spec.strip().partition(":")[0].partition("#")[0]


def agent_label(spec: str) -> str:
    """An agent spec as the board shows it: without a server URL ('openai:m@http://h/v1' ->
    'openai:m'), which names the submitter's machines, not the model."""
    from clinicgym.agents.backends.registry import display_name

    return display_name(spec)


def is_reference(spec: str) -> bool:
    """Is this agent spec one of clinicgym's own reference agents (unranked)?"""
    return agent_kind(spec) in REFERENCE_AGENTS


# ---- submit --------------------------------------------------------------------------------


def read_card(path: Path | str) -> dict[str, Any]:
    """A submission card (YAML or JSON): `submitter` and, per agent spec, `model`,
    `parameters`, `url`, `notes`; every problem named at once."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise LeaderboardError(f"{path}: cannot read the card ({e})".replace("\n", " ")) from None
    problems = []
    if not isinstance(raw, dict):
        raise LeaderboardError(f"{path}: a card is a mapping with 'submitter' and 'models'")
    unknown = sorted(set(raw) - {"submitter", "models"})
    if unknown:
        problems.append(f"unknown fields {unknown}; a card has 'submitter' and 'models'")
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        problems.append("'models' maps agent specs to {model, parameters, url, notes}")
        models = {}
    for agent, card in models.items():
        if not isinstance(card, dict):
            problems.append(f"models.{agent}: a mapping of {', '.join(MODEL_CARD_FIELDS)}")
            continue
        extra = sorted(set(card) - set(MODEL_CARD_FIELDS))
        if extra:
            problems.append(
                f"models.{agent}: unknown fields {extra}; allowed: {', '.join(MODEL_CARD_FIELDS)}"
            )
    if problems:
        raise LeaderboardError(f"{path} has {len(problems)} problems: " + "; ".join(problems))
    return {
        "submitter": raw.get("submitter"),
        "models": {str(a): {k: str(v) for k, v in c.items()} for a, c in models.items()},
    }


def pack(
    run_dir: Path | str,
    out: Path | str | None = None,
    *,
    submitter: str | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write the submission bundle of a finished, sealed and unmodified run; returns its path.
    Default: `<run_id>.submission.zip` in the current directory. `submitter` and `card`
    (`read_card`) are declared metadata shown on the board; a hidden suite's cases are left
    out."""
    store = RunStore(Path(run_dir))
    if not store.manifest_path.exists():
        raise LeaderboardError(f"{run_dir}: not a run directory (no {layout.MANIFEST})")
    manifest = store.manifest()
    problems = [f"no {n}" for n in BUNDLE_FILES if not (store.root / n).exists()]
    if not manifest.content:
        problems.append(f"the run was never finalised (no content hashes in {layout.MANIFEST})")
    changed = store.changed_since_sealed() if not problems else []
    if changed:
        problems.append(f"{', '.join(changed)} changed since the run was finalised")
    if not problems:
        summary = store.summary()
        planned, stored = summary.planned_episodes, summary.stored_episodes
        if planned != stored:
            problems.append(f"only {stored} of {planned} planned episodes are stored")
    agents = manifest.spec.agents
    card = card or {}
    stray = sorted(set(card.get("models", {})) - set(agents))
    if stray:
        problems.append(
            f"the card describes agents the run did not play: {stray}; it played {agents}"
        )
    if problems:
        raise LeaderboardError(
            f"cannot submit {run_dir}: " + "; ".join(problems) + " (finish or resume the run "
            "with the same `clinicgym run ... --out` first, or fix the card)"
        )
    hidden = manifest.suite is not None and manifest.suite.hidden
    names = [n for n in BUNDLE_FILES if not (hidden and n in HIDDEN_WITHHELD)]
    run_id = manifest.run_id or store.root.name
    out = Path(out) if out else Path(f"{run_id}.submission.zip")
    files = {n: (store.root / n).read_bytes() for n in names}
    index = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "run_id": run_id,
        "packed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clinicgym": __version__,
        "suite": manifest.suite.document() if manifest.suite is not None else None,
        "agents": agents,
        "submission": {
            "submitter": submitter or card.get("submitter"),
            "models": card.get("models", {}),
        },
        "files": {n: {"sha256": _sha256(b), "bytes": len(b)} for n, b in files.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(BUNDLE_INDEX, json.dumps(index, indent=2) + "\n")
        for n, b in files.items():
            z.writestr(n, b)
    tmp.replace(out)
    return out


# ---- verify --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What `verify` found: accepted when `problems` is empty; `notes` are remarks that do not
    reject (a superseded version, an older summary format); `info` feeds the leaderboard."""

    bundle: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.problems


def _read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if BUNDLE_INDEX not in names:
                raise LeaderboardError(f"{path}: no {BUNDLE_INDEX}; not a clinicgym submission")
            index = json.loads(z.read(BUNDLE_INDEX))
            files = {n: z.read(n) for n in BUNDLE_FILES if n in names}
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise LeaderboardError(f"{path}: cannot read the bundle ({e})") from None
    if not isinstance(index, dict):
        raise LeaderboardError(f"{path}: {BUNDLE_INDEX} is not an object")
    return index, files


def _record(
    parse: Callable[[bytes, str], R], data: bytes, name: str, problems: list[str]
) -> R | None:
    """A bundle's manifest or summary read as its record; None, with the reason (the file and
    the field), when it is not one."""
    try:
        return parse(data, name)
    except RunFileError as e:
        problems.append(str(e))
        return None


def verify(
    bundle: Path | str,
    *,
    rescore: bool = True,
    kb: KBChoice = None,
    secret: str | None = None,
) -> Verdict:
    """Check a submission bundle (see the module docstring); every reason is collected.

    `kb`: the knowledge base to re-score with (default the bundled one); it must be the KB the
    run used. `secret`: a hidden suite's secret (default `$CLINICGYM_HIDDEN_SEED` or the file
    `$CLINICGYM_HIDDEN_SEED_FILE`); without it a hidden-suite bundle is checked as far as it
    can be and not accepted."""
    path = Path(bundle)
    verdict = Verdict(str(path))
    index, files = _read_bundle(path)
    p = verdict.problems
    manifest = None
    if layout.MANIFEST in files:
        manifest = _record(parse_manifest, files[layout.MANIFEST], layout.MANIFEST, p)
    suite = _registry_suite(manifest, p) if manifest is not None else None
    hidden = f"{suite[0]}@{suite[2].version}" if suite is not None and suite[1].hidden else ""
    # 1. hashes: the index's, and the manifest's sealed record
    recorded = index.get("files") if isinstance(index.get("files"), dict) else {}
    for n in BUNDLE_FILES:
        if n not in files:
            if not (hidden and n in HIDDEN_WITHHELD):
                p.append(f"{n} is missing from the bundle")
            continue
        if hidden and n in HIDDEN_WITHHELD:
            p.append(
                f"{n}: a bundle of hidden suite {hidden} must not carry its cases "
                "(`clinicgym submit` leaves them out; the maintainer regenerates them)"
            )
        want = (recorded.get(n) or {}).get("sha256") if isinstance(recorded.get(n), dict) else None
        if want != _sha256(files[n]):
            p.append(f"{n}: sha256 {_sha256(files[n])[:16]}... does not match bundle.json")
    if manifest is None:
        return verdict
    content = manifest.content or {}
    for n, rec in content.items():
        if n in files and rec.sha256 != _sha256(files[n]):
            p.append(f"{n} was edited after the run was finalised (manifest sha256 differs)")
    if not content:
        p.append(f"{layout.MANIFEST} has no content hashes: the run was never finalised")
    try:
        verdict.info.update(_bundle_info(index, manifest))
        if suite is None or layout.EPISODES not in files or layout.SUMMARY not in files:
            return verdict
        summary = _record(parse_summary, files[layout.SUMMARY], layout.SUMMARY, p)
        if summary is None:
            return verdict
        _check_run(suite, manifest, files, summary, verdict, rescore=rescore, kb=kb, secret=secret)
    except (KeyError, TypeError, ValueError, AttributeError, ValidationError) as e:
        # an old or malformed bundle: a reason, never a traceback
        what = str(e).replace("\n", " ")[:300]
        p.append(
            f"the bundle cannot be read by clinicgym {__version__} ({type(e).__name__}: {what}); "
            f"it was made by clinicgym {manifest.versions.clinicgym or '?'} "
            f"(manifest format {manifest.format_version})"
        )
    return verdict


def _registry_suite(
    manifest: RunManifest, problems: list[str]
) -> tuple[str, SuiteDef, SuiteVersion] | None:
    """The suite version a run names, as this install's registry has it; only its name and
    version number are read from the bundle."""
    from clinicgym.runs.errors import SuiteError
    from clinicgym.runs.suite import load_suites, parse_ref

    record = manifest.suite
    if record is None or not (record.name or record.ref):
        problems.append("the run did not play a named suite (run it with `clinicgym run --suite`)")
        return None
    if not record.name:
        problems.append(
            f"the run played a suite directory ({record.ref}), not a named suite version "
            "from the registry"
        )
        return None
    name, number = record.name, record.version
    if number is None:
        try:
            number = parse_ref(record.ref or "")[1]
        except SuiteError:
            number = None
    if not isinstance(number, int):
        problems.append(f"suite {name}: the manifest names no version number ({number!r})")
        return None
    suites = load_suites()
    if name not in suites:
        problems.append(
            f"unknown suite '{name}@{number}': this install's registry has "
            f"{', '.join(sorted(suites))}; a bundle is checked only against suites the installed "
            "registry knows"
        )
        return None
    suite = suites[name][0]
    try:
        return name, suite, suite.version(name, number)
    except SuiteError as e:
        problems.append(f"unknown version: {e} (this install's registry)")
        return None


def _bundle_info(index: dict[str, Any], manifest: RunManifest) -> dict[str, Any]:
    """What the board shows about a bundle besides its scores (declared, not verified)."""
    spec = manifest.spec
    sub = index.get("submission") if isinstance(index.get("submission"), dict) else {}
    models = sub.get("models") if isinstance(sub.get("models"), dict) else {}
    declared = {"temperature": spec.temperature, "max_tokens": spec.max_tokens}
    declared["model_seed"] = spec.model_seed
    sampling = {k: x for k, x in declared.items() if x is not None}
    return {
        "run_id": manifest.run_id,
        "created": manifest.created[:10],
        "submitted": str(index.get("packed", ""))[:10],
        "submitter": sub.get("submitter") or "",
        "cards": models,
        "names": spec.names,
        "sampling": sampling,
        "kb_version": manifest.versions.kb or "",
        "clinicgym": manifest.versions.clinicgym,
    }


def _check_run(
    suite: tuple[str, SuiteDef, SuiteVersion],
    manifest: RunManifest,
    files: dict[str, bytes],
    summary: RunSummary,
    verdict: Verdict,
    *,
    rescore: bool,
    kb: KBChoice,
    secret: str | None,
) -> None:
    from clinicgym.runs.rederive import rederive

    p = verdict.problems
    name, sdef, ver = suite
    ref = f"{name}@{ver.version}"
    spec = manifest.spec
    verdict.info.update(suite=ref, hidden=sdef.hidden, superseded=ver.superseded or "")
    if ver.superseded:
        verdict.notes.append(f"{ref} is superseded ({ver.superseded}); ranked with its own runs")
    # 2. the recipe and packs, from the registry
    p.extend(_recipe_problems(spec, manifest.suite or SuiteRecord(), ver, ref))
    packs = manifest.policy_packs
    have_refs = [f"{x.id}@{x.version}" for x in packs]
    if have_refs != spec.policy_packs:
        p.append(f"the manifest records packs {have_refs}, its spec names {spec.policy_packs}")
    p.extend(_pack_problems(packs))
    verdict.info["packs"] = list(ver.recipe.policy_packs)
    # 3. the cases: the frozen hash from the registry
    ids = [c.id for c in manifest.cases]
    hashes = [str(c.hash) for c in manifest.cases]
    listed_sha = _sha256("".join(hashes).encode()) if hashes else ""
    verdict.info["cases_sha256"] = ver.cases_sha256
    if listed_sha != ver.cases_sha256:
        p.append(
            f"the run's cases hash to {listed_sha[:16]}... ({len(ids)} cases), not to suite "
            f"{ref}'s frozen {ver.cases_sha256[:16]}... ({ver.recipe.cases} cases, this "
            "install's registry): not the suite's cases"
        )
    scoring_kb = _scoring_kb(kb, manifest, ver, ref, p, verdict.notes)
    if sdef.hidden:
        cases = _hidden_cases(name, sdef, ver, kb, secret, p)
    else:
        cases = _bundle_cases(files, p, scoring_kb)
    if cases is not None and [(c.id, c.content_hash()) for c in cases] != list(
        zip(ids, hashes, strict=False)
    ):
        p.append(
            f"the cases do not match the case ids and hashes in {layout.MANIFEST}"
            + (" (regenerated from the secret)" if sdef.hidden else "")
        )
    # 4. every planned episode once, with the suite's seeds
    episodes, lines = _episodes(files[layout.EPISODES], p)
    agents = list(spec.agents)
    planned = _plan(agents, ids, ver)
    _plan_problems(planned, episodes, lines, p)
    # 5. the transcripts: outcomes, turns and endings re-derived
    derived, found = [], []
    for ep in episodes.values():
        again = rederive(ep, ver.recipe.max_turns)
        found += again.problems
        derived.append(again.episode)
    p.extend(_capped(found))
    verdict.info["served"] = _served(episodes.values())
    if cases is None:
        if sdef.hidden and not _has_secret(secret):
            p.append(_maintainer_only(ref))
        return
    if not rescore or scoring_kb is None:
        if not rescore:
            verdict.notes.append("the monitors and the scores were not re-derived (--no-rescore)")
        verdict.info["summary"] = summary.document()
        return
    # 6. monitors re-run, episodes re-scored, the summary re-derived
    fresh = _rederive_summary(derived, cases, ver, agents, spec, summary, planned, scoring_kb, p)
    if fresh is not None:
        _compare_summary(summary, fresh, p, verdict.notes)
        verdict.info["summary"] = fresh


def _recipe_problems(
    manifest_spec: ManifestSpec, record: SuiteRecord, ver: SuiteVersion, ref: str
) -> list[str]:
    from clinicgym.runs.spec import RunSpec
    from clinicgym.runs.suite import SAMPLER_FIELDS

    def default(k: str) -> Any:
        f = RunSpec.model_fields.get(k)
        return f.get_default(call_default_factory=True) if f is not None else None

    spec = manifest_spec.document()  # every field as written, known here or not
    out = []
    fixed = {**ver.recipe.spec_fields(), **SPEC_MUST}
    for k, want in fixed.items():
        have = spec.get(k, default(k))
        if have != want:
            out.append(
                f"{k}: suite {ref} plays with {want!r} (this install's registry), the run used "
                f"{have!r}"
            )
    out += [f"{f}: set, but suite {ref} picks the cases" for f in SAMPLER_FIELDS if spec.get(f)]
    claimed = record.recipe
    if claimed is not None and claimed != ver.recipe.model_dump(mode="json"):
        keys = sorted(
            k
            for k in set(ver.recipe.model_dump(mode="json")) | set(claimed or {})
            if (claimed or {}).get(k) != ver.recipe.model_dump(mode="json").get(k)
        )
        out.append(
            f"the manifest's record of suite {ref} carries another recipe than the registry's "
            f"(differs in {', '.join(keys) or 'shape'})"
        )
    if record.frozen_sha256 not in (None, ver.cases_sha256):
        out.append(
            f"the manifest's record of suite {ref} claims frozen cases "
            f"{record.frozen_sha256[:16]}..., the registry's are {ver.cases_sha256[:16]}..."
        )
    return out


def _load_kb(kb: KBChoice, version: str | None) -> tuple[KnowledgeBase, str]:
    """The verifier's KB for a run of KB `version`: among those given (one, or several for
    bundles of different KBs), the one of that version, else the first; none given: the
    bundled one. Also how to name it in a reason."""
    from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb, load_kb

    if kb is None:
        return default_kb(), "this install's bundled KB"
    given = kb if isinstance(kb, list | tuple) else [kb]
    loaded = [x if isinstance(x, KnowledgeBase) else load_kb(x) for x in given]
    for x in loaded:
        if x.version == version:
            return x, "the KB given"
    return loaded[0], f"the KB given ({', '.join(x.version for x in loaded)})"


def _scoring_kb(
    kb: KBChoice,
    manifest: RunManifest,
    ver: SuiteVersion,
    ref: str,
    problems: list[str],
    notes: list[str],
) -> KnowledgeBase | None:
    """The KB to re-score with: the one given, else the bundled one; it must be the KB the run
    recorded (checked by its content version), else re-scoring is refused with the reason."""
    used = manifest.versions.kb
    chosen, where = _load_kb(kb, used)
    if used != ver.kb_version:
        notes.append(
            f"the run played on KB {used}; suite {ref} was frozen with KB {ver.kb_version} "
            "(an exported copy played on another install)"
        )
    if chosen.version != used:
        problems.append(
            f"cannot re-score: the run used KB {used}, {where} is {chosen.version}; verify with "
            f"`--kb DIR` holding KB {used} (suite {ref} was frozen with {ver.kb_version})"
        )
        return None
    return chosen


def _hidden_cases(
    name: str,
    sdef: SuiteDef,
    ver: SuiteVersion,
    kb: KBChoice,
    secret: str | None,
    problems: list[str],
) -> list[Case] | None:
    """A hidden suite version's cases, regenerated from the maintainer's secret with the KB it
    was frozen with; None (and no reason) when no secret is at hand."""
    from clinicgym.runs.errors import SuiteError
    from clinicgym.runs.suite import hidden_secret, hidden_seed, seed_commitment, version_cases

    ref = f"{name}@{ver.version}"
    try:
        key = hidden_secret(secret)
    except SuiteError as e:
        problems.append(str(e))
        return None
    if key is None:
        return None
    if seed_commitment(name, ver.version, hidden_seed(name, ver.version, key)) != ver.seed_sha256:
        problems.append(
            f"suite {ref}: the secret given is not the secret this version was frozen with (its "
            "seed does not match the registry's commitment)"
        )
        return None
    frozen_kb, where = _load_kb(kb, ver.kb_version)
    if frozen_kb.version != ver.kb_version:
        problems.append(
            f"cannot regenerate hidden suite {ref}'s cases: it was frozen with KB "
            f"{ver.kb_version}, {where} is {frozen_kb.version} (verify with `--kb DIR`)"
        )
        return None
    try:
        return version_cases(name, sdef, ver, frozen_kb, secret=key)
    except ClinicGymError as e:
        problems.append(f"cannot regenerate hidden suite {ref}'s cases: {e}")
        return None


def _bundle_cases(
    files: dict[str, bytes], problems: list[str], kb: KnowledgeBase | None = None
) -> list[Case] | None:
    """A public suite's cases as the bundle carries them (whole, or as recipes regenerated
    with `kb`)."""
    from clinicgym.patients.cases.case import Case
    from clinicgym.runs.casefile import is_recipe_line, read_case_lines

    if layout.CASES not in files:
        return None
    cases = []
    for i, line in enumerate(files[layout.CASES].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if is_recipe_line(line):  # a generated case: regenerated (and its hash checked)
                cases.extend(read_case_lines([line], kb))
            else:
                cases.append(Case.model_validate_json(line))
        except ValidationError as e:
            problems.append(f"cases.jsonl line {i}: not a case ({e.errors()[0]['msg']})")
            return None
        except ClinicGymError as e:
            problems.append(f"cases.jsonl line {i}: {e}")
            return None
    return cases


def _episodes(data: bytes, problems: list[str]) -> tuple[dict[str, Episode], Counter[str]]:
    from clinicgym.envs.episode import Episode

    seen: Counter[str] = Counter()
    episodes: dict[str, Episode] = {}
    for i, line in enumerate(data.splitlines(), start=1):
        try:
            ep = Episode.model_validate_json(line)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(map(str, err["loc"])) or "line"
            problems.append(f"episodes.jsonl line {i}: not an episode ({where}: {err['msg']})")
            continue
        seen[ep.episode_id] += 1
        episodes.setdefault(ep.episode_id, ep)
    return episodes, seen


def _plan(agents: list[str], case_ids: list[str], ver: SuiteVersion) -> dict[str, int]:
    """Episode id -> seed, as `runs/runner.plan_episodes` plans the suite's run (repeats and run
    seed from the registry's recipe)."""
    from clinicgym.runs.runner import episode_seed

    return {
        f"{agent}|{cid}|r{r}": episode_seed(ver.recipe.run_seed, i, r)
        for i, cid in enumerate(case_ids)
        for r in range(ver.recipe.repeats)
        for agent in agents
    }


def _plan_problems(
    planned: dict[str, int],
    episodes: dict[str, Episode],
    lines: Counter[str],
    p: list[str],
) -> None:
    missing = [x for x in planned if x not in episodes]
    missing_cases = sorted({x.split("|")[-2] for x in missing})
    if missing:
        p.append(
            f"{len(missing)} planned episodes are missing (cases {', '.join(missing_cases[:5])}"
            f"{' ...' if len(missing_cases) > 5 else ''}): every case of the suite must be run"
        )
    twice = sorted(k for k, n in lines.items() if n > 1)
    if twice:
        p.append(f"{len(twice)} episodes are stored more than once, e.g. {twice[0]}")
    extra = sorted(set(episodes) - set(planned))
    if extra:
        p.append(f"{len(extra)} episodes were not planned, e.g. {extra[0]}")
    reseeded = sorted(k for k, ep in episodes.items() if k in planned and ep.seed != planned[k])
    if reseeded:
        k = reseeded[0]
        p.append(
            f"{len(reseeded)} episodes were played with other seeds than the suite's, e.g. {k}: "
            f"{episodes[k].seed}, not {planned[k]}"
        )


def _served(episodes: Any) -> dict[str, dict[str, list[str]]]:
    """Per agent: the backends and model names its transcripts record (what the server said)."""
    out: dict[str, dict[str, set[str]]] = {}
    for ep in episodes:
        mine = out.setdefault(ep.agent_id, {"backend": set(), "model": set()})
        for e in ep.events:
            if e.actor == "clinician":
                for k in ("backend", "model"):
                    if isinstance(e.meta.get(k), str) and e.meta[k]:
                        mine[k].add(e.meta[k])
    return {a: {k: sorted(v) for k, v in d.items()} for a, d in out.items()}


MAX_EPISODE_REASONS = 20
"""Episode-level reasons listed per check; the rest are counted."""


def _capped(reasons: list[str]) -> list[str]:
    if len(reasons) <= MAX_EPISODE_REASONS:
        return reasons
    return [*reasons[:MAX_EPISODE_REASONS], f"... and {len(reasons) - MAX_EPISODE_REASONS} more"]


def _has_secret(secret: str | None) -> bool:
    from clinicgym.runs.errors import SuiteError
    from clinicgym.runs.suite import hidden_secret

    try:
        return hidden_secret(secret) is not None
    except SuiteError:
        return False


def _maintainer_only(ref: str) -> str:
    from clinicgym.runs.suite import HIDDEN_SEED_ENV, HIDDEN_SEED_FILE_ENV

    return (
        f"suite {ref} is hidden: only the maintainer, who holds its secret (${HIDDEN_SEED_ENV} or "
        f"${HIDDEN_SEED_FILE_ENV}), can verify it. Checked here without the secret: the bundle's "
        "hashes, the recipe and packs against this install's registry, the manifest's case hashes "
        "against the frozen cases hash, every planned episode and seed, and each transcript's "
        "actions, outcome, turns and ending; not checked: the monitors and the scores, which "
        "need the cases"
    )


def _rederive_summary(
    derived: list[Episode],
    cases: list[Case],
    ver: SuiteVersion,
    agents: list[str],
    spec: ManifestSpec,
    claimed: RunSummary,
    planned: dict[str, int],
    kb: KnowledgeBase,
    p: list[str],
) -> dict[str, Any] | None:
    """Replay the registry's packs over the re-derived transcripts (violations that differ from
    the stored ones are reasons), then score and summarise them as `finalise` does."""
    from clinicgym.policies import load_packs
    from clinicgym.policies.monitor import CHECK_ERROR_PREFIX, require_judge
    from clinicgym.policies.rescore import rescore
    from clinicgym.runs.summary import score_table, summarise
    from clinicgym.scoring.compliance import build_report, summary_of
    from clinicgym.scoring.metrics import EpisodeScorer

    by_id = {c.id: c for c in cases}
    scorer = EpisodeScorer(kb, ver.recipe.scenarios, monitored=bool(ver.recipe.policy_packs))
    wrong = []
    for ep in derived:
        case = by_id.get(ep.case_id)
        if case is None:
            p.append(f"episode {ep.episode_id}: case {ep.case_id} is not one of the suite's")
            return None
        played = scorer.played(ep, case).content_hash()
        if ep.status == "completed" and ep.case_hash != played:
            wrong.append(
                f"episode {ep.episode_id}: it records case hash {ep.case_hash[:12] or '(none)'}, "
                f"the suite's case as played hashes to {played[:12]}"
            )
    p.extend(_capped(wrong))
    packs = []
    verdicts = []
    if ver.recipe.policy_packs:
        try:
            packs = load_packs(ver.recipe.policy_packs)
            require_judge(packs, None)
        except ClinicGymError as e:
            p.append(f"cannot re-run the monitors: {e}".replace("\n", " "))
            return None
        verdicts = asyncio.run(rescore(derived, by_id, packs, kb, ver.recipe.scenarios))
        redone, found = [], []
        for ep, v in zip(derived, verdicts, strict=True):
            if v.status == "error" and not v.violations and v.errors and ep.status == "completed":
                found.append(
                    f"episode {ep.episode_id}: the monitors could not replay it: {v.errors[0]}"
                )
            if v.status != "skipped":
                want = sorted((x.turn, x.pack, x.rule_id, x.severity) for x in v.violations)
                have = sorted((x.turn, x.pack, x.rule_id, x.severity) for x in ep.violations)
                if want != have:
                    found.append(
                        f"episode {ep.episode_id}: the monitors re-run on its transcript find "
                        f"{_rules(want)}; the episode records {_rules(have)}"
                    )
                keep = [e for e in ep.errors if not e.startswith(CHECK_ERROR_PREFIX)]
                ep = ep.model_copy(
                    update={"violations": v.violations, "errors": keep + list(v.errors)}
                )
            redone.append(ep)
        p.extend(_capped(found))
        derived = redone
    table = score_table(derived, by_id, scorer)
    fresh = summarise(table, agents, claimed.run_id, spec.price_table())
    fresh["planned_episodes"] = len(planned)
    fresh["stored_episodes"] = len(table)
    if packs:
        report = build_report(
            verdicts,
            packs,
            run_id=fresh["run_id"],
            mode="live",
            agents=agents,
            kb_version=kb.version,
        )
        fresh["compliance"] = {"agents": summary_of(report)}
    return json.loads(json.dumps(fresh, default=str))


def _rules(keys: list[tuple[int, str, str, str]]) -> str:
    if not keys:
        return "no violation"
    shown = ", ".join(f"{rule} at turn {turn}" for turn, _pack, rule, _sev in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def _compare_summary(
    summary: RunSummary, fresh: dict[str, Any], p: list[str], notes: list[str]
) -> None:
    """Every value of the claimed summary against the re-derived one. A summary older than
    this install's format (intervals computed another way) is held to its counts and means
    (a newer format is refused when the summary is read, `runs/records.py`)."""
    fmt = summary.format_version
    old = fmt < SUMMARY_FORMAT_VERSION
    claimed = summary.document()  # as the file holds it: the fields it lacks stay absent
    diffs: list[str] = []
    for part in ("agents", "planned_episodes", "stored_episodes", "repeats"):
        if part == "repeats" and old:
            continue
        a, b = claimed.get(part), fresh.get(part)
        diffs += _diff(_stable(a) if old else a, _stable(b) if old else b, part)
    if "compliance" in fresh or "compliance" in claimed:
        a = (claimed.get("compliance") or {}).get("agents")
        b = (fresh.get("compliance") or {}).get("agents")
        diffs += _diff(_stable(a) if old else a, _stable(b) if old else b, "compliance.agents")
    if diffs:
        diffs.sort(key=lambda d: ".ci95" in d.split(":")[0])  # means and counts quoted first
        why = (
            f" (summary.json is format {fmt}, from before intervals changed; its counts and means "
            "are compared)"
            if old
            else ""
        )
        p.append(
            f"re-scoring the transcripts does not give the claimed numbers{why}: {len(diffs)} "
            f"values differ, e.g. {'; '.join(diffs[:3])}"
        )
    elif old:
        notes.append(
            f"summary.json is format {fmt}, from before intervals changed (now Wilson or BCa): "
            "every count and mean re-derives; the board shows the intervals re-derived here"
        )


def _stable(x: Any) -> Any:
    """A summary part without what the interval change altered: intervals, their method and
    the aggregates added since (pass^k); counts and means stay."""
    if isinstance(x, dict):
        return {
            k: _stable(v)
            for k, v in x.items()
            if k not in ("ci95", "method", "pass_k", "pass_hat_k", "usage")
        }
    if isinstance(x, list):
        return [_stable(v) for v in x]
    return x


def _pack_problems(packs: list[PackRecord]) -> list[str]:
    from clinicgym.policies.library import load_packs

    out = []
    for rec in packs:
        ref = f"{rec.id}@{rec.version}"
        try:
            (published,) = load_packs([ref])
        except ClinicGymError as e:
            out.append(f"policy pack {ref}: not available here ({e})")
            continue
        if published.sha256 != rec.sha256:
            out.append(f"policy pack {ref}: sha256 differs from the published pack")
    return out


def _diff(claimed: Any, fresh: Any, where: str) -> list[str]:
    if isinstance(claimed, dict) and isinstance(fresh, dict):
        out = []
        for k in sorted(set(claimed) | set(fresh), key=str):
            out += _diff(claimed.get(k), fresh.get(k), f"{where}.{k}")
        return out
    if isinstance(claimed, list) and isinstance(fresh, list) and len(claimed) == len(fresh):
        return [
            x
            for i, (a, b) in enumerate(zip(claimed, fresh, strict=True))
            for x in _diff(a, b, f"{where}[{i}]")
        ]
    if isinstance(claimed, float) and isinstance(fresh, float):
        return (
            []
            if abs(claimed - fresh) <= 1e-9 * max(1.0, abs(fresh))
            else [f"{where}: claimed {claimed!r}, re-scored {fresh!r}"]
        )
    return [] if claimed == fresh else [f"{where}: claimed {claimed!r}, re-scored {fresh!r}"]


# ---- build ---------------------------------------------------------------------------------


def _model_meta(agent: str, info: dict[str, Any]) -> dict[str, str]:
    """Model name, backend and parameters of an agent: declared on the card first, then what
    its transcripts record, then what its spec string says."""
    card = (info.get("cards") or {}).get(agent) or {}
    served = (info.get("served") or {}).get(agent) or {}
    from clinicgym.agents.backends.registry import display_name

    head = agent.partition("#")[0]
    sep = min((i for i in (head.find(":"), head.find("/")) if i > 0), default=len(head))
    kind, rest = head[:sep], head[sep + 1 :]  # 'openai:m@URL' and 'openai/m' alike
    from_spec = rest.split("@")[0]
    if kind == "vllm" and from_spec:
        from_spec = Path(from_spec).name
    if is_reference(agent):
        backend = "clinicgym baseline"
    else:  # a backend's name may hold its server's URL: the board never shows one
        backend = ", ".join(display_name(b) for b in served.get("backend") or []) or kind
    return {
        "model": card.get("model") or ", ".join(served.get("model") or []) or from_spec or agent,
        "served_as": ", ".join(served.get("model") or []),
        "backend": backend,
        "parameters": card.get("parameters")
        or KNOWN_PARAMETERS.get(head.replace(f"{kind}/", f"{kind}:", 1), ""),
        "url": card.get("url", ""),
    }


KNOWN_PARAMETERS = {"hf:smollm2": "135M"}
"""Parameter counts of the models clinicgym ships (others are declared on the card)."""


def _display(metric: str, cell: Any) -> str:
    return format_ci(cell, pct=True) if metric in PERCENT_METRICS else format_ci(cell, spec=".2f")


def _rank_key(cell: Any) -> float | None:
    """The ranked score as displayed: top-1 accuracy in whole percents."""
    if not isinstance(cell, dict) or cell.get("mean") is None:
        return None
    return float(round(round(float(cell["mean"]), 12) * 100))


def board_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """One row per (accepted bundle, agent), grouped by suite, best top-1 accuracy first.
    Reference agents are marked and unranked; equal displayed scores share a rank (1, 2, 2, 4)."""
    rows = []
    for v in verdicts:
        info = v.info
        summary = info.get("summary") or {}
        for agent, s in (summary.get("agents") or {}).items():
            meta = _model_meta(agent, info)
            metrics = s.get("metrics") or {}
            row: dict[str, Any] = {
                "suite": info.get("suite", ""),
                "rank": "",
                "agent": agent,
                "label": str(info.get("names", {}).get(agent) or agent_label(agent)),
                "reference": is_reference(agent),
                **meta,
                "sampling": " ".join(f"{k}={x}" for k, x in (info.get("sampling") or {}).items()),
                "submitter": info.get("submitter", ""),
                "run_date": info.get("created", ""),
                "submitted": info.get("submitted", ""),
                "run_id": info.get("run_id", ""),
                "episodes": s.get("episodes", 0),
                "errors": s.get("errors", 0),
                "score": _rank_key(metrics.get(RANK_METRIC)),
            }
            for m in BOARD_METRICS:
                cell = metrics.get(m) or {}
                ci = cell.get("ci95") or [None, None]
                row[m] = cell.get("mean")
                row[f"{m}_lo"], row[f"{m}_hi"] = ci[0], ci[1]
                row[f"{m}_shown"] = _display(m, cell)
            row.update(
                cases_sha256=str(info.get("cases_sha256", ""))[:12],
                packs=" ".join(info.get("packs", [])),
                kb_version=info.get("kb_version", ""),
                clinicgym=info.get("clinicgym", ""),
                superseded=info.get("superseded", ""),
                bundle=Path(v.bundle).name,
            )
            rows.append(row)
    rows.sort(
        key=lambda r: (
            r["suite"],
            r["score"] is None,
            -(r["score"] or 0.0),
            r["reference"],
            r["agent"],
            r["run_id"],
        )
    )
    for suite in {r["suite"] for r in rows}:
        ranked = [r for r in rows if r["suite"] == suite and not r["reference"]]
        for r in ranked:  # competition ranking: 1 + how many score strictly higher
            if r["score"] is not None:
                r["rank"] = 1 + sum(
                    1 for o in ranked if o["score"] is not None and o["score"] > r["score"]
                )
    return rows


def build(
    bundles: list[Path | str],
    out: Path | str,
    *,
    kb: KBChoice = None,
    secret: str | None = None,
) -> tuple[Path, list[Verdict]]:
    """Verify every bundle; write `index.html` and `leaderboard.csv` from the accepted ones
    (rejected ones are listed on the page with their reasons). Returns (out dir, verdicts)."""
    from clinicgym.patients.knowledge.kb import KnowledgeBase, load_kb

    if kb is not None:  # loaded once for every bundle
        given = kb if isinstance(kb, list | tuple) else [kb]
        kb = [x if isinstance(x, KnowledgeBase) else load_kb(x) for x in given]
    verdicts = [verify(b, kb=kb, secret=secret) for b in bundles]
    return write_site(verdicts, out), verdicts


def write_site(verdicts: list[Verdict], out: Path | str) -> Path:
    """`index.html` and `leaderboard.csv` from verdicts: the accepted ones ranked per suite,
    the rejected ones listed with their reasons."""
    import jinja2

    out = Path(out)
    rows = board_rows([v for v in verdicts if v.accepted])
    out.mkdir(parents=True, exist_ok=True)
    columns = (
        [c for c in rows[0] if not c.endswith("_shown") and c != "score"]
        if rows
        else ["suite", "rank", "agent", "reference", "run_id"]
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    (out / "leaderboard.csv").write_text(buf.getvalue(), encoding="utf-8")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clinicgym.runs", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    suites: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        suites.setdefault(r["suite"], []).append(r)
    html = env.get_template("leaderboard.html.j2").render(
        suites=suites,
        superseded={r["suite"]: r["superseded"] for r in rows if r["superseded"]},
        metrics=BOARD_METRICS,
        rejected=[v for v in verdicts if not v.accepted],
        notes=[v for v in verdicts if v.accepted and v.notes],
        built=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        version=__version__,
    )
    (out / "index.html").write_text(html, encoding="utf-8")
    return out
