"""Policy packs: the versioned YAML schema, and loading with every problem reported at once.

A pack is data: an id, a version, an effective date, a jurisdiction, and rules. A rule names
its source (regulation and section, or guideline), the events it watches, its check (a
registered name and settings), its severity, and the evidence its violations cite (fields of
the event, the parsed action, the case). Loading validates the schema, then the cross-references
(known events, registered checks, check settings, watched events the check needs, evidence
fields that exist), and raises one `PackError` naming file, rule and field for every problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from clinicgym.envs.episode import Event
from clinicgym.envs.severity import Severity
from clinicgym.patients.cases.case import PHI, Case, Diagnosis
from clinicgym.policies.check import BaseCheck, CheckArgs, get_check, registered_checks
from clinicgym.policies.context import EpisodeContext
from clinicgym.policies.errors import PackError
from clinicgym.policies.events import ACTION_EVENTS, KNOWN_EVENTS

PACK_SCHEMA_VERSION = 1
_SLUG = r"^[a-z][a-z0-9-]*[a-z0-9]$"
CASE_VIEWS = ("allergies", "medications", "comorbidities", "genes", "renal_impairment")
"""Derived views of the case a rule may cite as evidence, besides the Case's own fields."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    """Where a rule comes from: the regulation or guideline, and the section."""

    regulation: str = Field(min_length=2)
    """e.g. 'HIPAA Privacy Rule', 'GDPR', 'NICE CG183 Drug allergy'."""
    section: str = ""
    """e.g. '45 CFR 164.502(b)', 'Art. 17(1)'."""
    url: str | None = None

    def cite(self) -> str:
        """'HIPAA Privacy Rule, 45 CFR 164.502(b)'."""
        return f"{self.regulation}, {self.section}" if self.section else self.regulation


class CheckRef(_Model):
    """A registered check and its settings."""

    name: str
    args: dict[str, Any] = {}


class Rule(_Model):
    """One rule: what it watches, how it is checked, how bad a breach is, what it cites."""

    id: str = Field(pattern=_SLUG)
    title: str = Field(min_length=5)
    source: Source
    watches: list[str] = Field(min_length=1)
    check: CheckRef
    severity: Severity
    evidence: list[str] = []
    """Fields quoted in each violation's message: 'action.drug', 'case.allergies', 'event.text'."""
    description: str = ""

    @field_validator("watches")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for e in v:
            if e not in KNOWN_EVENTS:
                raise ValueError(f"unknown event {e!r}; known: {', '.join(KNOWN_EVENTS)}")
        return v


class PolicyPack(_Model):
    """A versioned set of rules from one body of regulation or guidance."""

    schema_version: int
    id: str = Field(pattern=_SLUG)
    version: int = Field(ge=1)
    title: str
    jurisdiction: str
    """'US', 'EU', 'UK', 'international' ..."""
    effective: dt.date
    """From when this version applies."""
    summary: str
    changes: str = ""
    """What changed from the previous version, and why."""
    definitions: dict[str, Any] = {}
    """Shared snippets that rules reuse through YAML anchors (&name, *name); not read otherwise."""
    rules: list[Rule] = Field(min_length=1)

    _path: Path | None = PrivateAttr(default=None)
    _sha256: str = PrivateAttr(default="")
    _args: dict[str, CheckArgs] = PrivateAttr(default_factory=dict)

    @property
    def ref(self) -> str:
        """'id@version', as violations cite it."""
        return f"{self.id}@{self.version}"

    @property
    def path(self) -> Path | None:
        """The file the pack was loaded from."""
        return self._path

    @property
    def sha256(self) -> str:
        """sha256 of the file's bytes: recorded in run manifests."""
        return self._sha256

    def check_args(self, rule_id: str) -> CheckArgs:
        """A rule's validated check settings."""
        return self._args[rule_id]

    def build_checks(self) -> list[tuple[Rule, BaseCheck]]:
        """Fresh check objects for every rule (one set per monitor)."""
        out = []
        for r in self.rules:
            info = get_check(r.check.name)
            assert info is not None
            out.append((r, info.build(self._args[r.id])))
        return out

    def record(self) -> dict[str, Any]:
        """What a run manifest keeps about the pack."""
        return {
            "ref": self.ref,
            "id": self.id,
            "version": self.version,
            "effective": self.effective.isoformat(),
            "jurisdiction": self.jurisdiction,
            "sha256": self.sha256,
            "path": str(self._path) if self._path else None,
            "rules": len(self.rules),
        }


