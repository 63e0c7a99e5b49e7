"""The knowledge base: its schema and loader (`kb`), the care settings and age bands declared
once (`bands`), and the per-case uniforms every draw reads (`uniforms`). The data is the YAML in
this folder; `KnowledgeBase.version` hashes the schema and every `*.yaml` file under it.

Names load on first use (PEP 562), so importing one module of this package does not import the
others (the synthesizers need SDV, the patient's encoder its weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinicgym.patients._faces import lazy_exports

if TYPE_CHECKING:
    from clinicgym.patients.knowledge.bands import (
        AGE_BANDS,
        ENCODED_AGE_BANDS,
        MAX_GENERATED_AGE,
        POPULATION_AGE_BANDS,
        SETTINGS,
        AgeBand,
        Setting,
        age_band,
    )
    from clinicgym.patients.knowledge.kb import (
        CHILD_AGE,
        EXAM_SYSTEMS,
        KNOWLEDGE_DIR,
        SCHEMA_VERSION,
        SYMPTOM_CATEGORIES,
        Condition,
        Drug,
        Finding,
        KnowledgeBase,
        LabTest,
        Presentation,
        VitalSign,
        default_kb,
        load_kb,
        name_pattern,
    )
    from clinicgym.patients.knowledge.uniforms import BLOCK_ROWS, Uniforms, uniform_rows

_EXPORTS = {
    "SCHEMA_VERSION": "kb",
    "KNOWLEDGE_DIR": "kb",
    "CHILD_AGE": "kb",
    "EXAM_SYSTEMS": "kb",
    "SYMPTOM_CATEGORIES": "kb",
    "Finding": "kb",
    "LabTest": "kb",
    "VitalSign": "kb",
    "Condition": "kb",
    "Presentation": "kb",
    "Drug": "kb",
    "KnowledgeBase": "kb",
    "name_pattern": "kb",
    "load_kb": "kb",
    "default_kb": "kb",
    "Setting": "bands",
    "SETTINGS": "bands",
    "AgeBand": "bands",
    "MAX_GENERATED_AGE": "bands",
    "AGE_BANDS": "bands",
    "POPULATION_AGE_BANDS": "bands",
    "ENCODED_AGE_BANDS": "bands",
    "age_band": "bands",
    "BLOCK_ROWS": "uniforms",
    "Uniforms": "uniforms",
    "uniform_rows": "uniforms",
}
__all__ = [
    "AGE_BANDS",
    "BLOCK_ROWS",
    "CHILD_AGE",
    "ENCODED_AGE_BANDS",
    "EXAM_SYSTEMS",
    "KNOWLEDGE_DIR",
    "MAX_GENERATED_AGE",
    "POPULATION_AGE_BANDS",
    "SCHEMA_VERSION",
    "SETTINGS",
    "SYMPTOM_CATEGORIES",
    "AgeBand",
    "Condition",
    "Drug",
    "Finding",
    "KnowledgeBase",
    "LabTest",
    "Presentation",
    "Setting",
    "Uniforms",
    "VitalSign",
    "age_band",
    "default_kb",
    "load_kb",
    "name_pattern",
    "uniform_rows",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
