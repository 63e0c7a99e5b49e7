"""A written record's test results -> orderable lab and imaging facts that keep their names.

Records nest results in many shapes; each becomes what a clinician would order:

- a test with one result, however it is keyed ({"Chest_CT": {"Findings": ...}},
  {"CRP": {"Level": ...}}, {"Skin_Biopsy": {"Histopathology": {"Findings": ...}}}): one fact
  named by the test, never by "Findings";
- a panel (a dict of analytes: {"Complete_Blood_Count": {"WBC": ..., "Hemoglobin": ...}}): one
  fact for the whole panel (its rows kept for the lab table) and one per analyte;
- a container of tests ({"Imaging": {...}}, {"Blood_Tests": {...}}): walked, its heading kept as
  context for names ("Biopsy: Cervical lymph node" is also "cervical lymph node biopsy");
- vital signs filed under tests: vital facts (those the examination has not given already);
- text that is not a result: a suggestion ("MRI could be considered if suspicion persists"),
  "Not provided", "Optional": no fact; reported as not placed, with the reason.

Every test is orderable by its own name, its name with its heading, and the synonyms of its
group in `test_names.yaml` (CTPA, ECG/EKG, CXR, U/A, FBC/CBC, LFTs, ...): the names go to
`case.extra["test_names"]` for the chart. A test takes a KB test id only where its name is
exactly that test (a panel never takes an analyte's id). Abnormal flags come from
`results.flag_result` (reference ranges by analyte, unit, age and sex; the record's own words
and ranges first; negation-aware text rules last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clinicgym.patients.importers.freetext import CaseBuilder, clauses, is_imaging, vital_facts
from clinicgym.patients.importers.results import (
    SUGGESTION_KEYS,
    Flag,
    flag_result,
    is_no_result,
    is_pending,
    test_names,
)
from clinicgym.patients.importers.text import humanise, norm, slug

CATEGORY_KEYS = re.compile(
    r"^(blood|blood_?tests?|blood_?work|labs?|lab_?(?:results|work|tests?)|"
    r"laborator\w*(?:_tests?|_studies|_results)?|basic_laboratory_tests|tests?|investigations?|"
    r"imaging(?:_results|_studies|_and_other_tests)?|radiolog\w*|other|others|other_tests|"
    r"additional|additional_?tests?|results?|bedside|microbiology|special_tests?|"
    r"screening_tests|assessment_tools|diagnostic_tests|serum_studies|test_results)$",
    re.IGNORECASE,
)
"""Headings that group separate tests (never a test themselves)."""
RESULT_KEYS = re.compile(
    r"^(findings?|results?|level|value|values|interpretation|impression|report|description|"
    r"comments?|histopatholog\w*(?:_findings)?|histology|microscopic_description|"
    r"preliminary_findings|details|conclusion|summary|outcome|reading|scores?|other_findings)$",
    re.IGNORECASE,
)
"""Keys under a test that hold its result, not another test."""
_MAIN_RESULT = re.compile(r"^(findings?|results?|level|value|reading|scores?)$", re.IGNORECASE)
_VITALS_KEY = re.compile(r"vital", re.IGNORECASE)
_GENERIC_CHILD = re.compile(
    r"^(analysis|results?|panel|values|profile|studies|tests|components)$", re.IGNORECASE
)
"""A lone sub-key that is the test's own body: {'STI_Screen': {'Results': {...}}}."""


@dataclass
class TestsOutcome:
    """What `add_tests` made: panel rows by concept, names by concept, and what it left out."""

    panels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)
    not_placed: list[tuple[str, str]] = field(default_factory=list)
    """(source path, why): results that are not results (suggestions, 'Not provided')."""
    tests: list[tuple[str, str, str]] = field(default_factory=list)
    """(source path, the record's test name, concept) for every orderable test made."""


def add_tests(b: CaseBuilder, tests: Any, *, source: str) -> TestsOutcome:
    """Add a fact per test, panel and analyte of a record's results to `b`."""
    out = TestsOutcome()
    if tests is None:
        return out
    if not isinstance(tests, dict):
        tests = named_results(tests)
    _Walker(b, out).walk(tests, [], source)
    return out


def named_results(text: Any) -> dict[str, str]:
    """A plain-text results paragraph -> {test name: result}: 'Lumbar puncture: protein
    1.8 g/L' and 'Nerve conduction studies show demyelination' each name their test."""
    out: dict[str, str] = {}
    for c in clauses(text):
        name, sep, result = c.text.partition(":")
        if not sep:
            m = re.match(
                r"^(.{3,60}?)\s+(?:shows?|showed|reveals?|revealed|demonstrates?|was|is|are)\s+(.+)$",
                c.text,
            )
            name, result = (m.group(1), m.group(2)) if m else (" ".join(c.text.split()[:3]), c.text)
        out.setdefault(name.strip() or "Result", result.strip())
    return out


