"""Named, versioned case suites: `core`, `emergency`, `mental-health`, `policy-stress`,
`rare-disease`, `multimodal`, each generated from a seed and frozen by the hash of its cases.

A suite's registry entry (`runs/suites.yaml`, plus any files in `$CLINICGYM_SUITES`) holds a
recipe (how many cases, from which settings or conditions, the turn budget, repeats, scenarios,
pinned policy packs, modality) and its frozen versions. A version records the recipe it used,
the seed, the KB version and the sha256 over its cases' content hashes (`cases_sha256`, the
same value `clinicgym rl pin-suite` writes). Running `--suite core@1` regenerates the cases
and refuses to start if they no longer hash to the frozen value (the KB or the sampler
changed): a suite version never silently means other cases. `clinicgym suite freeze NAME`
adds the next version; `clinicgym suite export NAME@V DIR` writes the cases to a directory
that `--suite DIR` plays on any install.

Hidden suites (`hidden: true`) are for leaderboards: a version's seed is derived from a secret
the maintainer keeps outside the repository (`$CLINICGYM_HIDDEN_SEED`, or a file named by
`$CLINICGYM_HIDDEN_SEED_FILE`), and the registry holds only a commitment to it (`seed_sha256`)
and the cases' hash; case ids and lineage carry no seed, and bundles carry no cases.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym import __version__
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import make_sampler
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb
from clinicgym.runs.casefile import SUITE, GeneratedCases, sampler_recipe
from clinicgym.runs.errors import SuiteError
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import cases_sha256

REGISTRY_FORMAT_VERSION = 1
BUNDLED_REGISTRY = Path(__file__).with_name("suites.yaml")
REGISTRIES_ENV = "CLINICGYM_SUITES"
"""Extra registry files (os.pathsep-separated); their suites add to or replace bundled ones."""
HIDDEN_SEED_ENV = "CLINICGYM_HIDDEN_SEED"
"""The maintainer's secret from which hidden suites' seeds are derived; never in the repository."""
HIDDEN_SEED_FILE_ENV = "CLINICGYM_HIDDEN_SEED_FILE"
"""A file holding that secret (its first line), kept outside the repository."""
NAMED_SUITE_FILE = "named_suite.json"
"""In an exported suite directory: which suite version the cases are (beside suite.json)."""


class SuiteRecipe(BaseModel):
    """How a suite's cases are drawn and played."""

    model_config = ConfigDict(extra="forbid")
    cases: int = Field(ge=1, le=100_000)
    weighting: Literal["auto", "presentation", "balanced", "population"] = "auto"
    """As `RunSpec.weighting`; stored versions name theirs, so the default only shapes new
    recipes ('auto': presentation-first where the KB has presentations)."""
    settings: list[str] = []
    conditions: list[str] = []
    repeats: int = Field(default=1, ge=1, le=100)
    max_turns: int = Field(default=20, ge=1, le=200)
    scenarios: list[str] = []
    policy_packs: list[str] = []
    """Pinned pack versions ('hipaa-privacy@2'), so a version means the same rules forever."""
    modality: Literal["text", "image", "both"] = "text"
    run_seed: int = 0
    """The run's seed (each episode's seed derives from it), fixed so that every submission
    meets the same patients in the same episodes."""

    def spec_fields(self) -> dict[str, Any]:
        """The run-spec fields this recipe fixes."""
        return {
            "cases": self.cases,
            "repeats": self.repeats,
            "max_turns": self.max_turns,
            "scenarios": list(self.scenarios),
            "policy_packs": list(self.policy_packs),
            "modality": self.modality,
            "seed": self.run_seed,
        }


