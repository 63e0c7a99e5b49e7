"""AgentClinic's NEJM image-challenge cases (JSONL: `image_url`, `question`, `patient_info`,
`physical_exams`, `answers`) -> Cases.

- `patient_info` (the patient actor's brief) is the patient's history (`history_from_text`);
- the `question` (the vignette written for the doctor) gives the examination findings and any
  test result `physical_exams` lacks; its history sentences are what `patient_info` tells;
- `physical_exams` (the measurement actor's brief) gives the test results, each named;
- `answers` gives the diagnosis (the option marked correct) and the differential (the others);
- the image (`image_url`) is referenced in the record (`case.extra["image_url"]`). Offline it
  cannot be fetched, so the case plays text-only and the import says so once; where the user
  points to a local file or folder of images (`images=`), the matching picture is attached as
  an image artefact, revealed by ordering the image (or the test it shows).

A line that cannot be imported is reported with its file, line and field, and the rest of the
file plays, as for the MedQA-shaped cases (importers/agentclinic.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from clinicgym.patients.cases.case import Case, Diagnosis
from clinicgym.patients.importers.demographics import (
    parse_age,
    sex_from_pronouns,
    sex_in_words,
)
from clinicgym.patients.importers.exam_text import finding_clauses
from clinicgym.patients.importers.freetext import (
    CaseBuilder,
    KBLinker,
    diagnosis_for,
    lineage,
    linker_for,
)
from clinicgym.patients.importers.problems import ImportProblem, ImportReport, import_jsonl
from clinicgym.patients.importers.record_history import add_passage
from clinicgym.patients.importers.record_tests import TestsOutcome, add_tests
from clinicgym.patients.importers.results import test_names
from clinicgym.patients.importers.text import norm
from clinicgym.patients.knowledge.kb import KnowledgeBase

FORMAT = "agentclinic_nejm"
IMAGE_CONCEPT = "case_image"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
IMAGE_NAMES = ["image", "images", "the image", "case image", "clinical image", "picture",
               "photograph", "photo", "clinical photograph", "NEJM image"]  # fmt: skip
TEXT_ONLY_NOTE = (
    "{n} of {total} NEJM cases reference an image by URL that is not attached (no local copy "
    "given with --case-images); they play text-only"
)


def read_nejm(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    limit: int | None = None,
    strict: bool = False,
    images: Path | str | None = None,
) -> list[Case]:
    """Read an AgentClinic NEJM JSONL file into Cases (see `import_nejm`); problems are
    CaseImportWarnings, or with `strict=True` fail the file."""
    report = import_nejm(path, kb, limit=limit, images=images)
    report.check(strict)
    report.warn()
    return report.cases


NEJM_KEYS = frozenset({"question", "patient_info", "answers"})
"""Keys every NEJM-shaped AgentClinic record has (with `image_url` and `physical_exams`)."""


def detects(path: Path, head: Any) -> bool:
    """A JSONL file whose first record has the NEJM-shaped keys (`NEJM_KEYS`)."""
    return isinstance(head, dict) and set(head) >= NEJM_KEYS


def read(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    limit: int | None = None,
    images: Path | str | None = None,
) -> ImportReport:
    """The format registry's reader (`importers/external.py`): `import_nejm`."""
    return import_nejm(path, kb, limit=limit, images=images)


def import_nejm(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    limit: int | None = None,
    images: Path | str | None = None,
) -> ImportReport:
    """Every case of an AgentClinic NEJM JSONL file that can be imported, every problem by
    line and field, and a note if cases play text-only for want of their image."""
    linker = linker_for(kb)
    folder = Path(images) if images is not None else None

    def make(raw: Any, file: str, line: int, index: int) -> tuple[Case | None, list[ImportProblem]]:
        return nejm_case(raw, kb, linker, file=file, line=line, index=index, images=folder)

    report = import_jsonl(path, FORMAT, make, limit=limit)
    missing = [c for c in report.cases if c.extra.get("image") == "not attached"]
    if missing:
        report.notes.append(TEXT_ONLY_NOTE.format(n=len(missing), total=len(report.cases)))
    return report


