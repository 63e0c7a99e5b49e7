"""External case files -> Cases: detect the format (AgentClinic MedQA-shaped or NEJM-shaped
JSONL, or DDXPlus) and read it.

`clinicgym run --cases-from FILE` plays these cases instead of sampling the KB. A JSONL file is
never failed for one line: `import_cases` returns every case it could read and every problem by
file, line and field (`ImportReport`); `read_cases` warns them (`CaseImportWarning`); `strict`
fails the file if any line cannot be imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from clinicgym.patients.cases.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers.problems import ImportReport
from clinicgym.patients.knowledge.kb import KnowledgeBase

CaseFormat = Literal["agentclinic", "agentclinic_nejm", "ddxplus"]
CASE_FORMATS: tuple[str, ...] = ("agentclinic", "agentclinic_nejm", "ddxplus")
NEJM_KEYS = frozenset({"question", "patient_info", "answers"})
"""Keys every NEJM-shaped AgentClinic record has (with `image_url` and `physical_exams`)."""


def detect_format(path: Path | str) -> CaseFormat:
    """'agentclinic' for JSONL whose first object has `OSCE_Examination`; 'agentclinic_nejm'
    for JSONL whose first object has `question`, `patient_info` and `answers`; 'ddxplus' for a
    directory with `release_evidences.json`, or a patients CSV/zip beside one."""
    from clinicgym.patients.importers.ddxplus import EVIDENCES_FILE

    path = Path(path)
    if not path.exists():
        raise ImporterError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / EVIDENCES_FILE).exists():
            return "ddxplus"
        raise ImporterError(
            f"{path}: a directory, but not a DDXPlus release (no {EVIDENCES_FILE}); pass an "
            "AgentClinic .jsonl file or a DDXPlus release directory"
        )
    if path.suffix.lower() in (".csv", ".zip"):
        if (path.parent / EVIDENCES_FILE).exists():
            return "ddxplus"
        raise ImporterError(
            f"{path}: a CSV/zip but no {EVIDENCES_FILE} beside it; DDXPlus patient files need "
            "the release's evidence and condition files in the same directory"
        )
    head = None
    try:
        with path.open(encoding="utf-8") as fh:
            for line in (x for x in fh if x.strip()):  # the first record that parses
                try:
                    head = json.loads(line)
                    break
                except json.JSONDecodeError:
                    continue
    except UnicodeDecodeError:
        head = None
    if isinstance(head, dict) and ("OSCE_Examination" in head or "Patient_Actor" in head):
        return "agentclinic"
    if isinstance(head, dict) and set(head) >= NEJM_KEYS:
        return "agentclinic_nejm"
    raise ImporterError(
        f"{path}: cannot tell the format (not JSONL with 'OSCE_Examination' or with "
        "'question', 'patient_info' and 'answers', not a DDXPlus release); pass "
        f"--cases-format, one of {', '.join(CASE_FORMATS)}"
    )


def read_cases(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    fmt: str | None = None,
    limit: int | None = None,
    strict: bool = False,
    images: Path | str | None = None,
) -> list[Case]:
    """The cases in an external file (the first `limit`, or all), in the given or detected
    format; each line's problem is a CaseImportWarning, or with `strict` fails the file."""
    report = import_cases(path, kb, fmt=fmt, limit=limit, images=images)
    report.check(strict)
    report.warn()
    return report.cases


def import_cases(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    fmt: str | None = None,
    limit: int | None = None,
    images: Path | str | None = None,
) -> ImportReport:
    """The cases of an external file with every problem and note (see `ImportReport`);
    `images` is a local image file or folder for the NEJM-shaped cases."""
    fmt = fmt or detect_format(path)
    if fmt == "agentclinic":
        from clinicgym.patients.importers.agentclinic import import_agentclinic

        return import_agentclinic(path, kb, limit=limit)
    if fmt == "agentclinic_nejm":
        from clinicgym.patients.importers.agentclinic_nejm import import_nejm

        return import_nejm(path, kb, limit=limit, images=images)
    if fmt == "ddxplus":
        from clinicgym.patients.importers.ddxplus import import_ddxplus

        return import_ddxplus(path, kb, limit=limit)
    raise ImporterError(f"unknown case format {fmt!r}; use one of {', '.join(CASE_FORMATS)}")
