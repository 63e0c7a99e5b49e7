"""Imported test results: what a test is called, and whether its result is abnormal.

Names (`test_names.yaml`): a test keeps the name the record gives it ("Chest_X-Ray" ->
"Chest X-Ray") and is orderable by that name, its common synonyms and abbreviations (CXR, chest
radiograph; FBC, CBC, full blood count; U/A, urinalysis), with the words in any order ("X-ray
knee" is "knee X-ray").

Flags (`reference_ranges.yaml`): a result is abnormal by, in order, the record's own words about
it ("(elevated)", "normal"), the record's own reference range, the analyte's reference range for
the unit, age and sex, and only then negation-aware text rules ("soft and non-tender" is normal;
"no consolidation" is normal; "shifting dullness absent" is normal but "absent bowel sounds" is
not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym.patients.errors import ImporterError

NAMES_FILE = Path(__file__).with_name("test_names.yaml")
RANGES_FILE = Path(__file__).with_name("reference_ranges.yaml")


def norm(text: str) -> str:
    """Lower case, punctuation to single spaces ('X-Ray_Chest' -> 'x ray chest')."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower().replace("&", " and ")).strip()


# ---- test names -----------------------------------------------------------------------------


class TestGroup(BaseModel):
    """One test or panel and the names it is ordered by."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    names: list[str] = Field(min_length=1)
    kb: str | None = None
    """The KB test id that is exactly this test."""
    panel: bool = False
    """A group of analytes: never linked to one analyte's KB id."""


class _NamesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    tests: list[TestGroup]


_FILLER = frozenset(
    {"of", "the", "a", "an", "findings", "finding", "results", "result", "study", "studies",
     "report", "level", "levels", "value", "values", "scan", "exam", "examination", "test",
     "tests", "testing", "with", "and", "for", "at", "on", "in"}
)  # fmt: skip
"""Words that do not change which test a name means (for the any-order comparison)."""
_SIDES = frozenset({"left", "right", "bilateral", "both", "lt", "rt"})
_MODALITIES = ("x ray", "xray", "radiograph", "ct", "mri", "ultrasound", "ultrasonography",
               "doppler", "ct angiography", "ct scan")  # fmt: skip


def _bag(name: str) -> frozenset[str]:
    words = [w for w in norm(name).replace("x ray", "xray").split() if w not in _FILLER]
    return frozenset(w[:-1] if len(w) > 4 and w.endswith("s") else w for w in words)


@dataclass(frozen=True)
class TestNames:
    """The synonym groups of `test_names.yaml`, indexed by normalised name and word bag."""

    groups: tuple[TestGroup, ...]

    def group(self, name: str) -> TestGroup | None:
        """The group a test name belongs to: exact (normalised) name, then the same words in
        any order (filler words and plurals aside)."""
        n, bag = norm(name), _bag(name)
        for g in self.groups:
            if any(norm(x) == n for x in g.names):
                return g
        if not bag:
            return None
        for g in self.groups:
            if any(_bag(x) == bag for x in g.names):
                return g
        return None

    def names_for(self, name: str, *context: str) -> list[str]:
        """Every name a test the record calls `name` is orderable by: the record's name (and
        with its context, e.g. the panel 'Urinalysis' for 'WBC'), its variants without a side
        and in either word order, and its group's synonyms."""
        shown = " ".join(name.replace("_", " ").split())
        out = [shown, *(f"{c} {shown}" for c in context if c)]
        words = [w for w in norm(shown).split() if w not in _SIDES and w not in ("of", "the")]
        if words:
            out.append(" ".join(words))
            text = " ".join(words)
            for mod in _MODALITIES:
                if text.startswith(mod + " ") or text.endswith(" " + mod):
                    rest = text.removeprefix(mod + " ").removesuffix(" " + mod).strip()
                    out += [f"{rest} {mod}", f"{mod} {rest}"]
        g = self.group(shown)
        if g is not None:
            out += g.names
        return list(dict.fromkeys(x for x in out if x.strip()))


