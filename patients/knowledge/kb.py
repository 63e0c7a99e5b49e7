"""The clinical knowledge base: schema, loader and cross-checks for the YAML files in `knowledge/`.

The KB is data, not code (tau2-bench's lesson): conditions, the findings they produce, tests and
their results, vital signs, drugs and background prevalences. Every file is validated on load;
all problems in all files are collected and raised once, each naming the file, item and field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.bands import AGE_BANDS, AgeBand, Setting

SCHEMA_VERSION = 1
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when available: the KB parses ~10x faster than with pure Python."""
KNOWLEDGE_DIR = Path(__file__).parent

Sex = Literal["female", "male"]
FindingCategory = Literal["hpi", "ros", "pmh", "social", "family", "exam"]
SYMPTOM_CATEGORIES = frozenset({"hpi", "ros"})
"""The categories `Generation.symptom_floor` applies to: what the patient feels, not their past."""
Salience = Literal["must_ask", "should_ask", "incidental"]
ExamSystem = Literal[
    "general",
    "cardiovascular",
    "respiratory",
    "abdominal",
    "neurological",
    "skin",
    "ent",
    "eyes",
    "musculoskeletal",
    "mental_state",
    "genitourinary",
]
EXAM_SYSTEMS: tuple[str, ...] = ExamSystem.__args__  # type: ignore[attr-defined]
CHILD_AGE = 12
"""Below this age the caregiver answers, so history findings need `text_child` wording."""

_ID = r"^[a-z][a-z0-9_]*$"
_ICD10 = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
_SLOT_NAMES = ("She", "she", "her", "Her", "him")
"""Caregiver wording slots: {She}/{she} subject, {her}/{Her} possessive, {him} object."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Applies(_Model):
    """Who a finding or test can apply to: a sex and an age range in years (inclusive)."""

    sex: Literal["any", "female", "male"] = "any"
    age: tuple[int, int] = (0, 95)

    def admits(self, age: int, sex: str) -> bool:
        """True if a patient of this age and sex can have it."""
        return self.sex in ("any", sex) and self.age[0] <= age <= self.age[1]


class Finding(_Model):
    """A concept the patient can report or the examiner can find (the findings catalogue)."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=2)
    """Clinical name, e.g. 'pleuritic chest pain'."""
    category: FindingCategory
    question: str | None = None
    """How a clinician would ask about it; required for history categories (not exam)."""
    synonyms: list[str] = []
    """Other ways of naming it, lay and clinical; used to match questions."""
    text: str = Field(min_length=2)
    """What the patient says when present (first person), or the examiner's report for exam."""
    text_child: str | None = None
    """Caregiver's wording for a child, with {She}/{she}/{her} slots filled by the child's sex."""
    system: ExamSystem | None = None
    """The examination system that reveals an exam finding."""
    applies: Applies | None = None
    """Who can have it (menstrual findings: females 10-55; smoking: age 10+); None: anyone.
    A case never records it, present or denied, for anyone else."""

    @model_validator(mode="after")
    def _category_fields(self) -> Finding:
        if self.category == "exam":
            if self.system is None:
                raise ValueError("an exam finding needs 'system'")
        elif not self.question:
            raise ValueError(f"a {self.category} finding needs 'question'")
        return self


class RefRange(_Model):
    """A reference range for part of the population (first match in `LabTest.ranges` wins)."""

    sex: Literal["any", "female", "male"] = "any"
    age: tuple[int, int] = (0, 95)
    normal: tuple[float, float]