class SuiteVersion(BaseModel):
    """One frozen version: the recipe, the seed (or its commitment) and the cases' hash."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    recipe: SuiteRecipe
    seed: int | None = None
    seed_sha256: str | None = None
    """Hidden suites: sha256 of '<name>@<version>:<seed>', so a seed can be checked, not read."""
    cases_sha256: str
    kb_version: str
    clinicgym: str
    frozen: str
    superseded: str | None = None
    """Why this version no longer reproduces and which replaces it (set by the maintainer
    when a change to case generation moves it on); `suite check` reports it, not a failure."""


class SuiteDef(BaseModel):
    """A named suite: what it is for, the recipe its next version uses, its frozen versions."""

    model_config = ConfigDict(extra="forbid")
    description: str
    hidden: bool = False
    recipe: SuiteRecipe
    versions: list[SuiteVersion] = []

    def version(self, name: str, number: int | None) -> SuiteVersion:
        """Version `number`, or the latest when None."""
        if not self.versions:
            raise SuiteError(
                f"suite '{name}' has no frozen version yet; freeze one with "
                f"`clinicgym suite freeze {name}`"
            )
        if number is None:
            return self.versions[-1]
        for v in self.versions:
            if v.version == number:
                return v
        known = ", ".join(f"{name}@{v.version}" for v in self.versions)
        raise SuiteError(f"suite '{name}' has no version {number}; frozen versions: {known}")


class SuiteRegistry(BaseModel):
    """The suites known to this install."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = REGISTRY_FORMAT_VERSION
    suites: dict[str, SuiteDef] = {}


# ---- registry files ------------------------------------------------------------------------


def read_registry(path: Path | str) -> SuiteRegistry:
    """One registry file, validated; every problem named by suite and field, raised at once."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite registry not found") from None
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML ({e})".replace("\n", " ")) from None
    try:
        registry = SuiteRegistry.model_validate(raw)
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors()]
        raise SuiteError(
            f"{path} has {len(problems)} problems:\n  " + "\n  ".join(problems)
        ) from None
    problems = []
    for name, suite in registry.suites.items():
        problems += [f"suite '{name}': {p}" for p in _cross_check(suite)]
    if problems:
        raise SuiteError(f"{path} has {len(problems)} problems:\n  " + "\n  ".join(problems))
    return registry


def _describe(err: Any) -> str:
    loc = list(err["loc"])
    where = f"suite '{loc[1]}', " if len(loc) > 1 and loc[0] == "suites" else ""
    field = ".".join(map(str, loc[2:] if where else loc)) or "(top)"
    got = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
    return f"{where}field '{field}': {err['msg']}{got}"


def _cross_check(suite: SuiteDef) -> list[str]:
    problems = []
    for r, where in [
        (suite.recipe, "recipe"),
        *((v.recipe, f"version {v.version}") for v in suite.versions),
    ]:
        loose = [p for p in r.policy_packs if "@" not in p]
        if loose:
            problems.append(f"{where}: policy packs {loose} must name a version ('id@N')")
    numbers = [v.version for v in suite.versions]
    if numbers != sorted(set(numbers)):
        problems.append(f"versions {numbers} must be unique and increasing")
    for v in suite.versions:
        if suite.hidden and (v.seed is not None or not v.seed_sha256):
            problems.append(f"version {v.version}: a hidden suite keeps seed_sha256, never a seed")
        if not suite.hidden and v.seed is None:
            problems.append(f"version {v.version}: no seed")
    return problems


def registry_paths() -> list[Path]:
    """The bundled registry, then those named in $CLINICGYM_SUITES (later ones win)."""
    extra = [Path(p) for p in os.environ.get(REGISTRIES_ENV, "").split(os.pathsep) if p]
    return [BUNDLED_REGISTRY, *extra]


def load_suites() -> dict[str, tuple[SuiteDef, Path]]:
    """Every known suite with the registry file it comes from."""
    out: dict[str, tuple[SuiteDef, Path]] = {}
    for path in registry_paths():
        for name, suite in read_registry(path).suites.items():
            out[name] = (suite, path)
    return out


def write_registry(path: Path, registry: SuiteRegistry) -> None:
    """Write a registry file (atomically), keeping the field order readable."""
    data = registry.model_dump(mode="json", exclude_defaults=False)
    for suite in data["suites"].values():
        for v in suite["versions"]:
            for k in ("seed", "seed_sha256", "superseded"):
                if v[k] is None:
                    del v[k]
    text = (
        "# Named, versioned case suites (docs/runs.md). Versions are written by\n"
        "# `clinicgym suite freeze NAME`; edit a recipe, then freeze to add a version.\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---- refs ----------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'core' -> ('core', None); 'core@2' -> ('core', 2)."""
    name, at, ver = ref.strip().partition("@")
    if at and not ver.isdigit():
        raise SuiteError(f"suite '{ref}': the version after '@' must be a number, e.g. 'core@1'")
    return name, int(ver) if at else None