def history_from_text(b: CaseBuilder, text: str, *, source: str) -> int:
    """The patient actor's brief ('You are a 55-year-old woman who has noticed ...') as history
    statements on `b` (record_history.add_passage: lists, negations), the brief's instructions
    to the actor left out; returns the number of sentences."""
    body = re.sub(r"\*\*[^*]+\*\*:?", " ", text)  # markdown headings of the brief
    body = re.sub(
        r"^\s*(?:for (?:your|the) role as (?:a )?patient(?: actor)?|as a patient actor|for the "
        r"patient actor)[^,:]*[,:]\s*(?:here's[^:]*:\s*)?",
        "",
        body,
        flags=re.I,
    )
    body = re.sub(r"(?:^|\s)-\s+", ". ", body)
    n = 0
    for sentence in re.split(r"(?<=[.!?])\s+|\s*\d+\.\s+(?=[A-Z*])", body):
        s = sentence.strip(" .:-")
        if not s:
            continue
        n += 1
        if _ACTOR_META.search(s) or len(s.split()) < 2:
            continue
        s = re.sub(r"^(?:you\s+(?:are|'re)\s+an?\s+\d+[- ]year[- ]old\s+\w+)\s*(?:who\s+)?", "", s,
                   flags=re.I)  # fmt: skip
        s = _first_person(s)
        if len(s.split()) >= 2:  # split into statements, negations kept, said as it is
            add_passage(b, s, heading="symptoms", source=source)
    return n


_ACTOR_META = re.compile(
    r"^(?:mention|remember|describe|note)\b|\byour knowledge is limited|"
    r"\b(?:for (?:your|the) role|as a patient actor|patient actor|remember,|you are not aware|"
    r"you(?:'re| are) not aware|you haven't (?:seen|been told)|don't know the details|"
    r"do not know (?:your|the)|not been informed|here's (?:what|the)|minimal information|"
    r"convey|portray)",
    re.IGNORECASE,
)


def _first_person(s: str) -> str:
    s = re.sub(r"\byou've\b", "I've", s, flags=re.I)
    s = re.sub(r"\byou're\b", "I'm", s, flags=re.I)
    s = re.sub(r"\byou (are|were|have|had|feel|felt|noticed|began|experience|underwent)\b",
               lambda m: "I " + ("am" if m.group(1).lower() == "are" else m.group(1)), s,
               flags=re.I)  # fmt: skip
    s = re.sub(r"\byourself\b", "myself", s, flags=re.I)
    s = re.sub(r"\byour\b", "my", s, flags=re.I)
    subject = r"(^|[,;:]\s*|\b(?:when|where|that|because|and|but|if|which|as|so|what)\s+)you\b"
    s = re.sub(subject, lambda m: m.group(1) + "I", s, flags=re.I)
    s = re.sub(r"\bI (were)\b", "I was", s)
    s = re.sub(r"\byou\b", "me", s, flags=re.I)
    return s[:1].upper() + s[1:]


# ---- one case -------------------------------------------------------------------------------


