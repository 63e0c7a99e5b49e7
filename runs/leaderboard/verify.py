"""Verifying a submission bundle against this install's suite registry.

Only the suite's name and version number are read from the bundle; its recipe, frozen cases
hash and policy packs come from the registry. The hashes, recipe, packs, cases, planned
episodes and seeds are checked here, each transcript re-derived (`runs/rederive.py`), then
the scores re-derived and compared (`rescore`). Every reason is collected.
"""

from __future__ import annotations

import json
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
from clinicgym.runs.leaderboard.bundle import (
    BUNDLE_FILES,
    BUNDLE_INDEX,
    HIDDEN_WITHHELD,
    sha256_hex,
)
from clinicgym.runs.leaderboard.rescore import capped_reasons, compare_summary, rederive_summary
from clinicgym.runs.records import (
    ManifestSpec,
    PackRecord,
    RunFileError,
    RunManifest,
    RunSummary,
    SuiteRecord,
    parse_manifest,
    parse_summary,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from clinicgym.envs.episode import Episode
    from clinicgym.patients.cases.case import Case
    from clinicgym.patients.knowledge.kb import KnowledgeBase
    from clinicgym.runs.suite import SuiteDef, SuiteVersion

    R = TypeVar("R", RunManifest, RunSummary)

    KBChoice = KnowledgeBase | Path | str | Sequence[KnowledgeBase | Path | str] | None
    """The KB verify re-scores with: one, several (picked by version), or None (bundled)."""

SPEC_MUST = {"end_on_diagnose": True, "patient": "grounded"}
"""Run settings a suite does not list but every submission plays alike (the env's defaults)."""


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


def _index_hash_problems(index: dict[str, Any], files: dict[str, bytes], hidden: str) -> list[str]:
    """Files missing, or not as bundle.json hashes them; a hidden suite's (`hidden`) omits cases."""
    out = []
    recorded = index.get("files") if isinstance(index.get("files"), dict) else {}
    for n in BUNDLE_FILES:
        if n not in files:
            if not (hidden and n in HIDDEN_WITHHELD):
                out.append(f"{n} is missing from the bundle")
            continue
        if hidden and n in HIDDEN_WITHHELD:
            out.append(
                f"{n}: a bundle of hidden suite {hidden} must not carry its cases "
                "(`clinicgym submit` leaves them out; the maintainer regenerates them)"
            )
        want = (recorded.get(n) or {}).get("sha256") if isinstance(recorded.get(n), dict) else None
        if want != sha256_hex(files[n]):
            out.append(f"{n}: sha256 {sha256_hex(files[n])[:16]}... does not match bundle.json")
    return out


def _sealed_hash_problems(manifest: RunManifest, files: dict[str, bytes]) -> list[str]:
    """Each bundled file against the hash the manifest sealed when the run finished."""
    out = []
    content = manifest.content or {}
    for n, rec in content.items():
        if n in files and rec.sha256 != sha256_hex(files[n]):
            out.append(f"{n} was edited after the run was finalised (manifest sha256 differs)")
    if not content:
        out.append(f"{layout.MANIFEST} has no content hashes: the run was never finalised")
    return out


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
    p.extend(_index_hash_problems(index, files, hidden))
    if manifest is None:
        return verdict
    p.extend(_sealed_hash_problems(manifest, files))
    try:
        verdict.info.update(bundle_info(index, manifest))
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


def bundle_info(index: dict[str, Any], manifest: RunManifest) -> dict[str, Any]:
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
    """Everything past the hashes: recipe, packs, cases, plan, transcripts, monitors and scores."""
    p = verdict.problems
    name, sdef, ver = suite
    ref = f"{name}@{ver.version}"
    spec = manifest.spec
    verdict.info.update(suite=ref, hidden=sdef.hidden, superseded=ver.superseded or "")
    if ver.superseded:
        verdict.notes.append(f"{ref} is superseded ({ver.superseded}); ranked with its own runs")
    # 2. the recipe and packs, from the registry
    p.extend(_recipe_problems(spec, manifest.suite or SuiteRecord(), ver, ref))
    p.extend(_pack_ref_problems(manifest))
    p.extend(_pack_problems(manifest.policy_packs))
    verdict.info["packs"] = list(ver.recipe.policy_packs)
    # 3. the cases: the frozen hash from the registry
    ids = [c.id for c in manifest.cases]
    frozen = _frozen_hash_problems(manifest, ver, ref)
    verdict.info["cases_sha256"] = ver.cases_sha256
    p.extend(frozen)
    scoring_kb = _scoring_kb(kb, manifest, ver, ref, p, verdict.notes)
    cases = _suite_cases(suite, manifest, files, kb, scoring_kb, secret, p)
    # 4. every planned episode once, with the suite's seeds
    episodes, lines = _episodes(files[layout.EPISODES], p)
    agents = list(spec.agents)
    planned = _plan(agents, ids, ver)
    _plan_problems(planned, episodes, lines, p)
    # 5. the transcripts: outcomes, turns and endings re-derived
    derived = _rederived(episodes, ver.recipe.max_turns, p)
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
    fresh = rederive_summary(derived, cases, ver, agents, spec, summary, planned, scoring_kb, p)
    if fresh is not None:
        compare_summary(summary, fresh, p, verdict.notes)
        verdict.info["summary"] = fresh


def _pack_ref_problems(manifest: RunManifest) -> list[str]:
    """The packs the manifest records against those its spec names."""
    have_refs = [f"{x.id}@{x.version}" for x in manifest.policy_packs]
    if have_refs == manifest.spec.policy_packs:
        return []
    return [f"the manifest records packs {have_refs}, its spec names {manifest.spec.policy_packs}"]


def _frozen_hash_problems(manifest: RunManifest, ver: SuiteVersion, ref: str) -> list[str]:
    """The run's case hashes against the suite version's frozen cases hash (the registry's)."""
    hashes = [str(c.hash) for c in manifest.cases]
    listed_sha = sha256_hex("".join(hashes).encode()) if hashes else ""
    if listed_sha == ver.cases_sha256:
        return []
    return [
        f"the run's cases hash to {listed_sha[:16]}... ({len(hashes)} cases), not to suite "
        f"{ref}'s frozen {ver.cases_sha256[:16]}... ({ver.recipe.cases} cases, this "
        "install's registry): not the suite's cases"
    ]


def _suite_cases(
    suite: tuple[str, SuiteDef, SuiteVersion],
    manifest: RunManifest,
    files: dict[str, bytes],
    kb: KBChoice,
    scoring_kb: KnowledgeBase | None,
    secret: str | None,
    p: list[str],
) -> list[Case] | None:
    """The suite's cases (from the secret if hidden, else the bundle), checked with the manifest."""
    name, sdef, ver = suite
    if sdef.hidden:
        cases = _hidden_cases(name, sdef, ver, kb, secret, p)
    else:
        cases = _bundle_cases(files, p, scoring_kb)
    listed = [(c.id, str(c.hash)) for c in manifest.cases]
    if cases is not None and [(c.id, c.content_hash()) for c in cases] != listed:
        p.append(
            f"the cases do not match the case ids and hashes in {layout.MANIFEST}"
            + (" (regenerated from the secret)" if sdef.hidden else "")
        )
    return cases


def _rederived(episodes: dict[str, Episode], max_turns: int, p: list[str]) -> list[Episode]:
    """Each transcript rebuilt from its events (outcome, turns, ending); differences are reasons."""
    from clinicgym.runs.rederive import rederive

    derived, found = [], []
    for ep in episodes.values():
        again = rederive(ep, max_turns)
        found += again.problems
        derived.append(again.episode)
    p.extend(capped_reasons(found))
    return derived


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
