"""How faithfully a written case file was imported: every source sentence, where it went.

`audit_file` imports an AgentClinic file (MedQA- or NEJM-shaped) and reads it again beside the
cases, so that each source sentence is accounted for:

- `fact`: at least one fact says it (matched by the fact's source field and its words);
- `not a fact`: text about the record or for the actors, not about the patient ("No mention of
  smoking", "Information not provided", the doctor's objective, the vignette's closing question,
  an image caption, a test "could be considered"): correctly no fact;
- `unplaced`: neither; listed, so it can be fixed.

Per case it also lists the facts by category, the tests with the names they are orderable by
(a test whose own name does not reach it on the chart is a lost name), the KB links, and the
"no mention" denials (a negated fact made from meta-text: the record never denied it).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinicgym.patients.cases.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.external import detect_format, import_cases
from clinicgym.patients.importers.problems import ImportProblem
from clinicgym.patients.importers.record_history import (
    META,
    UNKNOWN,
    expand_abbreviations,
    inline_label,
    statements,
)
from clinicgym.patients.importers.results import is_no_result
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.patients.patient.chart import Chart

ACTOR = re.compile(
    r"\b(?:for (?:your|the) role|patient actor|as a patient|remember,|you are not aware|"
    r"you(?:'re| are) not aware|you haven't (?:seen|been told)|don't know the details|"
    r"do not know (?:your|the)|not been informed|here's (?:what|the)|minimal information|"
    r"convey|portray|your knowledge is limited|instrument readings?|the provided text|"
    r"the information (?:extracted|provided)|case report)\b|^(?:mention|remember)\b",
    re.IGNORECASE,
)
"""Instructions to AgentClinic's actors, not facts about the patient."""
_STOP = frozenset((
    "the", "a", "an", "and", "or", "of", "in", "on", "at", "to", "for", "with", "without",
    "from", "by", "as", "is", "are", "was", "were", "be", "been", "has", "have", "had", "his",
    "her", "their", "my", "i", "i'm", "i've", "me", "she", "he", "they", "it", "its", "this",
    "that", "these", "those", "patient", "reports", "reported", "states", "noted", "notes",
    "also", "any", "some", "there", "which", "who", "when", "while", "after", "before",
    "about", "over", "than", "then", "into", "per", "not", "no", "yes",
))  # fmt: skip
_DEMOGRAPHIC = re.compile(
    r"^(?:you are |i am |i'm )?(?:an? )?\d+[- ]?(?:year|month|week|day)[- ]old\s+\w+\.?$", re.I
)
_SPLIT = re.compile(r"(?<!\d)[.;!?](?!\d)\s*|\n+|\s+-\s+|(?:^|\s)\d+\.\s+(?=[A-Z*])")


def _tokens(text: str) -> set[str]:
    out = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w in _STOP or (len(w) < 3 and not w.isdigit()):
            continue
        for suffix in ("ing", "ed", "es", "s", "ly"):
            if len(w) > len(suffix) + 3 and w.endswith(suffix):
                w = w[: -len(suffix)]
                break
        out.add(w)
    return out


def sentences_of(text: Any) -> list[str]:
    """The sentences (and list items) of a source value."""
    if isinstance(text, list | tuple):
        return [s for t in text for s in sentences_of(t)]
    if isinstance(text, dict):
        return [s for t in text.values() for s in sentences_of(t)]
    if text is None:
        return []
    body = re.sub(r"\*\*[^*]+\*\*:?", " ", str(text))
    return [s.strip(" -:,*") for s in _SPLIT.split(body) if s and len(s.strip(" -:,*")) > 1]


@dataclass
class SentenceAudit:
    """One source sentence: its field, its words, where it went."""

    field: str
    text: str
    status: str
    """'fact', 'not a fact' or 'unplaced'."""
    why: str = ""
    facts: list[str] = field(default_factory=list)


@dataclass
class TestAudit:
    """One orderable test: the record's name, the concept, its names, found by its name."""

    name: str
    concept: str
    names: int
    orderable: bool
    abnormal: bool
    source: str