@cache
def test_names(path: Path = NAMES_FILE) -> TestNames:
    """The test-name groups (validated; problems name the file and the entry)."""
    raw = _load(path)
    try:
        parsed = _NamesFile.model_validate(raw)
    except ValidationError as e:
        raise ImporterError(f"{path}: {_errors(e, raw, 'tests')}") from None
    return TestNames(tuple(parsed.tests))


# ---- reference ranges -----------------------------------------------------------------------


class Range(BaseModel):
    """One reference interval: for a sex and an age span (years, or days for newborns)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sex: Literal["female", "male", "any"] = "any"
    age: tuple[int, int] | None = None
    age_days: tuple[int, int] | None = None
    low: float
    high: float
    source: str

    def applies(self, age: int, age_days: float | None, sex: str) -> bool:
        """True for a patient of this age and sex ('unspecified' matches female and male)."""
        if self.sex != "any" and sex in ("female", "male") and self.sex != sex:
            return False
        if self.age_days is not None:
            return age_days is not None and self.age_days[0] <= age_days <= self.age_days[1]
        if self.age is None:
            return True
        if age == 0 and age_days is not None and age_days <= 28 and self.age[0] == 0:
            return True
        return self.age[0] <= age <= self.age[1] and not (age == 0 and self.age[0] > 0)


class Analyte(BaseModel):
    """An analyte, the names records give it, its units and reference ranges."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    names: list[str] = Field(min_length=1)
    unit: str
    units: dict[str, float]
    ranges: list[Range] = Field(min_length=1)
    only_in: list[str] = []
    """Only when the result sits under one of these panels (pH: a blood gas, not a urinalysis)."""

    def interval(
        self, age: int, age_days: float | None, sex: str
    ) -> tuple[float, float, str] | None:
        """(low, high, sources) for the patient; an unspecified sex gets the union of the
        female and male intervals."""
        hits = [r for r in self.ranges if r.applies(age, age_days, sex)]
        if not hits:
            return None
        if sex in ("female", "male"):
            hits = [r for r in hits if r.sex == sex] or hits
        return (
            min(r.low for r in hits),
            max(r.high for r in hits),
            ",".join(sorted({r.source for r in hits})),
        )


class _RangesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    analytes: list[Analyte]


@dataclass(frozen=True)
class ReferenceRanges:
    """The analytes of `reference_ranges.yaml`, by normalised name."""

    by_name: dict[str, Analyte]

    def analyte(self, name: str, panel: str = "") -> Analyte | None:
        """The analyte a result's name means ('Total_WBC_Count', 'Leukocyte count', 'Hb'),
        given the panel it sits in: in a urinalysis or CSF panel only that fluid's analytes
        (a urine sodium is never held to the serum range)."""
        n = norm(name)
        fluid = _fluid(norm(panel)) if not re.match(r"(serum|plasma|blood)\b", n) else None
        if fluid is not None or _fluid(n) is not None:
            f = fluid or _fluid(n)
            bare = re.sub(rf"^{f}\s+|\s+in\s+{f}\s+fluid$|\s+{f}$", "", n)
            return self.by_name.get(f"{f} {bare}")
        a = self._plain(n)
        if a is None:
            return None
        if a.only_in and not any(norm(p) in norm(panel) for p in a.only_in):
            return None
        return a

    def _plain(self, n: str) -> Analyte | None:
        if n not in self.by_name:
            n = re.sub(r"^(serum|plasma|blood|total|absolute)\s+", "", n)
        return self.by_name.get(n) or self.by_name.get(re.sub(r"\s+(level|count|value)$", "", n))


_FLUIDS = {
    "urine": r"urin\w*|\bua\b|\bu a\b",
    "csf": r"\bcsf\b|cerebrospinal|lumbar puncture",
    "synovial": r"synovial|joint|arthrocentesis",
    "stool": r"stool|f(?:a)?ecal",
    "pleural": r"pleural",
    "bal": r"\bbal\b|lavage",
}


def _fluid(text: str) -> str | None:
    """The body fluid other than blood a panel or result name is about, if any."""
    for name, rx in _FLUIDS.items():
        if re.search(rx, text):
            return name
    return None