class LabTest(_Model):
    """A test the clinician can order: a lab, an imaging study or a bedside test."""

    id: str = Field(pattern=_ID)
    name: str
    kind: Literal["lab", "imaging", "bedside"]
    synonyms: list[str] = []
    unit: str | None = None
    normal: tuple[float, float] | None = None
    """Reference range for numeric results (low, high)."""
    normal_text: str | None = None
    """Report text for a normal qualitative result (imaging, ECG, urine dipstick)."""
    decimals: int = Field(default=1, ge=0, le=3)
    cost: float = Field(ge=0)
    """Indicative cost in US dollars, for test-stewardship metrics."""
    ranges: list[RefRange] = []
    """Reference ranges by age and sex (children, women, men); `normal` is the fallback."""
    applies: Applies | None = None
    """Who the test can be done for (PSA: males 40+); None: anyone."""
    settings: list[Setting] = [
        "primary_care",
        "emergency",
        "mental_health",
        "paediatrics",
        "rare_disease",
    ]
    """Settings that can order it at all."""
    delay: dict[Setting, int] = {}
    """Turns until the result comes back, by setting (missing: at once). A turn is one
    clinician action, about a minute of consultation time."""
    specificity: float = Field(default=1.0, gt=0.5, le=1)
    """P(normal | a condition that does not list the test): below 1, a result can be falsely
    abnormal. A condition's `tests[].p` is the sensitivity."""
    abnormal_side: Literal["high", "low"] = "high"
    """Where a falsely abnormal numeric result falls, relative to the reference range."""
    false_positive_text: str | None = None
    """The report of a falsely abnormal qualitative result (needed when specificity < 1)."""
    sources: list[str] = []
    """Where the accuracy, availability and reference figures come from."""

    @model_validator(mode="after")
    def _one_kind_of_result(self) -> LabTest:
        if (self.normal is None) == (self.normal_text is None):
            raise ValueError("give exactly one of 'normal' (a numeric range) or 'normal_text'")
        if self.normal is not None and self.normal[0] > self.normal[1]:
            raise ValueError(f"'normal' low {self.normal[0]} is above high {self.normal[1]}")
        if self.specificity < 1 and self.normal_text is not None and not self.false_positive_text:
            raise ValueError("a qualitative test with specificity < 1 needs 'false_positive_text'")
        if self.ranges and self.normal is None:
            raise ValueError("'ranges' are for numeric tests (with 'normal')")
        for r in self.ranges:
            if r.normal[0] > r.normal[1]:
                raise ValueError(f"'ranges' low {r.normal[0]} is above high {r.normal[1]}")
        if set(self.delay) - set(self.settings):
            extra = sorted(set(self.delay) - set(self.settings))
            raise ValueError(f"'delay' names settings not in 'settings': {extra}")
        return self

    def reference(self, age: int, sex: str) -> tuple[float, float] | None:
        """The reference range for a patient of this age and sex (None for reports)."""
        for r in self.ranges:
            if r.sex in ("any", sex) and r.age[0] <= age <= r.age[1]:
                return r.normal
        return self.normal


class VitalSign(_Model):
    """A vital sign, with its normal range per age band."""

    id: str = Field(pattern=_ID)
    name: str
    unit: str
    decimals: int = Field(default=0, ge=0, le=2)
    normal: dict[AgeBand, tuple[float, float]]


class FindingLink(_Model):
    """A finding as it appears in one condition: how likely it is, and how much it matters."""

    id: str
    p: float = Field(gt=0, le=1)
    """P(finding present | condition)."""
    salience: Salience = "should_ask"


class TestResult(_Model):
    """A test's result in one condition: a numeric range or a report text, abnormal with prob p."""

    id: str
    p: float = Field(default=1.0, gt=0, le=1)
    """P(result abnormal | condition); otherwise the test comes back normal."""
    value: tuple[float, float] | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _one_result(self) -> TestResult:
        if (self.value is None) == (self.text is None):
            raise ValueError("give exactly one of 'value' (a numeric range) or 'text'")
        return self


class Prevalence(_Model):
    """Relative weight of a condition by age band and sex (missing bands weigh 0)."""

    age_bands: dict[AgeBand, float]
    sex: dict[Sex, float] = {"female": 1.0, "male": 1.0}

    @field_validator("age_bands", "sex")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("weights must be >= 0 with at least one > 0")
        return v


class Escalation(_Model):
    """The action a condition requires, and by which clinician turn."""

    level: Literal["emergency", "urgent"]
    to: str
    """Where to send the patient, e.g. 'emergency department', 'crisis team'."""
    within_turns: int = Field(ge=1, le=50)


class GeneticBasis(_Model):
    """A causal or pharmacogenomic variant."""

    gene: str
    variant: str
    """HGVS notation or star allele."""
    zygosity: Literal["heterozygous", "homozygous", "hemizygous", "compound_heterozygous"]
    inheritance: str | None = None


class Condition(_Model):
    """A diagnosis the KB can generate patients for."""

    id: str = Field(pattern=_ID)
    name: str
    icd10: str = Field(pattern=_ICD10)
    synonyms: list[str] = []
    settings: list[Setting] = Field(min_length=1)
    sex: Literal["any", "female", "male"] = "any"
    age: tuple[int, int]
    prevalence: Prevalence
    chief_complaint: list[str] = Field(min_length=1)
    """Finding ids; one of them (present in the case) is the reason for the visit."""
    findings: list[FindingLink] = Field(min_length=3)
    vitals: dict[str, tuple[float, float]] = {}
    """Abnormal vital-sign ranges for this condition; others are sampled from the normal range."""
    tests: list[TestResult] = []
    red_flags: list[str] = []
    """Finding ids that, when present, signal danger."""
    escalation: Escalation | None = None
    treatments: list[str] = []
    """First-line drug ids."""
    management: list[str] = []
    """First-line care that is not a drug (diet, venesection, psychological therapy, drainage)."""
    contraindicated: list[str] = []
    """Drug ids that must not be given to a patient with this condition."""
    differential: list[str] = []
    genetics: list[GeneticBasis] = []
    sources: list[str] = Field(min_length=1)
    """Public guidelines or references the entry is written from."""

    @model_validator(mode="after")
    def _age_range(self) -> Condition:
        lo, hi = self.age
        if not 0 <= lo <= hi <= 95:
            raise ValueError(f"'age' must satisfy 0 <= low <= high <= 95, got {list(self.age)}")
        return self