def is_directory_ref(ref: str) -> bool:
    """A suite ref naming a directory of pinned cases (suite.json + cases.jsonl)."""
    return Path(ref).is_dir() and (Path(ref) / "suite.json").exists()


def lookup(ref: str) -> tuple[str, SuiteDef, SuiteVersion]:
    """(name, suite, version) for 'NAME' (latest version) or 'NAME@V'."""
    name, number = parse_ref(ref)
    suites = load_suites()
    if name not in suites:
        raise SuiteError(
            f"unknown suite '{name}'; known: {', '.join(sorted(suites))} "
            "(`clinicgym suite list`), or a directory written by `clinicgym suite export`"
        )
    suite = suites[name][0]
    return name, suite, suite.version(name, number)


# ---- seeds and generation ------------------------------------------------------------------


def hidden_secret(secret: str | None = None) -> str | None:
    """The maintainer's secret: `secret` if given, else `$CLINICGYM_HIDDEN_SEED`, else the first
    line of the file `$CLINICGYM_HIDDEN_SEED_FILE` names; None when none is set."""
    if secret:
        return secret
    if os.environ.get(HIDDEN_SEED_ENV):
        return os.environ[HIDDEN_SEED_ENV]
    path = os.environ.get(HIDDEN_SEED_FILE_ENV)
    if not path:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SuiteError(
            f"${HIDDEN_SEED_FILE_ENV}={path}: cannot read the hidden-suite secret ({e.strerror})"
        ) from None
    return lines[0].strip() if lines and lines[0].strip() else None


def hidden_seed(name: str, version: int, secret: str | None = None) -> int:
    """The seed of a hidden suite version, derived from the maintainer's secret."""
    secret = hidden_secret(secret)
    if not secret:
        raise SuiteError(
            f"suite '{name}@{version}' is hidden: its seed derives from the maintainer's secret "
            f"in ${HIDDEN_SEED_ENV} or the file ${HIDDEN_SEED_FILE_ENV}, which is not set here"
        )
    digest = hashlib.sha256(f"{secret}:{name}@{version}".encode()).hexdigest()
    return int(digest[:15], 16)


def seed_commitment(name: str, version: int, seed: int) -> str:
    """What a hidden suite publishes instead of its seed."""
    return hashlib.sha256(f"{name}@{version}:{seed}".encode()).hexdigest()


def generate(
    name: str, version: int, recipe: SuiteRecipe, seed: int, kb: KnowledgeBase, hidden: bool
) -> GeneratedCases:
    """The cases of a suite version: the sampler's stream for `seed`, ids '<name>-v<V>-NNNN'
    (hidden suites: the seed left out of each case's lineage). Lazy: each case is realised when
    read (runs/casefile.py), so a suite of any size is checked and played in flat memory."""
    make_sampler(  # fails now on an unknown setting or condition
        kb,
        recipe.weighting,
        settings=recipe.settings or None,
        conditions=recipe.conditions or None,
    )
    base = sampler_recipe(
        kb,
        seed,
        weighting=recipe.weighting,
        settings=recipe.settings,
        conditions=recipe.conditions,
        prefix="suite",
    )
    ids = [f"{name}-v{version}-{i:04d}" for i in range(recipe.cases)]

    def unseeded(case: Case) -> Case:
        return case.model_copy(update={"lineage": case.lineage.model_copy(update={"seed": None})})

    # a public suite's line names the suite and the case's index: the registry regenerates it
    # (and the reader checks its hash); a hidden suite's cases are stored whole, as its recipe
    # would carry the seed and no reader without the secret could regenerate them
    return GeneratedCases(
        kb,
        base,
        recipe.cases,
        ids=ids,
        transform=unseeded if hidden else None,
        reference={"generator": SUITE, "suite": f"{name}@{version}", "kb_version": kb.version},
    )


_REFERENCED: OrderedDict[str, GeneratedCases] = OrderedDict()
"""Suites being read back from references, a few at once (a bundle is read line by line), by
everything that fixes their cases: the registry's entry and the KB."""


