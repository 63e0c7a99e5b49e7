"""Policy test fixtures: a KB with the drugs the prescribing rules need."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `import policy_helpers`

from policy_helpers import POLICY_KB

from clinicgym.patients.knowledge.kb import KnowledgeBase, load_kb


@pytest.fixture(scope="session")
def policy_kb() -> KnowledgeBase:
    return load_kb(POLICY_KB)