def nejm_case(
    raw: Any,
    kb: KnowledgeBase,
    linker: KBLinker,
    *,
    file: str,
    line: int | None,
    index: int,
    images: Path | None = None,
) -> tuple[Case | None, list[ImportProblem]]:
    """One NEJM record -> (Case or None, problems)."""

    def problem(field: str, message: str, skipped: bool = True) -> ImportProblem:
        return ImportProblem(file, line, field, message, skipped)

    if not isinstance(raw, dict):
        return None, [problem("", f"expected a JSON object, got {type(raw).__name__}")]
    question, info, problems = _case_texts(raw, problem)
    answer, others = _answers(raw.get("answers"), linker)
    if answer is None:
        problems.append(
            problem("answers", "expected a list of {text, correct} with one marked correct")
        )
    age, detail = parse_age(question)
    if age is None:
        age, detail = parse_age(info)
    if age is None:
        problems.append(problem("question", "no age (expected e.g. 'A 55-year-old woman')"))
    if any(p.skipped for p in problems):
        return None, problems
    assert age is not None and answer is not None
    first = re.split(r"(?<=[.!?])\s+", question.strip())[0]
    sex = sex_in_words(first) or sex_from_pronouns([question, info])
    if sex is None:
        problems.append(
            problem("question", "no sex and no pronoun for the patient; 'unspecified'", False)
        )
    b = CaseBuilder(kb, linker, min(age, 120), sex or "unspecified", age_detail=detail)
    history_from_text(b, info, source=f"{FORMAT}:patient_info")
    if not b.open_with_first_symptom():
        problems.append(problem("patient_info", "no symptom to open with"))
        return None, problems
    parts = vignette_parts(question)
    tests = _exam_and_tests(b, raw, parts)
    url = str(raw.get("image_url") or "")
    case_id = f"{FORMAT}-{index:04d}"
    local = find_image(images, url, case_id, line, index) if url or images else None
    extra = _case_extra(b, question, [answer, *others], tests, parts, url, local)
    emergency = re.search(r"emergency department|\bED\b|emergency room", question, re.I)
    where = f"{file} line {line}" if line is not None else file
    case = b.build(
        case_id=case_id,
        setting="emergency" if emergency else "primary_care",
        diagnosis=answer,
        differential=others,
        lineage=lineage(FORMAT, where, index),
        extra=extra,
    )
    return case, problems


def _case_texts(
    raw: dict[str, Any], problem: Callable[[str, str], ImportProblem]
) -> tuple[str, str, list[ImportProblem]]:
    """The record's case text and patient brief ('' when missing or no text, with a problem
    for each)."""
    problems: list[ImportProblem] = []
    question = raw.get("question")
    info = raw.get("patient_info")
    if not isinstance(question, str) or not question.strip():
        problems.append(problem("question", f"expected the case text, got {question!r:.40}"))
        question = ""
    if not isinstance(info, str) or not info.strip():
        problems.append(problem("patient_info", f"expected the patient's brief, got {info!r:.40}"))
        info = ""
    return question, info, problems


def _exam_and_tests(b: CaseBuilder, raw: dict[str, Any], parts: VignetteParts) -> TestsOutcome:
    """Add the vignette's exam findings, the `physical_exams` results and the vignette's tests
    those results do not already cover; return the tests added."""
    for system, text in parts.exam:
        b.add_exam(text, system=system, source=f"{FORMAT}:question")
    pe = raw.get("physical_exams")
    tests = add_tests(b, pe_results(pe), source=f"{FORMAT}:physical_exams")
    extra_tests = _uncovered(parts.tests, tests, [f["text"] for f in b.facts])
    if extra_tests:
        more = add_tests(b, extra_tests, source=f"{FORMAT}:question")
        tests.panels.update(more.panels)
        tests.names.update(more.names)
        tests.tests.extend(more.tests)
        tests.not_placed.extend(more.not_placed)
    return tests


def _case_extra(
    b: CaseBuilder,
    question: str,
    options: list[Diagnosis],
    tests: TestsOutcome,
    parts: VignetteParts,
    url: str,
    local: Path | None,
) -> dict[str, Any]:
    """The case's format-specific extras: the doctor's objective (the vignette's last line),
    the answer options, test panels and names, and whether its image is attached."""
    extra: dict[str, Any] = {
        "format": FORMAT,
        "objective": question.strip().splitlines()[-1] if question.strip() else "",
        "options": [d.name for d in options],
        "panels": tests.panels,
        "test_names": tests.names,
        "image_url": url or None,
        "image_tests": parts.image_tests,
    }
    if local is not None:
        _attach_image(b, extra, local, tests, parts)
    elif url:
        extra["image"] = "not attached"
    return extra