def scalar(value: Any) -> str:
    """A result value as one line of text."""
    if isinstance(value, list | tuple):
        return "; ".join(scalar(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{humanise(k)}: {scalar(v)}" for k, v in value.items())
    return " ".join(str(value).split())


def _single_result(value: Any) -> str | None:
    """The result text of a test keyed by result words only ({'Findings': ..., 'Comments':
    ...}, nested too), or None if `value` holds other tests or analytes."""
    if not isinstance(value, dict) or not value:
        return None
    if not all(RESULT_KEYS.match(str(k)) for k in value):
        return None
    parts: list[str] = []
    for k, v in sorted(value.items(), key=lambda kv: not _MAIN_RESULT.match(str(kv[0]))):
        if isinstance(v, dict):
            inner = _single_result(v)
            if inner is None:
                return None
            text = inner
        else:
            text = scalar(v)
        if not text:
            continue
        main = _MAIN_RESULT.match(str(k)) or len(value) == 1
        parts.append(text if main and not parts else f"{humanise(str(k))}: {text}")
    return ". ".join(p.rstrip(".") for p in parts) + ("." if parts else "")


def flat_vitals(value: Any) -> Any:
    """Vital signs with nested readings flattened ({'Blood_Pressure': {'Sitting': ...}} ->
    'Blood_Pressure.Sitting') and readings that are not readings ('Not applicable for age',
    'Not provided') left out."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if isinstance(v, dict):
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items() if not is_no_result(str(v2))})
        elif not is_no_result(str(v)):
            out[k] = v
    return out


def _is_fluid_panel(name: str) -> bool:
    return bool(
        re.search(r"urin|\bcsf\b|lumbar|synovial|joint|arthrocentesis|stool|pleural|lavage", name)
    )


class _Walker:
    def __init__(self, b: CaseBuilder, out: TestsOutcome) -> None:
        self.b = b
        self.out = out
        self.used: set[str] = {f["concept"] for f in b.facts if f.get("concept")}
        self.names = test_names()
        self.kb_names: dict[str, str] = {}
        for t in b.kb.tests.values():
            for n in (t.id.replace("_", " "), t.name, *t.synonyms):
                self.kb_names.setdefault(norm(n), t.id)

    # ---- walking ----------------------------------------------------------------------------

    def walk(self, node: dict[str, Any], context: list[str], src: str) -> None:
        for key, value in node.items():
            here = f"{src}.{key}"
            name = humanise(str(key))
            if SUGGESTION_KEYS.match(str(key)):
                self.out.not_placed.append((here, "a suggestion, not a result"))
                continue
            if _VITALS_KEY.search(str(key)) and not isinstance(value, str | int | float):
                self._vitals(value, here)
                continue
            if isinstance(value, dict) and len(value) == 1:
                ((only, inner),) = value.items()
                if _GENERIC_CHILD.match(str(only)) and isinstance(inner, dict):
                    value, here = inner, f"{here}.{only}"
            if isinstance(value, dict):
                single = _single_result(value)
                if single is not None:
                    self.test(name, single, context, here)
                elif CATEGORY_KEYS.match(str(key)) or all(
                    isinstance(v, dict) for v in value.values()
                ):
                    keep = [] if CATEGORY_KEYS.match(str(key)) else [name]
                    self.walk(value, [*context, *keep], here)
                else:
                    self.panel(name, value, context, here)
                continue
            self.test(name, scalar(value), context, here)

    # ---- facts ------------------------------------------------------------------------------

    def test(self, name: str, result: str, context: list[str], src: str, panel: str = "") -> None:
        """One orderable test (or an analyte of `panel`) with its result."""
        if is_no_result(result) and not is_pending(result):
            self.out.not_placed.append((src, f"no result ({result[:60]})"))
            return
        b = self.b
        where = " ".join([*context, panel])
        flag = self._flag(name, result, panel or " ".join(context))
        fluid = _is_fluid_panel(norm(panel))
        concept = self._concept(name, where, kb_ok=not fluid)
        category = "imaging" if is_imaging(f"{where} {name}") else "lab"
        shown = f"{panel}: {name}" if panel else name
        pending = is_pending(result)
        b.add(
            category=category,
            concept=concept,
            text=f"{shown}: {result}" if not pending else f"{shown}: result pending.",
            value=result,
            abnormal=bool(flag.abnormal),
            salience="should_ask" if flag.abnormal else "incidental",
            how_revealed="order",
            modality="text" if category == "imaging" else "table",
            source=src,
        )
        context_names = [*context, panel] if panel else context
        names = self.names.names_for(name, *reversed(context_names))
        if fluid:  # a urine WBC is ordered as a urine WBC, never as the blood count
            names = [n for n in names if norm(n) != norm(name) and self.names.group(n) is None]
        names += [f"{name} {c}" for c in context_names if c]
        self._name(concept, names)
        self.out.tests.append((src, name, concept))

    def panel(self, name: str, rows_in: dict[str, Any], context: list[str], src: str) -> None:
        """A panel: one fact for the whole (its rows in the lab table), one per analyte."""
        b = self.b
        flat: list[tuple[str, str, Any, str]] = []  # (row label, analyte, value, source)
        for k, v in rows_in.items():
            if isinstance(v, dict) and _single_result(v) is None:
                flat += [(f"{humanise(str(k))}: {humanise(str(k2))}", humanise(str(k2)), v2,
                          f"{src}.{k}.{k2}") for k2, v2 in v.items()]  # fmt: skip
            elif isinstance(v, dict):
                flat.append((humanise(str(k)), humanise(str(k)), _single_result(v), f"{src}.{k}"))
            else:
                flat.append((humanise(str(k)), humanise(str(k)), v, f"{src}.{k}"))
        rows: list[dict[str, Any]] = []
        for label, analyte, v, _ in flat:
            text = scalar(v)
            if is_no_result(text) and not is_pending(text):
                continue
            flag = self._flag(analyte, text, name)
            rows.append(
                {
                    "test": label,
                    "result": text,
                    "unit": "",
                    "reference": flag.reference,
                    "flag": _flag_word(flag),
                }
            )
        if not rows:
            self.out.not_placed.append((src, "a panel with no results"))
            return
        where = " ".join(context)
        concept = self._concept(name, where, kb_ok=False)
        body = "; ".join(f"{r['test']} {r['result']}" for r in rows)
        category = "imaging" if is_imaging(f"{where} {name}") else "lab"
        abnormal = any(r["flag"] for r in rows)
        b.add(
            category=category,
            concept=concept,
            text=f"{name}: {body}",
            abnormal=abnormal,
            salience="should_ask" if abnormal else "incidental",
            how_revealed="order",
            modality="table",
            source=src,
        )
        self.out.panels[concept] = rows
        self._name(concept, self.names.names_for(name, *reversed(context)))
        self.out.tests.append((src, name, concept))
        for _label, analyte, v, here in flat:
            self.test(analyte, scalar(v), context, here, panel=name)

    def _vitals(self, value: Any, src: str) -> None:
        """Vital signs filed under the tests ('Vital_Signs_at_Presentation'): KB vitals the
        examination has not given, the others kept as readings of their own."""
        have = {f["concept"] for f in self.b.facts if f.get("category") == "vital"}
        heading = humanise(src.rsplit(".", 1)[-1]).lower()
        for f in vital_facts(flat_vitals(value), self.b.kb, self.b.linker, self.b.age, src):
            if f["concept"] in have:
                f = {**f, "concept": f"vital.{slug(heading)}.{f['concept']}"}
                f["text"] = f"{f['text']} ({heading})"
            self.b.add(**f)
            have.add(f["concept"])

    # ---- names, concepts and flags ----------------------------------------------------------

    def _flag(self, name: str, result: str, panel: str) -> Flag:
        b = self.b
        detail = getattr(b, "age_detail", None)
        return flag_result(
            name,
            result,
            age=b.age,
            sex=b.sex,
            age_days=detail.days() if detail is not None else (None if b.age else 14.0),
            panel=panel,
        )

    def _kb_id(self, name: str) -> str | None:
        """The KB test a name is exactly (its synonym group's, or the KB's own name); a panel
        name never takes an analyte's id."""
        g = self.names.group(name)
        if g is not None:
            return g.kb if not g.panel else None
        return self.kb_names.get(norm(name))

    def _concept(self, name: str, where: str, *, kb_ok: bool) -> str:
        kb_id = self._kb_id(name) if kb_ok else None
        if kb_id is not None and kb_id not in self.used:
            self.used.add(kb_id)
            return kb_id
        base = slug(name)
        if base in self.used or base in self.b.kb.tests:
            base = slug(f"{where} {name}") if where.strip() else f"{base}_2"
        c, n = base, 2
        while c in self.used or c in self.b.kb.tests:
            c, n = f"{base}_{n}", n + 1
        self.used.add(c)
        return c

    def _name(self, concept: str, names: list[str]) -> None:
        have = self.out.names.setdefault(concept, [])
        for n in names:
            if n.strip() and n not in have:
                have.append(n)


def _flag_word(flag: Flag) -> str:
    if not flag.abnormal:
        return ""
    return flag.direction or "ABNORMAL"
