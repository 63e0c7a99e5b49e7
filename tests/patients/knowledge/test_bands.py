"""Settings, age bands and severities are declared once (patients/knowledge/bands.py, envs/severity.py),
and the two meanings of an age band keep their bounds."""

from __future__ import annotations

import ast
from pathlib import Path

from clinicgym.envs.severity import SEVERITIES
from clinicgym.patients.knowledge.bands import (
    AGE_BANDS,
    ENCODED_AGE_BANDS,
    MAX_GENERATED_AGE,
    SETTINGS,
    age_band,
)

ROOT = Path(__file__).resolve().parents[3]
LAYERS = ("patients", "envs", "policies", "agents", "scoring", "runs")
ONCE = {"SEVERITIES": "envs/severity.py", "Severity": "envs/severity.py"} | {
    name: "patients/knowledge/bands.py"
    for name in ("SETTINGS", "Setting", "AGE_BANDS", "AgeBand", "POPULATION_AGE_BANDS")
}


def test_the_two_age_bands_share_cuts_and_differ_only_at_the_top():
    assert list(AGE_BANDS.values())[:-1] == list(ENCODED_AGE_BANDS[:-1])
    assert AGE_BANDS["65+"] == (65, MAX_GENERATED_AGE) == (65, 95)
    assert ENCODED_AGE_BANDS[-1] == (65, 200)
    assert [age_band(a) for a in (0, 4, 5, 17, 18, 64, 65, 95, 101)] == [
        "0-4", "0-4", "5-17", "5-17", "18-39", "40-64", "65+", "65+", "65+",
    ]  # fmt: skip
    assert SETTINGS[0] == "primary_care" and len(SETTINGS) == 5
    assert SEVERITIES == ("low", "medium", "high", "critical")


def test_each_is_declared_in_one_module():
    # an assignment at module level of one of these names anywhere else is a second copy
    found: dict[str, list[str]] = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AnnAssign)
                    else []
                )
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in ONCE:
                        found.setdefault(t.id, []).append(str(path.relative_to(ROOT)))
    assert found == {name: [where] for name, where in ONCE.items()}