def _attach_image(
    b: CaseBuilder, extra: dict[str, Any], local: Path, tests: TestsOutcome, parts: VignetteParts
) -> None:
    """Make the case's local picture an imaging result the doctor can order, by the names an
    image goes by and the vignette's image tests."""
    b.add(
        category="imaging",
        concept=IMAGE_CONCEPT,
        text="Image: the case's published picture is attached.",
        value=local.name,
        abnormal=True,
        salience="should_ask",
        how_revealed="order",
        modality="image",
        source=f"{FORMAT}:image_url",
    )
    extra["images"] = {IMAGE_CONCEPT: str(local.resolve())}
    extra["test_names"] = {
        **tests.names,
        IMAGE_CONCEPT: [*IMAGE_NAMES, *parts.image_tests],
    }
    extra["image"] = "attached"


def _answers(raw: Any, linker: KBLinker) -> tuple[Diagnosis | None, list[Diagnosis]]:
    """The correct option as the diagnosis and the others as the differential."""
    if not isinstance(raw, list):
        return None, []
    options = [a for a in raw if isinstance(a, dict) and str(a.get("text", "")).strip()]
    right = [a for a in options if a.get("correct") is True]
    if len(right) != 1:
        return None, []

    def dx(a: dict[str, Any]) -> Diagnosis:
        return diagnosis_for(" ".join(str(a["text"]).split()), linker)

    return dx(right[0]), [dx(a) for a in options if a is not right[0]]


# ---- the vignette ---------------------------------------------------------------------------

IMAGE_REF = re.compile(
    r"\s*\((?:(?:left|right|middle|top|bottom|center|centre|inset|box|arrows?|arrowheads?|"
    r"asterisks?|shown|panel [a-z]|upper|lower)[^()]*)\)",
    re.IGNORECASE,
)
_SHOWN = re.compile(r"\b(?:is|are) shown\b|\bas shown\b", re.IGNORECASE)
_EXAM = re.compile(
    r"\b(?:physical|ophthalmologic|neurologic\w*|lung|cardiac|abdominal|skin|dermatologic|"
    r"otoscopic|fundoscopic|rectal|pelvic)\s+examination\b|\bon examination\b|\bauscultation\b|"
    r"\bwere observed\b|\bwas observed\b|\bwas noted\b|\bwere noted\b|\bpalpable\b",
    re.IGNORECASE,
)
_EXAM_LEAD = re.compile(
    r"^.*?\b(?:was|were) noted to have\s+|"
    r"^(?:on\s+)?(?:the\s+|an?\s+)?(?:physical|ophthalmologic|neurologic\w*|lung|cardiac|abdominal|skin)?"
    r"\s*examination\s*(?:at the current presentation\s*)?(?:,|was notable for|showed|revealed|"
    r"showed that|was)?\s*(?:there (?:was|were)\s+)?|^auscultation of\s+",
    re.IGNORECASE,
)
_TEST = re.compile(
    r"^(?P<name>.{3,140}?)\s+(?:showed|revealed|demonstrated|identified|was notable for|"
    r"were notable for|was positive for|were positive for|was negative for|were negative for|"
    r"were negative|was negative|was positive|were positive|was normal|were normal|"
    r"confirmed|detected)\b\s*(?P<result>.*)$",
    re.IGNORECASE,
)
_TESTISH = re.compile(
    r"\b(laborator\w*|lab|tests?|testing|biops\w*|radiograph\w*|x-ray|ct|tomography|mri|"
    r"ultraso\w*|echocardiogra\w*|catheteri[sz]ation|serum|smear|cultures?|urinalysis|"
    r"electrophoresis|immunofixation|stain\w*|lavage|bronchoscopy|laryngoscopy|dermoscopy|"
    r"endoscopy|sequencing|count|level|histopatholog\w*|specimen|antibod\w*|assay|studies|"
    r"analysis|marrow|aspirate|microscop\w*)\b",
    re.IGNORECASE,
)
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("skin", r"skin|rash|lesion|papule|plaque|macule|patch|nodule|ulcer|telangiect|pigment|"
             r"crust|blister|vesic|calcinosis"),
    ("eyes", r"\beye|conjunctiv|scler|cornea|pupil|visual acuity|eyelid|retina|fundus|lens\b"),
    ("ent", r"pharyn|throat|tonsil|\bear|nasal|\bnose|laryn|vocal|oral|mouth|tongue|lips?\b"),
    ("respiratory", r"\blung|crackle|wheez|breath sounds|pleural|respirat"),
    ("cardiovascular", r"murmur|\bheart\b|jugular|volume overload|pulses?\b|oedema|edema"),
    ("abdominal", r"hepat|spleen|splen|abdom|ascites|liver"),
    ("genitourinary", r"penil|penis|scrot|testi|genital|vulv|vagin"),
    ("musculoskeletal", r"patell|knee|joint|tendon|extend|flex|gait|walk|contracture|muscle"),
    ("neurological", r"neuropath|sensory|sensation|reflex|weakness|cranial|numb"),
    ("general", r"lymph|node"),
)  # fmt: skip