@cache
def reference_ranges(path: Path = RANGES_FILE) -> ReferenceRanges:
    """The reference ranges (validated; problems name the file and the entry)."""
    raw = _load(path)
    try:
        parsed = _RangesFile.model_validate(raw)
    except ValidationError as e:
        raise ImporterError(f"{path}: {_errors(e, raw, 'analytes')}") from None
    by_name: dict[str, Analyte] = {}
    for a in parsed.analytes:
        for n in (a.id.replace("_", " "), *a.names):
            if norm(n) in by_name and by_name[norm(n)].id != a.id:
                raise ImporterError(f"{path}: name {n!r} is given to two analytes")
            by_name[norm(n)] = a
    return ReferenceRanges(by_name)


def _load(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ImporterError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ImporterError(f"{path}: not valid YAML ({e})".replace("\n", " ")) from None


def _errors(e: ValidationError, raw: object, key: str) -> str:
    out = []
    for x in e.errors()[:10]:
        loc = x["loc"]
        entry = ""
        if len(loc) > 1 and loc[0] == key and isinstance(raw, dict):
            items = raw.get(key) or []
            if isinstance(loc[1], int) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
                entry = f"entry '{items[loc[1]].get('id', loc[1])}' "
        out.append(f"{entry}{'.'.join(map(str, loc[2:] or loc))}: {x['msg']}")
    return "; ".join(out)


# ---- values ---------------------------------------------------------------------------------

_UNIT_ALIASES: tuple[tuple[str, str], ...] = (
    (r"(?:cells\s*)?(?:/|per\s+)\s*(?:μl|µl|ul|microliter|microlitre|mm3|mm\^3|mm³|cu\s*mm|"
     r"cubic\s+millimeter|cubic\s+millimetre|m3)\b", "/uL"),
    (r"(?:x\s*)?10\^?9\s*/\s*l\b", "x10^9/L"),
    (r"(?:x\s*)?10\^?3\s*/\s*(?:μl|µl|ul)\b", "x10^3/uL"),
    (r"\b(?:iu|u)\s*(?:/|per\s+)\s*l(?:iter|itre)?\b", "U/L"),
    (r"\bm(?:iu|u)\s*/\s*l\b", "mU/L"),
    (r"\b(?:μ|µ|u)(?:iu|u)\s*/\s*ml\b", "mU/L"),
    (r"\bmeq\s*/\s*l\b", "mmol/L"),
    (r"\bmmol\s*/\s*l\b", "mmol/L"),
    (r"\b(?:μ|µ|u)mol\s*/\s*l\b", "umol/L"),
    (r"\bpmol\s*/\s*l\b", "pmol/L"),
    (r"\bg(?:m)?\s*/\s*dl\b", "g/dL"),
    (r"\bg\s*/\s*l\b", "g/L"),
    (r"\bmg\s*/\s*dl\b", "mg/dL"),
    (r"\bmg\s*/\s*l\b", "mg/L"),
    (r"\bng\s*/\s*dl\b", "ng/dL"),
    (r"\b(?:μ|µ|u)g\s*/\s*dl\b", "ug/dL"),
    (r"\bmm\s*/\s*(?:h|hr|hour)\b", "mm/h"),
    (r"\bmosm\s*/\s*kg\b", "mOsm/kg"),
    (r"\bmm\s*hg\b", "mmHg"),
    (r"\bkpa\b", "kPa"),
    (r"\bcm\s*h2o\b", "cmH2O"),
    (r"\bmm\s*h2o\b", "mmH2O"),
    (r"\b(?:fl|(?:μ|µ|u)m\^?3|um3)\b", "fL"),
    (r"\b(?:s|sec|secs|seconds?)\b", "s"),
    (r"\b(?:min|mins|minutes?)\b", "min"),
    (r"(?:/|per\s+)\s*hpf\b", "/hpf"),
    (r"\bcopies\s*(?:/|per\s+)\s*ml\b", "copies/mL"),
    (r"%", "%"),
)  # fmt: skip
_UNIT_RES = tuple((re.compile(p, re.IGNORECASE), u) for p, u in _UNIT_ALIASES)
_NUMBER = re.compile(r"(?<![\w.])([<>≤≥]=?\s*)?(-?\d{1,3}(?:,\d{3})+|-?\d+(?:\.\d+)?)")
_RECORD_RANGE = re.compile(
    r"\((?:normal|reference)(?:\s+(?:range|value|interval))?\s*[:,]?\s*"
    r"(?:(?P<lo>-?\d[\d,.]*)\s*(?:-|–|to)\s*(?P<hi>-?\d[\d,.]*)|(?P<lt>[<≤])\s*(?P<cap>\d[\d,.]*))"
    r"[^)]*\)",
    re.IGNORECASE,
)
_NO_RESULT = re.compile(
    r"^\s*(?:pending|not (?:provided|specified|mentioned|available|indicated|done|performed|"
    r"reported|applicable|given|recorded)|n/?a|unknown|awaited|to be (?:done|determined)|"
    r"optional|none available|no data|(?:data|details?|information) (?:are |is )?not "
    r"(?:provided|specified|available|given))\b",
    re.IGNORECASE,
)
_SUGGESTION = re.compile(
    r"\b(?:could|can|may|might|should|would) be (?:considered|performed|done|ordered|useful|"
    r"helpful|obtained)|\bif (?:clinical )?suspicion|\bexpected to show\b|\bconsider(?:ed)? "
    r"(?:an?|the)\b|\bnot (?:typically )?(?:indicated|necessary)\b|\bnot indicated\b|"
    r"\bwould (?:show|reveal|demonstrate)\b",
    re.IGNORECASE,
)
SUGGESTION_KEYS = re.compile(
    r"^(suggestions?|recommend\w*|optional|plan|next_?steps?|further_?(?:tests?|work\w*)|"
    r"considerations?|notes?|comments?_?for_?doctor)$",
    re.IGNORECASE,
)
"""Test_Results keys whose text proposes a test instead of reporting one."""


@dataclass(frozen=True)
class Value:
    """A result's number, its unit (normalised), a bound ('<', '>') and the record's range."""

    number: float | None
    unit: str
    bound: str = ""
    record_range: tuple[float | None, float | None] | None = None


def _num(text: str) -> float:
    return float(text.replace(",", "").rstrip("."))


def parse_value(text: str) -> Value:
    """'6,200 /μL' -> 6200 /uL; '0.8% (normal range: 2-6%)' -> 0.8 % with (2, 6);
    '> 100,000 copies/mL' -> 100000 with bound '>'; '12–16/hpf' -> no number (a span)."""
    rr: tuple[float | None, float | None] | None = None
    m = _RECORD_RANGE.search(text)
    body = text
    if m:
        try:
            if m.group("lo"):
                rr = (_num(m.group("lo")), _num(m.group("hi")))
            else:
                rr = (None, _num(m.group("cap")))
        except ValueError:
            rr = None
        body = text[: m.start()] + " " + text[m.end() :]
    body = re.sub(r"\([^)]*\)", " ", body)  # other remarks in brackets
    n = _NUMBER.search(body)
    if n is None:
        return Value(None, "", "", rr)
    after = body[n.end() : n.end() + 40]
    bound = (n.group(1) or "").strip()[:1]
    number = _num(n.group(2))
    span = re.match(r"\s*(?:-|–|to)\s*(\d[\d,]*(?:\.\d+)?)", after)
    if span:  # '12-16/hpf', '0-5 /HPF': a span, judged by its upper end
        number, bound = _num(span.group(1)), "span"
        after = after[span.end() :]
    unit = ""
    for rx, u in _UNIT_RES:
        um = rx.match(after.strip()) if u != "%" else re.match(r"\s*%", after)
        if um:
            unit = u
            break
    return Value(number, unit, bound, rr)


# ---- flags ------------------------------------------------------------------------------------

Basis = Literal["record", "record_range", "range", "text", "none"]


@dataclass(frozen=True)
class Flag:
    """Whether a result is abnormal and why; `abnormal` is None for no result at all
    ('Pending', 'Not provided')."""

    abnormal: bool | None
    basis: Basis
    reference: str = ""
    """The interval used, e.g. '12.0-16.0 g/dL (usmle)'."""
    direction: str = ""
    """'HIGH' or 'LOW' where a range says which side."""


_RECORD_ABNORMAL = re.compile(
    r"\b(elevated|raised|high|higher|increased|low|lower|decreased|reduced|diminished|"
    r"abnormal|positive|prolonged|deficient|markedly|significantly|slightly acidic|acidic|"
    r"alkalotic|acidotic|thrombocytosis|thrombocytopenia|leuko?cytosis|anemia|anaemia|"
    r"too numerous to count|numerous|present|detected|tnct)\b",
    re.IGNORECASE,
)
_RECORD_NORMAL = re.compile(
    r"\b(normal|within normal limits|within (?:the )?(?:normal|reference) range|wnl|"
    r"unremarkable|negative|non-?reactive|not detected|absent|none|nil|clear)\b",
    re.IGNORECASE,
)


def flag_result(
    name: str,
    text: str,
    *,
    age: int,
    sex: str,
    age_days: float | None = None,
    panel: str = "",
    report: bool = True,
) -> Flag:
    """Is a test result abnormal? The record's words, then its own range, then the reference
    range for the analyte, unit, age and sex, then the negation-aware text rules (`report`: a
    test report that names a finding and says nothing normal counts as abnormal)."""
    t = " ".join(str(text).split())
    if not t or _NO_RESULT.match(t) or _SUGGESTION.search(t):
        return Flag(None, "none")
    if re.match(r"^\s*(?:[1-4]\s*\+|\+{1,4}(?!\w)|trace\b)", t, re.IGNORECASE):
        return Flag(True, "text")  # a dipstick grade: anything above negative
    v = parse_value(t)
    words = _words_verdict(_RECORD_RANGE.sub(" ", t)) if v.number is not None else None
    if words is not None:
        return Flag(words, "record")
    if v.number is not None and v.record_range is not None:
        lo, hi = v.record_range
        low = lo is not None and v.number < lo
        high = hi is not None and v.number > hi
        shown = f"{'' if lo is None else f'{lo:g}'}-{'' if hi is None else f'{hi:g}'}"
        side = "HIGH" if high else "LOW" if low else ""
        return Flag(low or high, "record_range", f"{shown} (record)", side)
    if v.number is not None:
        a = reference_ranges().analyte(name, panel)
        if a is not None and (v.unit in a.units or (not v.unit and "" in a.units)):
            iv = a.interval(age, age_days, sex)
            if iv is not None:
                lo, hi, src = iv
                x = v.number * a.units[v.unit]
                if v.bound == "<":
                    low, high = x <= lo and lo > 0, False
                elif v.bound == ">":
                    low, high = False, x >= hi
                else:
                    low, high = x < lo, x > hi
                side = "HIGH" if high else "LOW" if low else ""
                shown = f"{lo:g}-{hi:g} {a.unit} ({src})".strip()
                return Flag(low or high, "range", shown, side)
        return Flag(False, "none")  # a number no range covers: not flagged on a guess
    if text_abnormal(t):
        return Flag(True, "text")
    # a report that names a finding and says nothing normal ('Patent ductus arteriosus',
    # 'Congenital cataracts') reports an abnormality
    named = len(re.findall(r"[A-Za-z]{3,}", t)) >= 2 and not _NORMAL_TEXT.search(t)
    return Flag(named and report, "text")


def _words_verdict(text: str) -> bool | None:
    """The record's own verdict on a numeric result ('13 g/dL (low)', '280,000 (normal)'):
    True, False, or None when it gives none."""
    remarks = " ".join(re.findall(r"\(([^)]*)\)", text)) + " " + re.sub(r"\([^)]*\)", " ", text)
    remarks = re.sub(r"\d[\d,.]*", " ", remarks)
    if _RECORD_ABNORMAL.search(remarks) and not _negated(remarks, _RECORD_ABNORMAL):
        return True
    if _RECORD_NORMAL.search(remarks):
        return False
    return None


def _negated(text: str, rx: re.Pattern[str]) -> bool:
    m = rx.search(text)
    return bool(m and _NEG_BEFORE.search(text[max(0, m.start() - 40) : m.start()]))


# ---- negation-aware text rules ---------------------------------------------------------------

_ABNORMAL_TEXT = re.compile(
    r"\b(elevated|raised|high|low|decreased|increased|reduced|diminished|positive|abnormal\w*|"
    r"detected|deficien\w*|enlarged|enlargement|dilat\w*|mass(?:es)?|lesions?|fractures?|"
    r"consolidation|opacit\w*|effusions?|infiltrat\w*|thicken\w*|stenosis|occlu\w*|"
    r"ha?emorrhag\w*|bleed\w*|infarct\w*|growth|isolated|prolonged|shortened|depress\w*|"
    r"inverted|blocked|demyelinat\w*|tachycardi\w*|bradycardi\w*|fibrillation|"
    r"hypo\w+|hyper\w+|tender\w*|atroph\w*|dislocat\w*|ruptur\w*|tears?|torn|perforat\w*|"
    r"obstruct\w*|herniat\w*|ulcer\w*|atypical|malignan\w*|carcinoma|tumou?rs?|metasta\w*|"
    r"cysts?|cystic|calcifi\w*|granulom\w*|necros\w*|o?edema\w*|ascites|cardiomegaly|"
    r"thromb\w*|clots?|embol\w*|aneurysm\w*|dissection|spikes?|sharp waves|swelling|swollen|"
    r"murmurs?|crackles|rales|wheez\w*|stridor|rub|distension|distended|guarding|rigidity|"
    r"erythema\w*|rash|jaundice|icter\w*|pallor|cyanosis|clubbing|nodules?|nodular|"
    r"plaques?|papules?|vesicles?|pustules?|crusts?|blisters?|weak\w*|palsy|paralysis|"
    r"ptosis|nystagmus|ataxi\w*|tremor|spasticity|clonus|mutation|diplococci|organisms|"
    r"bacteria|rods|cocci|gram[- ]negative|gram[- ]positive|lymphocytosis|blasts|immature|"
    r"smudge|compression|narrowing|notching|double bubble|ground[- ]glass|bronchograms|"
    r"widening|air|fluid level|pneumo\w+|free air|inflammation|inflamed|infection|"
    r"evidence of|consistent with|suggest\w*|indicat\w*|confirm\w*|compatible with|"
    r"monoclonal|cells with|present|presence|cloudy|turbid|purulent|bloody|numerous|"
    r"reddish|dysplastic|increased|proliferative|sluggish|letharg\w*|tense|bulging|drowsy|"
    r"confus\w*|irritab\w*|mottl\w*|pale|cataracts?|loss|failed|fails?|slow\w*|"
    r"deformit\w*|scratch marks|excoriat\w*|violaceous|patent|defects?|hypertroph\w*|"
    r"stiff\w*|spasm|contractures?|crepitus|effusion|ptosis|fasciculations?)\b",
    re.IGNORECASE,
)
_NORMAL_TEXT = re.compile(
    r"\b(normal|unremarkable|negative|within normal limits|within (?:the )?(?:normal|reference) "
    r"range|wnl|no abnormalit\w*|clear|not detected|non-?reactive|none|nil|benign|intact|"
    r"symmetric\w*|regular|soft|equal|reactive|midline|improved|pending|rh\W*negative|"
    r"blood group|normocytic|normochromic|within)\b",
    re.IGNORECASE,
)
_NEG_BEFORE = re.compile(
    r"(?:\b(?:no|not|nor|without|negative for|absence of|absent|free of|rul(?:ed|ing|es) out|"
    r"no evidence of|no signs? of|denies|none of|nil)\b|\b(?:non|un)-?)[^.;:]*$",
    re.IGNORECASE,
)
_SCOPE_END = re.compile(r"\b(?:but|however|although|though|except|yet|while)\b|[.;:]", re.I)
_PREFIXED = re.compile(r"\b(?:non|un|in)-", re.IGNORECASE)
NORMALLY_PRESENT = re.compile(
    r"\b(pulses?|reflex\w*|bowel sounds|breath sounds|air entry|red reflex|heart sounds|"
    r"sensation|movements?|light reflex|gag|corneal|pupillary|peristalsis|fetal heart|"
    r"ganglion cells|response)\b",
    re.IGNORECASE,
)
"""What is normally there, so that its absence is the finding ('absent bowel sounds')."""
_POST_ABSENT = re.compile(r"\b(?:absent|not (?:seen|present|detected|observed|noted|palpable))\b")
"""'Shifting dullness absent': a postfix negation of what precedes it."""


def text_abnormal(text: str) -> bool:
    """A free-text result or finding is abnormal if it names an abnormality that no negation
    covers: 'no consolidation', 'soft and non-tender', 'negative for blood' and 'shifting
    dullness absent' are normal; 'absent bowel sounds' and 'reduced air entry' are not."""
    for clause in _SCOPE_END.split(text):
        c = clause.strip()
        if not c:
            continue
        if _clause_abnormal(c):
            return True
    return False


def _clause_abnormal(c: str) -> bool:
    low = c.lower()
    for m in _ABNORMAL_TEXT.finditer(low):
        word = m.group(0)
        before = low[: m.start()]
        if _PREFIXED.search(low[max(0, m.start() - 4) : m.start() + 1]):
            continue  # non-tender, un-remarkable
        if word in ("absent",) or word.startswith("absen"):
            continue
        if word in ("present", "presence") and NORMALLY_PRESENT.search(low):
            continue  # 'pulses present'
        if word in ("evidence of", "consistent with", "suggest", "indicat", "compatible with",
                    "confirm") or word.startswith(("suggest", "indicat", "confirm")):  # fmt: skip
            if _NEG_BEFORE.search(before) or re.search(r"\bnormal\b", low[m.end() :]):
                continue
            return True
        if word == "air" and not re.search(r"free air|air[- ]fluid|mediastinal air", low):
            continue
        if word in ("regular", "growth") and re.search(r"\bno growth\b|\bregular\b", low):
            continue
        if _NEG_BEFORE.search(before):
            continue
        if _POST_ABSENT.search(low[m.end() :]) and not NORMALLY_PRESENT.search(word):
            continue  # 'shifting dullness absent', 'masses not palpable'
        return True
    # 'absent bowel sounds', 'reflexes absent': the absence of what is normally there
    return bool(re.search(r"\b(absent|absence of)\b", low) and NORMALLY_PRESENT.search(low))


def is_no_result(text: str) -> bool:
    """True for text that is not a result: 'Pending', 'Not provided', 'Not specified', a
    suggestion to order a test ('could be considered if suspicion persists')."""
    t = " ".join(str(text).split())
    return not t or bool(_NO_RESULT.match(t) or _SUGGESTION.search(t))


_META_TAIL = re.compile(
    r"[,;]?\s*(?:but\s+)?(?:the\s+)?(?:data|details?|information|specifics|results?)\s+"
    r"(?:are\s+|is\s+)?not\s+(?:provided|specified|available|given|mentioned)\b[^.;]*"
    r"|[,;]?\s*(?:but\s+)?imagine\b[^.;]*",
    re.IGNORECASE,
)
"""Words about the record inside a finding ('..., details not specified')."""


def without_meta(text: str) -> str:
    """A finding without the record's remarks about itself: 'Bilateral decreased hearing,
    details not specified' -> 'Bilateral decreased hearing'; '' if nothing else is left."""
    t = _META_TAIL.sub("", str(text)).strip(" ,;.")
    return "" if not t or is_no_result(t) else t


def is_pending(text: str) -> bool:
    """True for a result that is awaited ('Pending', 'Pending at the time of examination')."""
    return bool(re.match(r"^\s*(pending|awaited)\b", str(text), re.IGNORECASE))