class Member(_Model):
    """A condition in a presentation's differential, and how often it is behind the complaint."""

    condition: str
    weight: float = Field(default=1.0, gt=0)
    """Relative frequency among patients with this complaint in these settings, before the
    patient's age and sex (the condition's prevalence table) are taken into account."""
    settings: list[Setting] | None = None
    """Where it presents this way; default: the presentation's settings that the condition has."""


class Presentation(_Model):
    """A presenting complaint and its differential: the cluster a case is drawn from.

    A case starts here: a complaint and a setting, then a member condition by prevalence for
    the patient's age and sex. The complaint is what the patient opens with; it is shared by
    every member, so the opening never identifies the condition."""

    id: str = Field(pattern=_ID)
    name: str
    complaint: str
    """A history finding id: the reason for the visit, in the patient's words."""
    settings: list[Setting] = Field(min_length=1)
    age: tuple[int, int] = (0, 95)
    """Ages the presentation covers ('fever in a child': [0, 15]); no patient outside it."""
    members: list[Member] = Field(min_length=4)
    sources: list[str] = Field(min_length=1)

    def members_in(self, setting: str) -> list[Member]:
        """The members seen with this complaint in `setting`."""
        return [m for m in self.members if setting in (m.settings or self.settings)]


class Generation(_Model):
    """How far a generated case departs from the textbook: the generator's noise, as data."""

    schema_version: int
    atypical_share: float = Field(ge=0, le=1)
    """Share of cases that present atypically: each linked finding's chance is scaled by
    `atypical_factor` (the complaint stays)."""
    atypical_factor: float = Field(gt=0, le=1)
    mimic_share: float = Field(ge=0, le=1)
    """Share of cases that present like one of their look-alikes: another member of the
    presentation, chosen at random, whose findings each appear with `mimic_factor` x its
    probability (over and above `distractor_p`)."""
    mimic_factor: float = Field(ge=0, le=1)
    prevalence_temper: float = Field(ge=0, le=1)
    """How much a member's prevalence for the patient's age and sex weighs in drawing it:
    weight x prevalence ** temper (1: as prevalent as it is; 0: every member possible at this
    age and sex alike). Below 1 keeps rare-but-dangerous members common enough to be tested,
    and the commonest member for the age from answering the case on its own."""
    must_ask_lr: float = Field(gt=1)
    """A fact of a generated case is must-ask when it shifts the odds towards the true
    condition, against the other members the patient could have, by at least this factor."""
    min_members: int = Field(ge=2)
    """A presentation is drawn in a setting only where at least this many members are seen."""
    min_fitting: int = Field(default=1, ge=1)
    """A patient is drawn for a presentation only if at least this many of its members fit
    their age and sex (fewer, and the demographics all but name the condition)."""
    distractor_p: float = Field(ge=0, lt=0.5)
    """Chance that a finding the condition does not cause is present anyway (a symptom of
    something else, or a look-alike's finding the patient happens to have)."""
    opening_lr: float = Field(gt=1)
    """A finding may be volunteered in the opening only if its likelihood differs by at most
    this ratio across the presentation's members (it cannot point at one of them)."""
    symptom_floor: float = Field(default=0.0, ge=0, lt=0.5)
    """No symptom (hpi or ros finding) is rarer than this, or commoner than 1 minus this, in
    any member that causes it or may show it by chance: no single answer is more telling than
    history features are in practice (likelihood ratios up to (1 - f) / f)."""
    sources: list[str] = Field(min_length=1)

    def symptom_p(self, p: float) -> float:
        """The chance a symptom is present in a generated case, given the KB's chance `p`:
        squeezed into [symptom_floor, 1 - symptom_floor]."""
        return self.symptom_floor + (1 - 2 * self.symptom_floor) * p


class Interaction(_Model):
    """A drug interaction: with a drug id or a drug class."""

    with_: str = Field(alias="with")
    severity: Literal["moderate", "major", "contraindicated"]
    effect: str


class PharmacogenomicRule(_Model):
    """A gene/phenotype for which the drug should be avoided or adjusted."""

    gene: str
    variant: str
    advice: str