class VignetteParts:
    """The doctor's vignette sorted: exam findings by system, tests, image references."""

    def __init__(self) -> None:
        self.exam: list[tuple[str, str]] = []
        self.tests: dict[str, str] = {}
        self.image_tests: list[str] = []
        self.history: list[str] = []
        self.meta: list[str] = []


def vignette_parts(question: str) -> VignetteParts:
    """Sort the vignette's sentences: the closing question and image captions are not facts;
    examination sentences become findings (with the system they concern); test sentences
    become named results; the rest is history (what the patient's brief tells)."""
    out = VignetteParts()
    in_exam = False
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", question.strip()):
        s = IMAGE_REF.sub("", sentence).strip()
        if not s:
            continue
        if s.endswith("?"):
            out.meta.append(s)
            continue
        if _SHOWN.search(s):
            name = _SHOWN.split(s)[0].strip(" .")
            name = re.sub(r"^(?:a|an|the)\s+(?:subsequent\s+)?", "", name, flags=re.I)
            name = re.sub(r"\s+results?$", "", name, flags=re.I)
            out.image_tests.append(name[:1].upper() + name[1:])
            continue
        m = _TEST.match(s)
        if _EXAM.search(s) and not (m and _TESTISH.search(m.group("name"))):
            in_exam = True
            body = _EXAM_LEAD.sub("", s).strip(" ,.")
            body = re.sub(r"^there (?:was|were)\s+", "", body, flags=re.I)
            body = re.sub(r"^was\s+", "", body, flags=re.I)
            if body:
                out.exam.extend(_by_system(body))
            continue
        if m and _TESTISH.search(m.group("name")):
            in_exam = False
            name = re.sub(r"^(?:a|an|the)\s+(?:subsequent\s+)?", "", m.group("name"), flags=re.I)
            result = m.group("result").strip(" .")
            verdict = re.search(r"\b(?:were|was) ((?:negative|normal|positive)\b.*)", s, re.I)
            if verdict and not result:
                result = verdict.group(1)
            result = result or s
            out.tests.setdefault(name[:1].upper() + name[1:], result.strip(" .") + ".")
            continue
        if in_exam and re.match(r"^(?:there (?:was|were)|no\b|similar\b)", s, re.I):
            body = re.sub(r"^there (?:was|were)\s+", "", s, flags=re.I).strip(" .")
            out.exam.extend(_by_system(body))
            continue
        in_exam = False
        out.history.append(s)
    return out