@dataclass
class CaseAudit:
    """One case's audit."""

    case_id: str
    line: int | None
    diagnosis: str
    sentences: list[SentenceAudit] = field(default_factory=list)
    facts_by_category: dict[str, int] = field(default_factory=dict)
    tests: list[TestAudit] = field(default_factory=list)
    kb_links: list[dict[str, str]] = field(default_factory=list)
    meta_denials: list[str] = field(default_factory=list)
    """Negated facts made from text about the record ('No mention of smoking')."""
    meta_facts: list[str] = field(default_factory=list)
    """Present facts made from text about the record ('Unknown substance use')."""

    @property
    def unplaced(self) -> list[SentenceAudit]:
        """Source sentences no fact says and no rule explains."""
        return [s for s in self.sentences if s.status == "unplaced"]

    @property
    def lost_names(self) -> list[TestAudit]:
        """Tests their own name does not order."""
        return [t for t in self.tests if not t.orderable]


@dataclass
class AuditReport:
    """A file's audit: per case, the import problems, and the totals."""

    path: str
    format: str
    cases: list[CaseAudit]
    problems: list[ImportProblem]
    lines: int

    def totals(self) -> dict[str, Any]:
        """The figures the total line prints."""
        sent = [s for c in self.cases for s in c.sentences]
        facts = sum(1 for s in sent if s.status == "fact")
        meta = sum(1 for s in sent if s.status == "not a fact")
        placed = facts + meta
        by_cat: Counter[str] = Counter()
        for c in self.cases:
            by_cat.update(c.facts_by_category)
        return {
            "lines": self.lines,
            "cases": len(self.cases),
            "skipped_lines": len({p.line for p in self.problems if p.skipped}),
            "sentences": len(sent),
            "placed": placed,
            "placed_share": placed / len(sent) if sent else 1.0,
            "as_facts": facts,
            "not_facts": meta,
            "unplaced": len(sent) - placed,
            "facts_by_category": dict(sorted(by_cat.items())),
            "tests": sum(len(c.tests) for c in self.cases),
            "lost_test_names": sum(len(c.lost_names) for c in self.cases),
            "kb_links": sum(len(c.kb_links) for c in self.cases),
            "meta_denials": sum(len(c.meta_denials) for c in self.cases),
            "meta_facts": sum(len(c.meta_facts) for c in self.cases),
        }

    def to_json(self) -> str:
        """The whole audit as JSON (cases, problems, totals)."""
        return json.dumps(
            {
                "path": self.path,
                "format": self.format,
                "totals": self.totals(),
                "problems": [str(p) for p in self.problems],
                "cases": [
                    {
                        **asdict(c),
                        "unplaced": [s.text for s in c.unplaced],
                        "lost_test_names": [t.name for t in c.lost_names],
                    }
                    for c in self.cases
                ],
            },
            indent=2,
        )