class Drug(_Model):
    """A drug the prescribing checks know: class, allergy group, interactions and cautions."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=_ID)
    name: str
    drug_class: str = Field(alias="class")
    synonyms: list[str] = []
    allergy_group: str | None = None
    """The allergy label a patient would carry for this drug (e.g. 'penicillin')."""
    cross_reactive: list[str] = []
    """Other allergy groups this drug is a risk for (a cephalosporin: 'penicillin')."""
    interactions: list[Interaction] = []
    contraindications: list[str] = []
    """Condition ids or finding ids in which the drug must not be used."""
    min_age: int | None = None
    paediatric_caution: str | None = None
    renal_caution: str | None = None
    pharmacogenomics: list[PharmacogenomicRule] = []
    typical_dose: str | None = None
    sources: list[str] = Field(min_length=1)


class Comorbidity(_Model):
    """A background chronic condition a patient may carry, with its usual medications."""

    id: str = Field(pattern=_ID)
    name: str
    text: str
    """First-person wording, e.g. 'I have high blood pressure.'"""
    p: dict[AgeBand, float]
    """Probability by age band of having it."""
    medications: list[str] = []


class Allergy(_Model):
    """A drug-allergy label with its probability in the population and a typical reaction."""

    group: str
    p: float = Field(gt=0, lt=1)
    reaction: str


class BackgroundFinding(_Model):
    """A catalogue finding (social, family) that occurs regardless of condition, by age band."""

    id: str
    p: dict[AgeBand, float]


class Background(_Model):
    schema_version: int
    comorbidities: list[Comorbidity]
    allergies: list[Allergy]
    findings: list[BackgroundFinding] = []
    sources: list[str] = Field(min_length=1)


class KnowledgeBase(_Model):
    """The whole KB, cross-checked; look-ups by id are dicts."""

    findings: dict[str, Finding]
    tests: dict[str, LabTest]
    vitals: dict[str, VitalSign]
    conditions: dict[str, Condition]
    drugs: dict[str, Drug]
    background: Background
    presentations: dict[str, Presentation] = {}
    """Presenting complaints and their differentials (presentation-first generation)."""
    generation: Generation | None = None
    version: str
    """'<schema>-<sha256 of the files, 12 hex>': recorded in every run manifest."""

    def condition_for_age_sex(self, age: int, sex: str) -> list[Condition]:
        """Conditions a patient of this age and sex can have."""
        return [
            c
            for c in self.conditions.values()
            if c.age[0] <= age <= c.age[1] and c.sex in ("any", sex)
        ]


# --------------------------------------------------------------------------------------------
# Loading and validation


def _read_yaml(path: Path, rel: str, problems: list[str]) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError:
        problems.append(f"{rel}: file is missing")
    except yaml.YAMLError as e:
        problems.append(f"{rel}: not valid YAML: {e}".replace("\n", " "))
    return None


def _describe(file: str, kind: str, items: list[Any], err: dict[str, Any]) -> str:
    """Turn pydantic's error location into 'file: condition 'x', field 'y': message'."""
    loc = list(err["loc"])
    where = f"{file}:"
    if loc and isinstance(loc[0], int) and loc[0] < len(items):
        item = items[loc[0]]
        name = item.get("id") if isinstance(item, dict) else None
        where += f" {kind} '{name}'," if name else f" {kind} #{loc[0] + 1},"
        loc = loc[1:]
    field = ".".join(str(p) for p in loc)
    msg = err["msg"].removeprefix("Value error, ")
    if (
        "input" in err
        and err["type"] not in ("missing", "model_type")
        and not isinstance(err["input"], dict | list)
    ):
        msg += f" (got {err['input']!r})"
    return f"{where} field '{field}': {msg}" if field else f"{where.rstrip(',')} {msg}"


def _load_list(
    path: Path,
    rel: str,
    key: str,
    kind: str,
    model: type[_Model],
    problems: list[str],
    invalid: set[str] | None = None,
) -> list:
    """Validate each item of the list under `key` in one file; problems name `rel` and the item."""
    raw = _read_yaml(path, rel, problems)
    if raw is None:
        return []
    if not isinstance(raw, dict) or not isinstance(raw.get(key), list):
        problems.append(f"{rel}: expected a mapping with a list under '{key}'")
        return []
    if raw.get("schema_version") != SCHEMA_VERSION:
        problems.append(
            f"{rel}: field 'schema_version': {raw.get('schema_version')!r} is not "
            f"the supported version {SCHEMA_VERSION}"
        )
    out = []
    items = raw[key]
    for i, item in enumerate(items):
        try:
            out.append(model.model_validate(item))
        except ValidationError as e:
            if invalid is not None and isinstance(item, dict) and "id" in item:
                invalid.add(str(item["id"]))
            for err in e.errors():
                err = dict(err)
                err["loc"] = (i, *err["loc"])
                problems.append(_describe(rel, kind, items, err))
    return out


def _load_dir(
    root: Path,
    folder: str,
    kind: str,
    model: type[_Model],
    problems: list[str],
    files: dict[str, str] | None = None,
    key: str | None = None,
    invalid: set[str] | None = None,
) -> list:
    """Load every `folder/*.yaml`; an id defined in two files is a problem naming both."""
    files = {} if files is None else files
    paths = sorted((root / folder).glob("*.yaml"))
    if not paths:
        problems.append(f"{folder}/: no {kind} files (*.yaml)")
    out = []
    for path in paths:
        rel = f"{folder}/{path.name}"
        for item in _load_list(path, rel, key or folder, kind, model, problems, invalid):
            if item.id in files:
                problems.append(f"{rel}: {kind} '{item.id}' is also defined in {files[item.id]}")
                continue
            files[item.id] = rel
            out.append(item)
    return out


