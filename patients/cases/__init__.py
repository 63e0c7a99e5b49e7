"""Cases: the `Case` record, the flat `PatientRecord`, generation (presentation-first
`PresentationSampler`, condition-first `CaseSampler`), the generative model and its posterior,
realisation of records into Cases (`realise` module: wording, persona, PHI, pharmacogenomics,
artefacts) and the plausibility validator.

Names load on first use (PEP 562), so importing one module of this package does not import the
others (the synthesizers need SDV, the patient's encoder its weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinicgym.patients._faces import lazy_exports

if TYPE_CHECKING:
    from clinicgym.patients.cases.artefacts import build_artefacts, with_artefacts
    from clinicgym.patients.cases.case import (
        PHI,
        AgeDetail,
        Artefact,
        Case,
        Diagnosis,
        Difficulty,
        Fact,
        Lineage,
        Persona,
        RequiredAction,
    )
    from clinicgym.patients.cases.persona import (
        PersonaBook,
        default_persona_book,
        load_persona_book,
    )
    from clinicgym.patients.cases.pgx import PgxPanel, default_panel, load_panel
    from clinicgym.patients.cases.phi import ENCOUNTER_YEAR, draw_phi
    from clinicgym.patients.cases.plausibility import violations
    from clinicgym.patients.cases.posterior import (
        Belief,
        KBModel,
        demographic_weights,
        difficulty,
        discriminating,
        look_alikes,
        model_for,
        record_verdict,
    )
    from clinicgym.patients.cases.presentation import (
        PresentationSampler,
        default_sampler,
        make_sampler,
    )
    from clinicgym.patients.cases.realise import (
        CaseTable,
        Records,
        history_wordings,
        realise_draws,
    )
    from clinicgym.patients.cases.record import PatientRecord, TestOutcome
    from clinicgym.patients.cases.sampler import ETHNICITIES, CaseSampler, Weighting

_EXPORTS = {
    "Fact": "case",
    "Diagnosis": "case",
    "Persona": "case",
    "PHI": "case",
    "RequiredAction": "case",
    "Lineage": "case",
    "Artefact": "case",
    "Difficulty": "case",
    "AgeDetail": "case",
    "Case": "case",
    "TestOutcome": "record",
    "PatientRecord": "record",
    "ETHNICITIES": "sampler",
    "Weighting": "sampler",
    "CaseSampler": "sampler",
    "PresentationSampler": "presentation",
    "make_sampler": "presentation",
    "default_sampler": "presentation",
    "KBModel": "posterior",
    "Belief": "posterior",
    "model_for": "posterior",
    "difficulty": "posterior",
    "discriminating": "posterior",
    "look_alikes": "posterior",
    "record_verdict": "posterior",
    "demographic_weights": "posterior",
    "Records": "realise",
    "CaseTable": "realise",
    "realise_draws": "realise",
    "history_wordings": "realise",
    "build_artefacts": "artefacts",
    "with_artefacts": "artefacts",
    "PersonaBook": "persona",
    "load_persona_book": "persona",
    "default_persona_book": "persona",
    "ENCOUNTER_YEAR": "phi",
    "draw_phi": "phi",
    "PgxPanel": "pgx",
    "load_panel": "pgx",
    "default_panel": "pgx",
    "violations": "plausibility",
}
__all__ = [
    "ENCOUNTER_YEAR",
    "ETHNICITIES",
    "PHI",
    "AgeDetail",
    "Artefact",
    "Belief",
    "Case",
    "CaseSampler",
    "CaseTable",
    "Diagnosis",
    "Difficulty",
    "Fact",
    "KBModel",
    "Lineage",
    "PatientRecord",
    "Persona",
    "PersonaBook",
    "PgxPanel",
    "PresentationSampler",
    "Records",
    "RequiredAction",
    "TestOutcome",
    "Weighting",
    "build_artefacts",
    "default_panel",
    "default_persona_book",
    "default_sampler",
    "demographic_weights",
    "difficulty",
    "discriminating",
    "draw_phi",
    "history_wordings",
    "load_panel",
    "load_persona_book",
    "look_alikes",
    "make_sampler",
    "model_for",
    "realise_draws",
    "record_verdict",
    "violations",
    "with_artefacts",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