def reference_cases(ref: str, kb: KnowledgeBase) -> GeneratedCases:
    """The cases a public suite's `name@version` names, from the registry, lazily (each checked
    against the hash its run recorded by the reader, runs/casefile.py)."""
    name, suite, v = lookup(ref)
    if suite.hidden:
        raise SuiteError(f"suite '{ref}' is hidden: its cases are not regenerated from a reference")
    key = f"{name}|{v.model_dump_json()}|{kb.version}"
    cases = _REFERENCED.get(key)
    if cases is None:
        seed = _version_seed(name, suite, v, None)
        cases = _REFERENCED[key] = generate(name, v.version, v.recipe, seed, kb, False)
        while len(_REFERENCED) > 4:
            _REFERENCED.popitem(last=False)
    _REFERENCED.move_to_end(key)
    return cases


def _version_seed(name: str, suite: SuiteDef, v: SuiteVersion, secret: str | None) -> int:
    if not suite.hidden:
        assert v.seed is not None
        return v.seed
    seed = hidden_seed(name, v.version, secret)
    if seed_commitment(name, v.version, seed) != v.seed_sha256:
        raise SuiteError(
            f"suite '{name}@{v.version}': the secret given is not the secret this version was "
            "frozen with (its seed does not match the published commitment)"
        )
    return seed


def version_cases(
    name: str, suite: SuiteDef, v: SuiteVersion, kb: KnowledgeBase, secret: str | None = None
) -> Sequence[Case]:
    """Regenerate a frozen version's cases and check them against its hash (a hidden suite's
    from `secret`, default `hidden_secret()`)."""
    seed = _version_seed(name, suite, v, secret)
    cases = generate(name, v.version, v.recipe, seed, kb, suite.hidden)
    got = cases_sha256(cases)
    if got != v.cases_sha256:
        why = f" Superseded: {v.superseded}." if v.superseded else ""
        raise SuiteError(
            f"suite '{name}@{v.version}' is frozen at cases_sha256 {v.cases_sha256[:16]}..., but "
            f"this install generates {got[:16]}... (KB {kb.version}; the version was frozen with "
            f"KB {v.kb_version}, clinicgym {v.clinicgym}): its cases changed, so it cannot be "
            f"run from here.{why} Play an exported copy (`clinicgym suite export "
            f"{name}@{v.version} DIR` where it reproduces, then `--suite DIR`), or freeze a new "
            f"version with `clinicgym suite freeze {name}`."
        )
    return cases


# ---- runs ----------------------------------------------------------------------------------

SAMPLER_FIELDS = ("settings", "conditions", "cohort", "cases_from")
"""Spec fields that pick cases another way; they cannot be combined with a suite."""


def resolve_spec_fields(values: dict[str, Any], given: Iterable[str]) -> dict[str, Any]:
    """Spec values with the suite's fixed fields filled in and `suite` pinned to 'NAME@V'.
    A field the user gave (`given`) with another value than the suite's is an error."""
    ref = values.get("suite")
    if not ref:
        return values
    given = set(given)
    problems = [f"'{f}' picks cases itself" for f in SAMPLER_FIELDS if values.get(f)]
    if is_directory_ref(str(ref)):
        named = _named_export(Path(ref))
        fixed = named[2].recipe.spec_fields() if named else {}
        resolved_ref = str(ref)
    else:
        name, _suite, v = lookup(str(ref))
        fixed = v.recipe.spec_fields()
        resolved_ref = f"{name}@{v.version}"
    for k, want in fixed.items():
        if k in given and values.get(k) != want:
            problems.append(f"'{k}': the suite fixes {want!r}, got {values.get(k)!r}")
    if problems:
        raise SuiteError(
            f"--suite {ref}: " + "; ".join(problems) + " (drop these options, or play the "
            "cases without the suite)"
        )
    return {**values, **fixed, "suite": resolved_ref}