def _index(items: Iterable[Any], kind: str, file: str, problems: list[str]) -> dict[str, Any]:
    """Items by id; an id defined twice in one file is a problem."""
    out: dict[str, Any] = {}
    for it in items:
        if it.id in out:
            problems.append(f"{file}: {kind} '{it.id}' is defined twice")
        out[it.id] = it
    return out


QUALIFIERS = frozenset(
    [
        "right",
        "left",
        "bilateral",
        "unilateral",
        "upper",
        "lower",
        "middle",
        "anterior",
        "posterior",
        "medial",
        "lateral",
        "proximal",
        "distal",
        "lobe",
        "canal",
        "side",
        "new",
        "onset",
        "acute",
        "chronic",
        "subacute",
        "early",
        "late",
        "mild",
        "moderate",
        "severe",
        "recurrent",
        "first",
        "episode",
        "suspected",
        "probable",
        "likely",
        "physiological",
        "primary",
        "secondary",
        "uncomplicated",
        "complicated",
        "stage",
        "type",
        "grade",
        "congestive",
        "decompensated",
        "compensated",
        "bacterial",
        "viral",
        "fungal",
        "related",
        "acquired",
        "induced",
        "associated",
        "sided",
    ]
)
"""Words that qualify a diagnosis rather than name one: a parenthesised part made only of them
('Plantar fasciitis (left)', 'Atrial fibrillation (new onset)') is no name of its own, or
'left' would be a leak and the patient would deflect 'does your left heel hurt?'."""
BODY_SITES = frozenset(
    [
        *("leg", "legs", "arm", "arms", "hip", "knee", "ankle", "foot", "hand", "wrist"),
        *("elbow", "shoulder", "eye", "eyes", "ear", "ears", "lung", "kidney", "breast"),
        *("testis", "testicle", "ovary", "tube", "tubal", "sigmoid", "colon", "chest", "back"),
        *("neck", "head", "skin"),
    ]
)
"""...and neither is one made of qualifiers and body sites: 'Deep vein thrombosis (left leg)'
has no name 'left leg', or 'pain in my left leg' would be a leak."""


GENERIC_NAMES = frozenset(
    [
        *("disease", "syndrome", "infection", "disorder", "injury", "failure", "fever", "pain"),
        *("exacerbation", "attack", "reaction", "deficiency", "insufficiency", "lesion", "mass"),
        *("headache", "cough", "rash", "diarrhoea", "diarrhea", "vomiting", "fatigue"),
        *("flare", "episode", "presentation"),
    ]
)
"""A name's core that is only one of these words names no diagnosis ('Acute failure') or is a
complaint the patient must be able to say ('Acute cough')."""
_CAUSES = frozenset(["related", "acquired", "induced", "associated"])
"""The last part of a hyphenated cause qualifier ('alcohol-related', 'community-acquired')."""


def core_name(name: str) -> str | None:
    """A name without its qualifiers, as people say it: 'Acute pancreatitis' -> 'pancreatitis',
    'Septic arthritis of the right hip' -> 'Septic arthritis', 'Congestive heart failure' ->
    'heart failure'; None where nothing specific is left or nothing was cut."""
    head = re.split(r"\s+(?:of|in|with|due to|secondary to)\s+|,", name, maxsplit=1)[0]
    words = head.split()
    while words and (
        words[0].lower() in QUALIFIERS
        or words[0].isdigit()
        or len(words[0]) == 1
        or words[0].lower().split("-")[-1] in _CAUSES
    ):
        words.pop(0)
    while words and words[-1].lower() in QUALIFIERS:
        words.pop()
    core = " ".join(words)
    if len(core) < 4 or core.lower() in GENERIC_NAMES or core == " ".join(name.split()):
        return None
    return core


def name_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """A regex finding any of these diagnosis names as whole words in a text (a name with a
    parenthesised part is also found by each part alone, and by its core without qualifiers,
    `core_name`; names may end in punctuation).

    Short all-capital abbreviations ('UTI', 'MI', 'CAP') match case-sensitively, so 'cap' or
    'mi' in ordinary words do not count; longer names match in any case. Built once per list of
    names: every case and every patient asks for its diagnosis's pattern, and re's own cache
    (512 patterns) does not hold a run's worth of them.
    """
    return _name_pattern(tuple(names))