def _by_system(body: str) -> list[tuple[str, str]]:
    """An examination sentence as (system, finding) pairs: a list of short findings splits
    ('pharyngeal erythema and exudates, conjunctival pallor, and scleral icterus' is ENT then
    eyes); a negation covers its whole list ('no hepatosplenomegaly, rash, or acrocyanosis')."""
    out: list[tuple[str, str]] = []
    for c in finding_clauses(body):
        if c.negated:
            out.append((_system(c.text), f"No {c.text}"))
            continue
        parts = [p for p in re.split(r"\s*,\s*(?:and\s+)?", c.text) if p.strip()]
        if len(parts) > 1 and all(len(p.split()) <= 5 for p in parts):
            out.extend((_system(p), p) for p in parts)
        else:
            out.append((_system(c.text), c.text))
    return out


def _system(text: str) -> str:
    for system, rx in _SYSTEMS:
        if re.search(rx, text, re.IGNORECASE):
            return system
    return "general"


# ---- the measurement actor's brief -------------------------------------------------------------

PE_META = re.compile(
    r"does not (?:include|contain|mention|provide)|no (?:specific )?(?:instrument readings|"
    r"numerical)|cannot generate|there are no instrument readings",
    re.IGNORECASE,
)
_PE_PREAMBLE = re.compile(
    r"^.{0,160}?(?:instrument readings and test results|test results)\s+includes?:\s*",
    re.IGNORECASE,
)
_TRAILING_HEADING = re.compile(
    r"\s+((?:Laboratory|Lab|Imaging|Biops(?:y|ies)|Urinalysis|Histopatholog\w*|Microbiology|"
    r"Serology|Radiology|Pathology|Blood|Urine|CSF|Cerebrospinal)[A-Za-z ]{0,50}):$"
)
"""A heading run into the previous item: '... : Negative Imaging results:'."""
_SIGN = re.compile(
    r"^(?P<name>.{3,80}?)\s+(?P<result>(?:weakly\s+|strongly\s+)?(?:positive|negative)\b.*)$",
    re.IGNORECASE,
)
_GENERIC_HEADING = re.compile(
    r"^(?:laboratory|lab|imaging|test|tests|testing|results|studies|findings|investigations|"
    r"instrument readings|other)(?:\s+(?:testing|studies|tests|results|findings))*$",
    re.IGNORECASE,
)


def pe_results(pe: Any) -> dict[str, Any] | None:
    """The measurement brief as {test: result} (with {heading: {...}} for grouped results),
    or None where it says it holds no readings."""
    if not isinstance(pe, str) or not pe.strip() or PE_META.search(pe):
        return None
    text = _PE_PREAMBLE.sub("", pe.strip())
    text = IMAGE_REF.sub("", text)
    items = re.split(r"\s+-\s+|(?:^|\s)\d+\.\s+(?=[A-Z])|(?<=\.)\s+(?=[A-Z][^.:]{2,80}:\s)", text)
    out: dict[str, Any] = {}
    heading = ""
    loose: dict[str, list[str]] = {}
    for raw in items:
        item = raw.strip(" .")
        if not item:
            continue
        if item.endswith(":") and ":" not in item[:-1]:
            heading = _heading(item[:-1])
            continue
        m = _TRAILING_HEADING.search(item)
        if m:  # 'Absolute eosinophil count: 2660 (...) Urinalysis:' -> a new heading follows
            item, next_heading = item[: m.start()].strip(" ."), _heading(m.group(1))
        else:
            next_heading = None
        name, sep, result = item.partition(":")
        if sep and result.strip() and len(name) <= 120:
            _put(out, heading, name.strip(), result.strip())
        else:
            t = _TEST.match(item) or _SIGN.match(item)
            if t and _TESTISH.search(t.group("name")):
                _put(out, heading, t.group("name").strip(), t.group("result").strip() or item)
            else:  # 'X was performed' with no result is no result
                item = re.sub(r"\s*\b[A-Z][^.]*\b(?:was|were) performed\.?$", "", item).strip()
                if item:
                    loose.setdefault(heading, []).append(item)
        if next_heading is not None:
            heading = next_heading
    for head, texts in loose.items():
        name = re.sub(r"\s+(?:results|findings)$", "", head, flags=re.I) or "Laboratory testing"
        if _GENERIC_HEADING.match(name):
            name = "Laboratory testing" if not re.search(r"imaging", name, re.I) else "Imaging"
        key = name.replace(" ", "_")
        target = out if not head or _GENERIC_HEADING.match(head) else out.setdefault(key, {})
        if isinstance(target, dict) and target is not out:
            target["Findings"] = ". ".join(texts) + "."
        else:
            out[key] = ". ".join(texts) + "."
    return out or None


