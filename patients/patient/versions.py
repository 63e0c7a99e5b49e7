"""The version of the data outside the KB that shapes a written record's answers.

The lexicon files (lay words, attribute classes, acceptance weights) change what the patient
says without changing the KB version; a run records this digest beside the KB's, so a resumed
run or a comparison of two runs shows when they were played by different patients.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

LEXICON_DIR = Path(__file__).parent / "lexicon"


@cache
def lexicon_version() -> str:
    """The first 12 hex digits of the sha256 over the lexicon files' names and bytes."""
    h = hashlib.sha256()
    for path in sorted(LEXICON_DIR.glob("*.yaml")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