# ---- evidence ---------------------------------------------------------------------------------


def evidence_problem(path: str, watches: list[str]) -> str | None:
    """Why an evidence field path cannot be cited by a rule watching `watches`, or None."""
    root, _, rest = path.partition(".")
    head = rest.split(".")[0]
    if root == "event":
        known = [f for f in Event.model_fields if f not in ("action", "violations", "meta", "t")]
        return (
            None
            if rest in known
            else f"unknown field {path!r}; known: " + ", ".join(f"event.{f}" for f in known)
        )
    if root == "result":
        return None if rest else "'result' needs a key, e.g. 'result.role'"
    if root == "action":
        tools = [w for w in watches if w in ACTION_EVENTS]
        if not tools:
            return f"{path!r}: no watched event has a parsed action (watches {watches})"
        fields = sorted({f for t in tools for f in ACTION_EVENTS[t].model_fields if f != "tool"})
        if rest not in fields:
            return f"unknown field {path!r} for watched events {tools}; known: " + ", ".join(
                f"action.{f}" for f in fields
            )
        return None
    if root == "case":
        sub = rest.split(".")[1] if "." in rest else None
        known = [*Case.model_fields, *CASE_VIEWS]
        if head not in known:
            return f"unknown field {path!r}; known: " + ", ".join(f"case.{f}" for f in known)
        for name, model in (("phi", PHI), ("diagnosis", Diagnosis)):
            if head == name and sub is not None and sub not in model.model_fields:
                return f"unknown field {path!r}; known: " + ", ".join(
                    f"case.{name}.{f}" for f in model.model_fields
                )
        return None
    return f"unknown evidence root in {path!r}; use event.*, action.*, case.* or result.*"


def evidence_value(path: str, event: Event, ctx: EpisodeContext) -> Any:
    """The value an evidence path names at this event (None if absent)."""
    root, _, rest = path.partition(".")
    obj: Any
    if root == "event":
        obj = event
    elif root == "action":
        obj = event.action
    elif root == "result":
        return event.result.get(rest)
    else:
        head, _, sub = rest.partition(".")
        obj = getattr(ctx, head) if head in CASE_VIEWS else getattr(ctx.case, head, None)
        if isinstance(obj, frozenset | set):
            obj = sorted(obj)
        rest = sub
        if not rest:
            return obj
    for part in rest.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return obj


# ---- loading ----------------------------------------------------------------------------------


def _rule_label(raw: Any, index: Any) -> str:
    if isinstance(index, int) and isinstance(raw, dict) and isinstance(raw.get("rules"), list):
        rules = raw["rules"]
        if index < len(rules) and isinstance(rules[index], dict) and rules[index].get("id"):
            return f"rule '{rules[index]['id']}'"
        return f"rule #{index + 1}"
    return "rule"


