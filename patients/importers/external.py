"""External case files -> Cases: detect the format (AgentClinic JSONL or DDXPlus) and read it.

`clinicgym run --cases-from FILE` plays these cases instead of sampling the KB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from clinicgym.patients.case import Case
from clinicgym.patients.errors import ImporterError
from clinicgym.patients.kb import KnowledgeBase

CaseFormat = Literal["agentclinic", "ddxplus"]
CASE_FORMATS: tuple[str, ...] = ("agentclinic", "ddxplus")


def detect_format(path: Path | str) -> CaseFormat:
    """'agentclinic' for JSONL whose first object has `OSCE_Examination`; 'ddxplus' for a
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
    try:
        with path.open(encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "")
        head = json.loads(first) if first else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        head = None
    if isinstance(head, dict) and ("OSCE_Examination" in head or "Patient_Actor" in head):
        return "agentclinic"
    raise ImporterError(
        f"{path}: cannot tell the format (not JSONL with 'OSCE_Examination', not a DDXPlus "
        f"release); pass --cases-format, one of {', '.join(CASE_FORMATS)}"
    )


def read_cases(
    path: Path | str,
    kb: KnowledgeBase,
    *,
    fmt: str | None = None,
    limit: int | None = None,
) -> list[Case]:
    """The cases in an external file (the first `limit`, or all), in the given or detected
    format."""
    fmt = fmt or detect_format(path)
    if fmt == "agentclinic":
        from clinicgym.patients.importers.agentclinic import read_agentclinic

        return read_agentclinic(path, kb, limit=limit)
    if fmt == "ddxplus":
        from clinicgym.patients.importers.ddxplus import read_ddxplus

        return read_ddxplus(path, kb, limit=limit)
    raise ImporterError(f"unknown case format {fmt!r}; use one of {', '.join(CASE_FORMATS)}")