def suite_cases(spec: RunSpec, kb: KnowledgeBase) -> Sequence[Case]:
    """The cases of the spec's suite, after checking the spec plays them as the suite says."""
    ref = str(spec.suite)
    if is_directory_ref(ref):
        cases, named = _directory_cases(Path(ref), kb)
        recipe = named[2].recipe if named else None
        label = ref
    else:
        name, suite, v = lookup(ref)
        recipe, label = v.recipe, f"{name}@{v.version}"
    if recipe is not None:
        have = spec.model_dump(mode="json")
        bad = [
            f"{k}: the suite fixes {want!r}, the spec has {have[k]!r}"
            for k, want in recipe.spec_fields().items()
            if have[k] != want
        ]
        bad += [f"{f}: set, but the suite picks the cases" for f in SAMPLER_FIELDS if have[f]]
        if bad:
            raise SuiteError(
                f"the spec does not play suite {label} as frozen:\n  "
                + "\n  ".join(bad)
                + "\n(build specs with `clinicgym run --suite` or runs.config, which fill these in)"
            )
    if is_directory_ref(ref):
        return cases
    played = version_cases(name, suite, v, kb)
    if isinstance(played, GeneratedCases) and played.line_recipe is not None and spec.kb_dir:
        played.line_recipe["kb_dir"] = str(Path(spec.kb_dir).resolve())  # the KB to read with
    return played


def suite_record(ref: str, cases: Sequence[Case]) -> dict[str, Any]:
    """The manifest's record of the suite a run played."""
    got = cases_sha256(cases)
    if is_directory_ref(ref):
        named = _named_export(Path(ref))
        if named is None:
            return {
                "ref": str(Path(ref).resolve()),
                "name": None,
                "version": None,
                "cases_sha256": got,
                "hidden": False,
            }
        name, suite, v = named
    else:
        name, suite, v = lookup(ref)
    return {
        "ref": f"{name}@{v.version}",
        "name": name,
        "version": v.version,
        "hidden": suite.hidden,
        "cases_sha256": got,
        "frozen_sha256": v.cases_sha256,
        "kb_version": v.kb_version,
        "recipe": v.recipe.model_dump(mode="json"),
    }


# ---- freezing, exporting, checking ---------------------------------------------------------


def freeze(
    name: str,
    *,
    registry: Path | None = None,
    seed: int | None = None,
    kb: KnowledgeBase | None = None,
) -> SuiteVersion | None:
    """Freeze the suite's current recipe as its next version (None: the latest version still
    reproduces with this recipe, so there is nothing new to freeze). Public suites take `seed`
    (default: a fresh random one, written down); hidden ones derive it from the secret."""
    kb = kb or default_kb()
    suites = load_suites()
    if name not in suites:
        raise SuiteError(f"unknown suite '{name}'; known: {', '.join(sorted(suites))}")
    suite, origin = suites[name]
    path = Path(registry) if registry else origin
    reg = read_registry(path) if path.exists() else SuiteRegistry()
    if name not in reg.suites:
        reg.suites[name] = suite.model_copy(update={"versions": []})
    suite = reg.suites[name]
    if suite.versions and suite.versions[-1].recipe == suite.recipe:
        last = suite.versions[-1]
        try:
            version_cases(name, suite, last, kb)
            return None
        except SuiteError:
            pass  # the KB moved on: a new version
    number = suite.versions[-1].version + 1 if suite.versions else 1
    if suite.hidden:
        if seed is not None:
            raise SuiteError(
                f"suite '{name}' is hidden: its seed comes from ${HIDDEN_SEED_ENV} or "
                f"${HIDDEN_SEED_FILE_ENV}"
            )
        run_seed = hidden_seed(name, number)
    else:
        run_seed = seed if seed is not None else secrets.randbelow(2**31)
    cases = generate(name, number, suite.recipe, run_seed, kb, suite.hidden)
    version = SuiteVersion(
        version=number,
        recipe=suite.recipe,
        seed=None if suite.hidden else run_seed,
        seed_sha256=seed_commitment(name, number, run_seed) if suite.hidden else None,
        cases_sha256=cases_sha256(cases),
        kb_version=kb.version,
        clinicgym=__version__,
        frozen=time.strftime("%Y-%m-%d", time.gmtime()),
    )
    suite.versions.append(version)
    write_registry(path, reg)
    return version