@lru_cache(maxsize=1024)
def _name_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """`name_pattern` of a tuple of names (hashable, so remembered)."""
    expanded: list[str] = []
    for n in names:  # "Croup (laryngotracheobronchitis)": the whole, "Croup" and the inner name
        expanded.append(n)
        m = re.fullmatch(r"\s*(.*?)\s*\(([^()]*)\)\s*(.*?)\s*", n)
        if m:
            expanded.append(f"{m.group(1)} {m.group(3)}".strip())
            inner = m.group(2).strip()
            words = set(re.findall(r"[a-z]+", inner.lower()))
            if len(inner) >= 4 and not words <= QUALIFIERS | BODY_SITES:
                expanded.append(inner)
    expanded += [c for c in map(core_name, expanded) if c]
    parts = []
    for n in dict.fromkeys(" ".join(e.split()) for e in expanded):
        if len(n) < 2:
            continue
        if len(n) <= 5 and n.isupper():
            parts.append(rf"(?-i:(?<!\w){re.escape(n)}(?!\w))")
        else:
            parts.append(rf"(?<!\w){re.escape(n)}(?!\w)")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _cross_check(kb: dict[str, Any], files: dict[str, str]) -> list[str]:
    """Cross-references between files: every id used must exist; wording must not leak."""
    problems: list[str] = []
    findings = kb["findings"]
    for c in kb["conditions"].values():
        f = f"{files[c.id]}: condition '{c.id}'"
        problems += _check_condition_findings(c, findings, f)
        problems += _check_condition_references(c, kb, f)
        problems += _check_condition_ages(c, f)
        problems += _check_condition_wording(c, findings, f)
    problems += _check_child_texts(kb)
    for v in kb["vitals"].values():
        missing = set(AGE_BANDS) - set(v.normal)
        if missing:
            problems.append(
                f"vitals.yaml: vital '{v.id}', field 'normal': missing bands {sorted(missing)}"
            )
    problems += _check_presentations(kb)
    for t in kb["tests"].values():
        for d in t.delay.values():
            if d < 0:
                problems.append(f"investigations: test '{t.id}', field 'delay': negative ({d})")
    problems += _check_drugs(kb)
    problems += _check_background(kb)
    return problems


def _check_condition_findings(c: Condition, findings: dict[str, Finding], f: str) -> list[str]:
    """A condition's findings exist and are listed once; its chief complaints (history
    findings) and red flags are among them."""
    problems: list[str] = []
    linked = {link.id for link in c.findings}
    for link in c.findings:
        if link.id not in findings:
            problems.append(f"{f}, field 'findings': unknown finding '{link.id}'")
    if len(linked) != len(c.findings):
        problems.append(f"{f}, field 'findings': a finding is listed twice")
    for cc in c.chief_complaint:
        if cc not in linked:
            problems.append(f"{f}, field 'chief_complaint': '{cc}' is not among its findings")
        elif cc in findings and findings[cc].category == "exam":
            problems.append(f"{f}, field 'chief_complaint': '{cc}' is an exam finding")
    for rf in c.red_flags:
        if rf not in linked:
            problems.append(f"{f}, field 'red_flags': '{rf}' is not among its findings")
    return problems


def _check_condition_references(c: Condition, kb: dict[str, Any], f: str) -> list[str]:
    """A condition's vitals, tests (valued as the test is), drugs and differential exist."""
    problems: list[str] = []
    tests, conditions = kb["tests"], kb["conditions"]
    for v in c.vitals:
        if v not in kb["vitals"]:
            problems.append(f"{f}, field 'vitals': unknown vital sign '{v}'")
    for t in c.tests:
        if t.id not in tests:
            problems.append(f"{f}, field 'tests': unknown test '{t.id}'")
        elif (t.value is None) != (tests[t.id].normal is None):
            want = "'value'" if tests[t.id].normal is not None else "'text'"
            problems.append(f"{f}, field 'tests': test '{t.id}' needs {want}")
    for d in (*c.treatments, *c.contraindicated):
        if d not in kb["drugs"]:
            problems.append(f"{f}: unknown drug '{d}' in treatments/contraindicated")
    for d in c.differential:
        if d not in conditions:
            problems.append(f"{f}, field 'differential': unknown condition '{d}'")
        elif d == c.id:
            problems.append(f"{f}, field 'differential': lists itself")
    return problems


def _check_condition_ages(c: Condition, f: str) -> list[str]:
    """No age band with prevalence lies outside the condition's age range."""
    problems: list[str] = []
    for band, w in c.prevalence.age_bands.items():
        lo, hi = AGE_BANDS[band]
        if w > 0 and (hi < c.age[0] or lo > c.age[1]):
            problems.append(
                f"{f}, field 'prevalence.age_bands': band '{band}' lies outside age {list(c.age)}"
            )
    return problems