def audit_file(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    fmt: str | None = None,
    images: Path | str | None = None,
    limit: int | None = None,
    strict: bool = False,
) -> AuditReport:
    """Import an AgentClinic file and account for every source sentence of every case
    (`strict`: fail if any line cannot be imported)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in ("agentclinic", "agentclinic_nejm"):
        raise ImporterError(f"{path}: the audit reads AgentClinic JSONL files, not {fmt}")
    report = import_cases(path, kb, fmt=fmt, limit=limit, images=images)
    report.check(strict)
    raw_by_line: dict[int, Any] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                raw_by_line[n] = json.loads(line)
            except json.JSONDecodeError:
                continue
    audits = []
    for case in report.cases:
        line = _line_of(case)
        raw = raw_by_line.get(line) if line is not None else None
        audits.append(audit_case(case, raw, kb, line=line))
    return AuditReport(str(path), fmt, audits, report.problems, report.lines)


def _line_of(case: Case) -> int | None:
    for p in case.lineage.parent_ids:
        m = re.search(r"line (\d+)$", p)
        if m:
            return int(m.group(1))
    return None


def audit_case(case: Case, raw: Any, kb: KnowledgeBase, *, line: int | None = None) -> CaseAudit:
    """One case against its source record."""
    out = CaseAudit(case.id, line, case.diagnosis.name)
    facts = [f for f in case.facts if f.category != "phi"]
    out.facts_by_category = dict(Counter(f.category for f in facts))
    for f in facts:
        kind = _kb_kind(f.concept, kb)
        if kind:
            out.kb_links.append(
                {
                    "fact": f.id,
                    "concept": f.concept,
                    "kind": kind,
                    "text": f.text,
                    "present": str(f.present),
                }
            )
        if _is_meta_fact(f.text):
            (out.meta_facts if f.present else out.meta_denials).append(f.text)
    out.tests = _tests(case, kb)
    if isinstance(raw, dict):
        if case.extra.get("format") == "agentclinic_nejm":
            out.sentences = _nejm_sentences(case, raw)
        else:
            out.sentences = _osce_sentences(case, raw)
    return out


def _is_meta_fact(text: str) -> bool:
    """A fact that only says something about the record ('No mention of smoking', 'Blood
    pressure not applicable for age'), not one that carries a remark ('Bilateral decreased
    hearing, details not specified')."""
    body = text.split(": ", 1)[-1]
    m = META.search(body) or ACTOR.search(body)
    if m is None:
        return False
    rest = body[: m.start()] + " " + body[m.end() :]
    rest = re.sub(r"\b(?:blood pressure|respiratory rate|heart rate|temperature|for age|in this "
                  r"scenario|so the|is|are|was|were)\b", " ", rest, flags=re.I)  # fmt: skip
    return len(_tokens(rest)) < 3


def _kb_kind(concept: str, kb: KnowledgeBase) -> str:
    if concept in kb.findings:
        return "finding"
    if concept in kb.tests:
        return "test"
    if concept in kb.vitals or concept in ("systolic_bp", "diastolic_bp"):
        return "vital"
    if concept in kb.drugs:
        return "drug"
    if concept.startswith("allergy.") and concept != "allergy.none":
        return "allergy"
    if any(c.id == concept for c in kb.background.comorbidities):
        return "comorbidity"
    return ""


def _tests(case: Case, kb: KnowledgeBase) -> list[TestAudit]:
    chart = Chart(case, kb)
    names: dict[str, list[str]] = case.extra.get("test_names") or {}
    out = []
    for f in case.facts:
        if f.how_revealed != "order" or f.category not in ("lab", "imaging"):
            continue
        own = (names.get(f.concept) or [f.concept.replace("_", " ")])[0]
        out.append(
            TestAudit(
                name=own,
                concept=f.concept,
                names=len(names.get(f.concept, [])),
                orderable=chart.resolve_test(own) == f.concept,
                abnormal=f.abnormal,
                source=f.source or "",
            )
        )
    return out


# ---- sentences -------------------------------------------------------------------------------


def _match(
    sentence: str, facts: list[Any], *, alone: bool = False, retold: bool = False
) -> list[str]:
    """The facts that say `sentence`: most of a fact's words are in it, or most of its words
    are in one fact (or, for the only sentence of its field, any fact from that field);
    `retold`: a vignette retelling what the patient's brief says, in other words (a quarter
    of its words, at least two, in one fact)."""
    words = _tokens(sentence)
    hits = []
    for f in facts:
        full = _tokens(f.text)
        fw = _tokens(f.text.split(": ", 1)[-1]) or full
        if not fw or not words:
            continue
        shared = len(fw & words)
        if (
            shared >= max(1, 0.5 * len(fw))
            or len(full & words) >= max(1, 0.6 * len(words))
            or (alone and shared)
            or (retold and shared >= max(2, 0.25 * len(words)))
        ):
            hits.append(f.id)
    if not hits and alone and facts:
        hits = [f.id for f in facts]
    return hits


def _leaves(node: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _leaves(v, f"{path}.{k}")]
    return [(path, node)]


def _osce_sentences(case: Case, raw: dict[str, Any]) -> list[SentenceAudit]:
    osce = raw.get("OSCE_Examination", raw)
    facts = [f for f in case.facts if f.category != "phi"]
    out: list[SentenceAudit] = []
    for key in ("Objective_for_Doctor",):
        for s in sentences_of(osce.get(key)):
            out.append(SentenceAudit(key, s, "not a fact", "the doctor's instructions"))
    actor = osce.get("Patient_Actor") or {}
    for path, value in _leaves(actor, "Patient_Actor"):
        last = path.rsplit(".", 1)[-1].lower()
        texts = sentences_of(value)
        if "demograph" in path.lower() or last in ("age", "sex", "gender", "name"):
            out += [SentenceAudit(path, s, "fact", "demographics") for s in texts]
            continue
        mine = [f for f in facts if (f.source or "").split(":", 1)[-1].startswith(path)]
        out += _place(path, texts, mine, facts)
    exam = osce.get("Physical_Examination_Findings")
    for path, value in _leaves(exam, "Physical_Examination_Findings"):
        mine = [f for f in facts if (f.source or "").split(":", 1)[-1].startswith(path)]
        out += _place(path, sentences_of(value), mine, facts, vital="vital" in path.lower())
    tests = osce.get("Test_Results")
    for path, value in _leaves(tests, "Test_Results"):
        mine = [
            f for f in facts
            if f.how_revealed == "order" or f.category == "vital"
            if path.startswith((f.source or "").split(":", 1)[-1])
            or (f.source or "").split(":", 1)[-1].startswith(path)
        ]  # fmt: skip
        text = f"{path.rsplit('.', 1)[-1]}: {value}"
        if mine:
            out.append(SentenceAudit(path, text, "fact", "", [f.id for f in mine]))
        elif is_no_result(str(value)) or _suggestion_key(path):
            out.append(SentenceAudit(path, text, "not a fact", "no result"))
        else:
            out.append(SentenceAudit(path, text, "unplaced", "no test made"))
    dx = osce.get("Correct_Diagnosis")
    if dx:
        out.append(SentenceAudit("Correct_Diagnosis", str(dx), "fact", "the diagnosis"))
    return out


def _suggestion_key(path: str) -> bool:
    from clinicgym.patients.importers.results import SUGGESTION_KEYS

    return any(SUGGESTION_KEYS.match(p) for p in path.split("."))


def _place(
    path: str,
    texts: list[str],
    mine: list[Any],
    facts: list[Any],
    *,
    vital: bool = False,
    source: str = "",
) -> list[SentenceAudit]:
    out = []
    for s in texts:
        words = expand_abbreviations(s)  # the facts say the abbreviations in full
        hits = _match(words, mine, alone=len(texts) == 1 or vital)
        if not hits:  # 'Meds: none', 'NKDA', 'Unremarkable': a section's denial
            label, body = inline_label(s, "")
            said = statements(body if label else s)
            if said and all(not st.text for st in said):
                hits = [f.id for f in mine if f.concept.endswith(".none")]
        if hits:
            out.append(SentenceAudit(path, s, "fact", "", hits))
        elif META.search(s) or UNKNOWN.search(s) or ACTOR.search(s) or is_no_result(s):
            out.append(SentenceAudit(path, s, "not a fact", "about the record"))
        elif source and f"{s}:" in source and len(s.split()) <= 10:
            out.append(SentenceAudit(path, s, "not a fact", "a heading"))
        elif _DEMOGRAPHIC.match(s):
            out.append(SentenceAudit(path, s, "fact", "demographics"))
        elif re.search(r"\b(?:was|were) performed\.?$", s):
            out.append(SentenceAudit(path, s, "not a fact", "a test done, no result given"))
        elif (other := _match(words, facts)) and len(texts) > 1:
            out.append(SentenceAudit(path, s, "fact", "said under another field", other))
        else:
            out.append(SentenceAudit(path, s, "unplaced"))
    return out


def _nejm_sentences(case: Case, raw: dict[str, Any]) -> list[SentenceAudit]:
    from clinicgym.patients.importers.agentclinic_nejm import IMAGE_REF, PE_META

    facts = [f for f in case.facts if f.category != "phi"]
    history = [f for f in facts if (f.source or "").endswith("patient_info")]
    pe_facts = [f for f in facts if "physical_exams" in (f.source or "")]
    out: list[SentenceAudit] = []
    info = str(raw.get("patient_info") or "")
    out += _place("patient_info", sentences_of(info), history, facts, source=info)
    pe = IMAGE_REF.sub("", str(raw.get("physical_exams") or ""))
    if PE_META.search(pe):
        out += [
            SentenceAudit("physical_exams", s, "not a fact", "says it holds no readings")
            for s in sentences_of(pe)
        ]
    else:
        out += _place("physical_exams", sentences_of(pe), pe_facts, facts, source=pe)
    question = IMAGE_REF.sub("", str(raw.get("question") or "").strip())
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", question):
        if not s.strip():
            continue
        if s.strip().endswith("?"):
            out.append(SentenceAudit("question", s, "not a fact", "the closing question"))
        elif re.search(r"\b(?:is|are) shown\b", s):
            out.append(SentenceAudit("question", s, "not a fact", "an image caption"))
        elif re.search(r"\b(?:was|were) performed\.?$", s):
            out.append(SentenceAudit("question", s, "not a fact", "a test done, no result given"))
        elif hits := _match(s, facts, retold=True):
            out.append(SentenceAudit("question", s, "fact", "", hits))
        else:
            out.append(SentenceAudit("question", s, "unplaced"))
    for a in raw.get("answers") or []:
        if isinstance(a, dict):
            why = "the diagnosis" if a.get("correct") else "the differential"
            out.append(SentenceAudit("answers", str(a.get("text")), "fact", why))
    return out