def export(ref: str, directory: Path | str, kb: KnowledgeBase | None = None) -> Path:
    """Write a suite version's cases as a pinned directory (`clinicgym rl` reads it too) plus
    `named_suite.json`, so `--suite DIR` plays them on an install whose KB has moved on."""
    from clinicgym.runs.rl.suite import SuiteManifest

    kb = kb or default_kb()
    name, suite, v = lookup(ref)
    cases = version_cases(name, suite, v, kb)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "cases.jsonl").open("w", encoding="utf-8") as fh:
        for c in cases:
            fh.write(c.model_dump_json() + "\n")
    manifest = SuiteManifest(
        clinicgym=__version__,
        kb_version=kb.version,
        seed=v.seed if v.seed is not None else -1,
        n=len(cases),
        weighting=v.recipe.weighting,
        settings=v.recipe.settings,
        conditions=v.recipe.conditions,
        case_ids=[c.id for c in cases],
        case_hashes=[c.content_hash() for c in cases],
        suite_hash=cases_sha256(cases),
    )
    (out / "suite.json").write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    named = {"name": name, "hidden": suite.hidden, "version": v.model_dump(mode="json")}
    (out / NAMED_SUITE_FILE).write_text(json.dumps(named, indent=2) + "\n", encoding="utf-8")
    return out


def _named_export(directory: Path) -> tuple[str, SuiteDef, SuiteVersion] | None:
    p = directory / NAMED_SUITE_FILE
    if not p.exists():
        return None
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        v = SuiteVersion.model_validate(raw["version"])
        suite = SuiteDef(
            description="", hidden=bool(raw.get("hidden")), recipe=v.recipe, versions=[v]
        )
        return str(raw["name"]), suite, v
    except (ValueError, KeyError, ValidationError) as e:
        raise SuiteError(f"{p}: not a named-suite record ({e})".replace("\n", " ")) from None


def _directory_cases(
    directory: Path, kb: KnowledgeBase
) -> tuple[list[Case], tuple[str, SuiteDef, SuiteVersion] | None]:
    """Cases of a pinned directory (suite.json + cases.jsonl), each checked against its hash;
    an exported named suite's must also hash to its version's frozen value. Unlike
    `clinicgym rl`, the KB in use may differ from the one the cases were made with."""
    from clinicgym.runs.rl.suite import SuiteManifest

    problems: list[str] = []
    try:
        manifest = SuiteManifest.model_validate_json(
            (directory / "suite.json").read_text(encoding="utf-8")
        )
    except (OSError, ValidationError) as e:
        what = str(e).replace("\n", " ")
        raise SuiteError(f"{directory}/suite.json: not a suite manifest ({what})") from None
    cases: list[Case] = []
    lines = (directory / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(filter(str.strip, lines), start=1):
        try:
            cases.append(Case.model_validate_json(line))
        except ValidationError as e:
            problems.append(f"cases.jsonl line {i}: not a case ({e.errors()[0]['msg']})")
    if not problems and [c.content_hash() for c in cases] != manifest.case_hashes:
        problems.append("cases.jsonl does not match the case hashes in suite.json")
    named = _named_export(directory)
    got = cases_sha256(cases)
    if named is not None and not problems and got != named[2].cases_sha256:
        problems.append(
            f"its cases hash to {got[:16]}..., not to suite {named[0]}@{named[2].version}'s "
            f"frozen {named[2].cases_sha256[:16]}..."
        )
    if problems:
        raise SuiteError(f"suite directory {directory}: " + "; ".join(problems))
    return cases, named


def check(kb: KnowledgeBase | None = None) -> list[dict[str, Any]]:
    """For every frozen version: does it still reproduce on this install? (hidden ones only
    when the secret is set)."""
    kb = kb or default_kb()
    rows = []
    for name, (suite, path) in sorted(load_suites().items()):
        for v in suite.versions:
            row = {"suite": f"{name}@{v.version}", "registry": str(path), "hidden": suite.hidden}
            try:
                version_cases(name, suite, v, kb)
                row["status"] = "reproduces"
            except CaseError as e:  # the recipe asks for what this KB does not have
                row["status"], row["detail"] = "changed", f"{name}@{v.version}: {e}"
            except SuiteError as e:
                row["status"] = (
                    "skipped"
                    if HIDDEN_SEED_ENV in str(e) and "not set" in str(e)
                    else "superseded"
                    if v.superseded
                    else "changed"
                )
                row["detail"] = v.superseded or str(e)
            rows.append(row)
    return rows