def _check_condition_wording(c: Condition, findings: dict[str, Finding], f: str) -> list[str]:
    """No finding of the condition names its diagnosis; history findings of a condition that
    admits children have a caregiver's wording."""
    problems: list[str] = []
    leak = name_pattern([c.name, *c.synonyms])
    for link in c.findings:
        fd = findings.get(link.id)
        if fd is None:
            continue
        hit = leak.search(f"{fd.text} | {fd.text_child or ''}") if leak else None
        if hit:
            problems.append(
                f"{f}: finding '{fd.id}' text names the diagnosis ('{hit.group(0)}'); the "
                "patient must never reveal it"
            )
        if c.age[0] < CHILD_AGE and fd.category != "exam" and not fd.text_child:
            problems.append(
                f"{f}: finding '{fd.id}' needs 'text_child' (the condition admits children "
                f"under {CHILD_AGE}, whose caregiver answers)"
            )
    return problems


def _check_child_texts(kb: dict[str, Any]) -> list[str]:
    """A finding's caregiver wording differs from the patient's and uses only known slots."""
    problems: list[str] = []
    for fd in kb["findings"].values():
        if fd.text_child and fd.text_child.strip() == fd.text.strip():
            problems.append(
                f"{kb['finding_files'][fd.id]}: finding '{fd.id}', field 'text_child': is the "
                "same as 'text'; word it as the caregiver speaks, with {She}/{she} (subject), "
                "{her} (possessive) or {him} (object) slots for the child"
            )
        elif fd.text_child:
            try:
                fd.text_child.format(**dict.fromkeys(_SLOT_NAMES, ""))
            except (KeyError, IndexError, ValueError) as e:
                problems.append(
                    f"{kb['finding_files'][fd.id]}: finding '{fd.id}', field 'text_child': bad "
                    f"slot {e}; allowed: {{She}}, {{she}}, {{her}}, {{Her}}, {{him}}"
                )
    return problems


def _check_drugs(kb: dict[str, Any]) -> list[str]:
    """Each drug's interactions, cross-reactive allergy groups and contraindications name
    things the KB has."""
    problems: list[str] = []
    drugs, conditions, findings = kb["drugs"], kb["conditions"], kb["findings"]
    groups = {d.allergy_group for d in drugs.values() if d.allergy_group}
    classes = {d.drug_class for d in drugs.values()}
    for d in drugs.values():
        where = f"{kb['drug_files'][d.id]}: drug '{d.id}'"
        for x in d.interactions:
            if x.with_ not in drugs and x.with_ not in classes:
                problems.append(
                    f"{where}, field 'interactions': '{x.with_}' is neither a "
                    "drug id nor a drug class"
                )
        for g in d.cross_reactive:
            if g not in groups:
                problems.append(f"{where}, field 'cross_reactive': unknown allergy group '{g}'")
        for ci in d.contraindications:
            if ci not in conditions and ci not in findings and ci not in kb["comorbidity_ids"]:
                problems.append(
                    f"{where}, field 'contraindications': '{ci}' is not a "
                    "condition, finding or comorbidity id"
                )
    return problems


def _check_background(kb: dict[str, Any]) -> list[str]:
    """The background's comorbidity medicines, allergy groups and findings exist."""
    problems: list[str] = []
    bg: Background | None = kb["background"]
    if bg is None:
        return problems
    drugs = kb["drugs"]
    groups = {d.allergy_group for d in drugs.values() if d.allergy_group}
    for cm in bg.comorbidities:
        for m in cm.medications:
            if m not in drugs:
                problems.append(f"background.yaml: comorbidity '{cm.id}': unknown drug '{m}'")
    for a in bg.allergies:
        if a.group not in groups:
            problems.append(f"background.yaml: allergy '{a.group}' is no drug's allergy_group")
    for b in bg.findings:
        if b.id not in kb["findings"]:
            problems.append(f"background.yaml: unknown finding '{b.id}'")
    return problems


def _check_presentations(kb: dict[str, Any]) -> list[str]:
    """Each presentation: a known history complaint that names no member's diagnosis, known
    members that can be seen in its settings, at least 4 of them and 2 in every setting."""
    problems: list[str] = []
    findings, conditions = kb["findings"], kb["conditions"]
    for p in kb.get("presentations", {}).values():
        where = f"presentations: presentation '{p.id}'"
        fd = findings.get(p.complaint)
        if fd is None:
            problems.append(f"{where}, field 'complaint': unknown finding '{p.complaint}'")
        elif fd.category == "exam":
            problems.append(f"{where}, field 'complaint': '{p.complaint}' is an exam finding")
        seen: set[str] = set()
        for m in p.members:
            c = conditions.get(m.condition)
            if c is None:
                problems.append(f"{where}, field 'members': unknown condition '{m.condition}'")
                continue
            if m.condition in seen:
                problems.append(f"{where}, field 'members': '{m.condition}' is listed twice")
            seen.add(m.condition)
            extra = sorted(set(m.settings or ()) - set(p.settings))
            if extra:
                problems.append(
                    f"{where}, member '{m.condition}': settings {extra} are not the presentation's"
                )
            leak = name_pattern([c.name, *c.synonyms])
            if fd is not None and leak:
                hit = leak.search(f"{fd.text} | {fd.text_child or ''}")
                if hit:
                    problems.append(
                        f"{where}: complaint '{fd.id}' names member '{c.id}' ('{hit.group(0)}')"
                    )
            if fd is not None and c.age[0] < CHILD_AGE and not fd.text_child:
                problems.append(
                    f"{where}: complaint '{fd.id}' needs 'text_child' (member '{c.id}' admits "
                    f"children under {CHILD_AGE})"
                )
        for s in p.settings:
            n = len([m for m in p.members_in(s) if m.condition in conditions])
            if n < 2:
                problems.append(f"{where}: setting '{s}' has {n} member(s); at least 2 are needed")
    return problems