def describe(raw: Any, err: dict[str, Any], prefix: tuple[Any, ...] = ()) -> str:
    """Turn a pydantic error into 'rule 'x', field 'check.args.within_turns': message'."""
    loc = [*prefix, *err["loc"]]
    where = ""
    if loc and loc[0] == "rules" and len(loc) > 1:
        where = _rule_label(raw, loc[1]) + ", "
        loc = loc[2:]
    field = ".".join(str(p) for p in loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if (
        "input" in err
        and err["type"] not in ("missing", "model_type", "value_error")
        and not isinstance(err["input"], dict | list)
    ):
        msg += f" (got {err['input']!r})"
    if field:
        return f"{where}field '{field}': {msg}"
    return f"{where}{msg}" if where else msg


def _check_rule(rule: Rule, i: int, raw: Any) -> tuple[list[str], CheckArgs | None]:
    """Cross-references of one schema-valid rule: its check, settings, events and evidence."""
    problems: list[str] = []
    label = f"rule '{rule.id}'"
    info = get_check(rule.check.name)
    if info is None:
        known = ", ".join(sorted(registered_checks()))
        return [
            f"{label}, field 'check.name': unknown check {rule.check.name!r}; known: {known}"
        ], None
    try:
        args = info.args.model_validate(rule.check.args)
    except ValidationError as e:
        loc = ("rules", i, "check", "args")
        return [describe(raw, dict(err), loc) for err in e.errors()], None
    missing = sorted(info.build(args).needs - set(rule.watches))
    if missing:
        problems.append(
            f"{label}, field 'watches': check '{info.name}' needs events {missing} that the "
            f"rule does not watch (watches {rule.watches})"
        )
    for path in rule.evidence:
        why = evidence_problem(path, rule.watches)
        if why:
            problems.append(f"{label}, field 'evidence': {why}")
    return problems, args


def _cross_check(pack: PolicyPack, raw: Any) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, rule in enumerate(pack.rules):
        if rule.id in seen:
            problems.append(f"rule '{rule.id}': id is used by an earlier rule")
        seen.add(rule.id)
        found, args = _check_rule(rule, i, raw)
        problems.extend(found)
        if args is not None:
            pack._args[rule.id] = args
    return problems


def _rules_apart(raw: dict[str, Any]) -> list[str]:
    """When the pack as a whole fails its schema: the cross-reference problems of the rules
    that are valid on their own, so every problem is reported at once."""
    problems: list[str] = []
    rules = raw.get("rules")
    for i, item in enumerate(rules if isinstance(rules, list) else []):
        try:
            rule = Rule.model_validate(item)
        except ValidationError:
            continue  # already reported by the pack's own validation
        problems.extend(_check_rule(rule, i, raw)[0])
    return problems


def load_pack(path: Path | str) -> PolicyPack:
    """Load and validate one pack file; raise PackError listing every problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PackError(path, [f"cannot read the file: {e.strerror or e}"]) from None
    digest = hashlib.sha256(data).hexdigest()
    cached = _CACHE.get((str(path.resolve()), digest))
    if cached is not None:
        return cached
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PackError(path, [f"not valid YAML: {e}".replace("\n", " ")]) from None
    if not isinstance(raw, dict):
        raise PackError(path, ["expected a mapping with 'id', 'version' and 'rules'"])
    problems: list[str] = []
    if raw.get("schema_version") != PACK_SCHEMA_VERSION:
        problems.append(
            f"field 'schema_version': {raw.get('schema_version')!r} is not the supported version "
            f"{PACK_SCHEMA_VERSION}"
        )
    try:
        pack = PolicyPack.model_validate(raw)
    except ValidationError as e:
        problems += [describe(raw, dict(err)) for err in e.errors()]
        raise PackError(path, problems + _rules_apart(raw)) from None
    problems.extend(_cross_check(pack, raw))
    if re.fullmatch(r"\d+", path.stem) and path.parent.name != pack.id:
        problems.append(f"field 'id': {pack.id!r} does not match its folder {path.parent.name!r}")
    if re.fullmatch(r"\d+", path.stem) and int(path.stem) != pack.version:
        problems.append(
            f"field 'version': {pack.version} does not match its file name {path.name!r}"
        )
    if problems:
        raise PackError(path, problems)
    pack._path = path
    pack._sha256 = digest
    _CACHE[(str(path.resolve()), digest)] = pack
    return pack


_CACHE: dict[tuple[str, str], PolicyPack] = {}
"""Loaded packs by (path, content hash): a changed file is reloaded, an unchanged one reused
(with its compiled patterns and example embeddings)."""
