"""The repository stands on its own: no file points outside it, and every doc link resolves.

The rule, precisely (checked over every text file `git ls-files` lists, i.e. tracked files that
exist in the working tree and hold no NUL byte):

1. No file names `DESIGN.md` or `STYLE.md` (design notes once kept beside the repository; the
   architecture is docs/architecture.md), a path that climbs into the folder beside the
   repository (`../shared`), or an absolute path under this machine's `/work/` (`/work/main`,
   `/work/shared`: they name one checkout, not the repository).
2. One exception: the public AgentClinic case files are data the project reads but never copies,
   in `shared/data/agentclinic/` beside the repository. That folder may be named (as text, or
   built in code as `... / "shared"`) only by the files that explain where it lives or read it
   and skip without it: `SHARED_DATA_FILES` below. Every other file, docs included, refers to
   bench/data/patient_bank/README.md instead.
3. This file is exempt: it has to spell the patterns it forbids.

And every relative link in README.md and docs/*.md (`[text](target)`, `![alt](target)` and
`[id]: target`, outside fenced code blocks and code spans; URLs with a scheme and bare
`#anchors` left out; a target's own `#anchor` or `?query` dropped) names a file or folder that
exists inside the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

SHARED_DATA_FILES = {
    # explains that the shared data lives beside the repository and how the bank was built
    "bench/data/patient_bank/README.md",
    # read the AgentClinic files at test time and skip when they are not there
    "tests/patients/importers/test_import_written_cases.py",
    "tests/patients/patient/test_record_patient.py",
    # measures the patient on the banks over those files, and says so when they are absent
    "bench/patient_bank.py",
}

OUTSIDE = [
    (re.compile(r"\bDESIGN\.md\b"), "DESIGN.md (a design note outside the repository)"),
    (re.compile(r"\bSTYLE\.md\b"), "STYLE.md (a style note outside the repository)"),
    (
        re.compile(r"\.\./shared(?!/data/agentclinic\b)"),
        "a path into the folder beside the repository",
    ),
    (re.compile(r"(?<![\w.-])/work/"), "an absolute path of one machine's work folder"),
]
SHARED_DATA = [
    re.compile(r"\bshared/data/agentclinic\b"),
    re.compile(r"""/\s*["']shared["']"""),
]


def _tracked_text_files() -> dict[str, str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    files: dict[str, str] = {}
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        files[name] = data.decode("utf-8", errors="replace")
    return files


def test_no_file_points_outside_the_repository():
    problems = []
    for name, text in sorted(_tracked_text_files().items()):
        if name == THIS:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for pattern, what in OUTSIDE:
                if pattern.search(line):
                    problems.append(f"{name}:{n}: {what}: {line.strip()[:120]}")
            if name not in SHARED_DATA_FILES and any(p.search(line) for p in SHARED_DATA):
                problems.append(
                    f"{name}:{n}: the shared AgentClinic folder is named outside "
                    f"{sorted(SHARED_DATA_FILES)}: {line.strip()[:120]}"
                )
    assert not problems, "files point outside the repository:\n" + "\n".join(problems)


FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _links(text: str) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    return [m.group(1) for m in INLINE_LINK.finditer(text)] + [
        m.group(1) for m in REFERENCE.finditer(text)
    ]


def test_doc_links_resolve_inside_the_repository():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = []
    for doc in docs:
        for target in _links(doc.read_text(encoding="utf-8")):
            if SCHEME.match(target) or target.startswith("#"):
                continue
            path = re.split(r"[#?]", target, maxsplit=1)[0]
            resolved = (doc.parent / path).resolve()
            where = doc.relative_to(ROOT).as_posix()
            if resolved != ROOT and ROOT not in resolved.parents:
                problems.append(f"{where}: {target!r} leaves the repository")
            elif not resolved.exists():
                problems.append(f"{where}: {target!r} does not exist")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_links_the_architecture():
    assert (ROOT / "docs" / "architecture.md").is_file()
    assert "](docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