def load_kb(directory: Path | str | None = None) -> KnowledgeBase:
    """Load and validate the KB in `directory` (default: the bundled one); raise KBError listing
    every problem at once, so a half-loaded KB never reaches a run."""
    root = Path(directory) if directory is not None else KNOWLEDGE_DIR
    if not root.is_dir():
        raise KBError(root, [f"no such directory: {root}"])
    problems: list[str] = []
    invalid: set[str] = set()
    """Ids of items that failed validation: references to them are not reported again."""
    finding_files: dict[str, str] = {}
    findings = _load_dir(
        root, "findings", "finding", Finding, problems, finding_files, invalid=invalid
    )
    tests = _load_dir(
        root, "investigations", "test", LabTest, problems, key="tests", invalid=invalid
    )
    vitals = _load_list(root / "vitals.yaml", "vitals.yaml", "vitals", "vital", VitalSign, problems)
    drug_files: dict[str, str] = {}
    drugs = _load_dir(root, "drugs", "drug", Drug, problems, drug_files, invalid=invalid)
    files: dict[str, str] = {}
    conditions = _load_dir(
        root, "conditions", "condition", Condition, problems, files, invalid=invalid
    )
    presentations: list[Presentation] = []
    if (root / "presentations").is_dir():  # optional: a KB without them has no clusters
        presentations = _load_dir(
            root, "presentations", "presentation", Presentation, problems, invalid=invalid
        )
    generation = None
    if (root / "generation.yaml").is_file():  # optional: defaults apply without it
        generation = _load_file(root, "generation.yaml", Generation, problems)
    background = _load_file(root, "background.yaml", Background, problems)
    idx = {
        "findings": {f.id: f for f in findings},
        "tests": {t.id: t for t in tests},
        "vitals": _index(vitals, "vital", "vitals.yaml", problems),
        "drugs": {d.id: d for d in drugs},
        "conditions": {c.id: c for c in conditions},
        "background": background,
        "comorbidity_ids": {c.id for c in background.comorbidities} if background else set(),
        "finding_files": finding_files,
        "drug_files": drug_files,
        "presentations": {p.id: p for p in presentations},
    }
    problems += _check_unique_codes(conditions, files)
    problems += _not_about_invalid(_cross_check(idx, files), invalid)
    if problems:
        raise KBError(root, problems)
    assert background is not None
    return KnowledgeBase(
        findings=idx["findings"],
        tests=idx["tests"],
        vitals=idx["vitals"],
        conditions=idx["conditions"],
        drugs=idx["drugs"],
        background=background,
        presentations=idx["presentations"],
        generation=generation,
        version=f"{SCHEMA_VERSION}-{_hash_dir(root)}",
    )


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _load_file(root: Path, name: str, model: type[_ModelT], problems: list[str]) -> _ModelT | None:
    """One YAML file validated as a single `model`; None (its problems listed) if it cannot be
    read or is invalid."""
    raw = _read_yaml(root / name, name, problems)
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems.extend(_describe(name, "item", [], dict(err)) for err in e.errors())
        return None


def _check_unique_codes(conditions: list[Condition], files: dict[str, str]) -> list[str]:
    """No two conditions share an ICD-10-CM code, so a coded diagnosis matches one condition."""
    problems: list[str] = []
    codes: dict[str, str] = {}
    for c in conditions:
        if c.icd10 in codes and codes[c.icd10] != c.id:
            problems.append(
                f"{files[c.id]}: condition '{c.id}', field 'icd10': '{c.icd10}' is also the code "
                f"of '{codes[c.icd10]}'; codes must be unique so diagnoses can be matched"
            )
        codes[c.icd10] = c.id
    return problems


def _not_about_invalid(problems: list[str], invalid: set[str]) -> list[str]:
    """The cross-reference problems, less 'unknown' references to items that already failed
    validation (reported once, where they are defined)."""
    return [
        p
        for p in problems
        if not any(f"'{bad}'" in p.split("unknown", 1)[-1] for bad in invalid if "unknown" in p)
    ]


def _hash_dir(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.yaml")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


@cache
def default_kb() -> KnowledgeBase:
    """The bundled KB, loaded once per process."""
    return load_kb()