def _heading(text: str) -> str:
    h = re.sub(
        r"\s+(?:for the patient\s+)?(?:are as follows|indicated|include|includes|of the lesions"
        r"(?:\s+include)?)$",
        "",
        text.strip(" .:-"),
        flags=re.I,
    )
    return h.strip()


def _put(out: dict[str, Any], heading: str, name: str, result: str) -> None:
    name = re.sub(r"^(?:a|an|the)\s+", "", name, flags=re.I)
    if heading and not _GENERIC_HEADING.match(heading):
        key = re.sub(r"\s+(?:results|findings)$", "", heading, flags=re.I).replace(" ", "_")
        group = out.setdefault(key, {})
        if isinstance(group, dict):
            group[name] = f"{group[name]}; {result}" if name in group else result
            return
    out[name] = f"{out[name]}; {result}" if isinstance(out.get(name), str) else result


def _uncovered(candidates: dict[str, str], made: TestsOutcome, texts: list[str]) -> dict[str, str]:
    """The vignette's test results that the measurement brief did not already give (by the
    test's name, or by most of the result's words)."""
    have = [_core(n) for _, n, _ in made.tests]
    said = [_core(t) for t in texts]
    out = {}
    for name, result in candidates.items():
        core, words = _core(name), _core(result)
        if not core or any(core & h for h in have):
            continue
        if words and any(len(words & t) >= 0.5 * len(words) for t in said):
            continue
        out[name] = result
    return out


_WEAK = frozenset(
    [
        "of",
        "the",
        "a",
        "an",
        "and",
        "with",
        "for",
        "on",
        "in",
        "to",
        "from",
        "both",
        "left",
        "right",
        "test",
        "tests",
        "testing",
        "results",
        "laboratory",
        "studies",
        "analysis",
        "findings",
        "sample",
        "specimen",
        "affected",
        "areas",
        "area",
    ]
)


def _core(name: str) -> set[str]:
    words = {
        w[:-3] + "y" if w.endswith("ies") else w[:-1] if len(w) > 4 and w.endswith("s") else w
        for w in norm(name).split()
    } - _WEAK
    g = test_names().group(name)
    if g is not None:
        words.add(f"group:{g.id}")
    return words


# ---- images -----------------------------------------------------------------------------------


def find_image(
    images: Path | None, url: str, case_id: str, line: int | None, index: int
) -> Path | None:
    """The local picture for a case: in a folder (or a single file) the user gave, the file
    named by the image's id in its URL (`id=IC20240111`), the URL's file name, the case id, or
    the line number."""
    if images is None:
        return None
    keys = [case_id, str(index + 1)]
    if line is not None:
        keys.append(str(line))
    if url:
        parsed = urlparse(url)
        keys = [*parse_qs(parsed.query).get("id", []), Path(parsed.path).stem, *keys]
    keys = [k.lower() for k in keys if k]
    files = [images] if images.is_file() else sorted(images.iterdir()) if images.is_dir() else []
    for key in keys:
        for f in files:
            if f.suffix.lower() in IMAGE_SUFFIXES and f.stem.lower() == key:
                return f
    return None
