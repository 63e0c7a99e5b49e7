"""SDV cohorts: the cohort table with its SDV metadata and KB rules (`cohort`), the
synthesizers and fair, KB-checked sampling (`synthesis`, which needs the 'cohorts' extra), the
cohort report, failure targeting, a generation job (`job`: every option of `clinicgym cohort
generate`, checked before anything is fitted, and `generate_cohort`), and clinicians' feedback
(`feedback`: what a cohort keeps and applies; `feedback_round`: planning a round and writing
the next cohort).

Names load on first use (PEP 562), so importing one module of this package does not import the
others (the synthesizers need SDV, the patient's encoder its weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinicgym.patients._faces import lazy_exports

if TYPE_CHECKING:
    from clinicgym.patients.cohorts.cohort import (
        ID_COLUMN,
        Cohort,
        CohortManifest,
        CohortSchema,
        SourceInfo,
        file_sha256,
        icd10_chapter,
        row_ids,
        write_cohort,
    )
    from clinicgym.patients.cohorts.cohort_report import build_report, compare, write_report
    from clinicgym.patients.cohorts.feedback import (
        FEEDBACK_FILE,
        CohortFeedback,
        DiagnosisProposal,
        Disagreement,
        FactFix,
        FeedbackInputs,
        PersonaFix,
        Unfixed,
        dump_queue,
        load_feedback,
        queue_lines,
    )
    from clinicgym.patients.cohorts.feedback_round import plan_feedback, write_feedback_cohort
    from clinicgym.patients.cohorts.job import CohortJob, CohortResult, KBSeed, generate_cohort
    from clinicgym.patients.cohorts.synthesis import (
        SYNTHESIZERS,
        CohortSynthesizer,
        SynthesizerConfig,
        generate,
        parse_balance,
        plan_sampling,
        subgroup_shares,
    )
    from clinicgym.patients.cohorts.targeting import TargetMix, target_mix

_EXPORTS = {
    "ID_COLUMN": "cohort",
    "CohortSchema": "cohort",
    "CohortManifest": "cohort",
    "SourceInfo": "cohort",
    "Cohort": "cohort",
    "write_cohort": "cohort",
    "row_ids": "cohort",
    "icd10_chapter": "cohort",
    "file_sha256": "cohort",
    "SYNTHESIZERS": "synthesis",
    "SynthesizerConfig": "synthesis",
    "CohortSynthesizer": "synthesis",
    "plan_sampling": "synthesis",
    "generate": "synthesis",
    "parse_balance": "synthesis",
    "subgroup_shares": "synthesis",
    "build_report": "cohort_report",
    "write_report": "cohort_report",
    "compare": "cohort_report",
    "CohortJob": "job",
    "CohortResult": "job",
    "KBSeed": "job",
    "generate_cohort": "job",
    "TargetMix": "targeting",
    "target_mix": "targeting",
    "FEEDBACK_FILE": "feedback",
    "FactFix": "feedback",
    "PersonaFix": "feedback",
    "Unfixed": "feedback",
    "DiagnosisProposal": "feedback",
    "Disagreement": "feedback",
    "FeedbackInputs": "feedback",
    "CohortFeedback": "feedback",
    "load_feedback": "feedback",
    "queue_lines": "feedback",
    "dump_queue": "feedback",
    "plan_feedback": "feedback_round",
    "write_feedback_cohort": "feedback_round",
}
__all__ = [
    "FEEDBACK_FILE",
    "ID_COLUMN",
    "SYNTHESIZERS",
    "Cohort",
    "CohortFeedback",
    "CohortJob",
    "CohortManifest",
    "CohortResult",
    "CohortSchema",
    "CohortSynthesizer",
    "DiagnosisProposal",
    "Disagreement",
    "FactFix",
    "FeedbackInputs",
    "KBSeed",
    "PersonaFix",
    "SourceInfo",
    "SynthesizerConfig",
    "TargetMix",
    "Unfixed",
    "build_report",
    "compare",
    "dump_queue",
    "file_sha256",
    "generate",
    "generate_cohort",
    "icd10_chapter",
    "load_feedback",
    "parse_balance",
    "plan_feedback",
    "plan_sampling",
    "queue_lines",
    "row_ids",
    "subgroup_shares",
    "target_mix",
    "write_cohort",
    "write_feedback_cohort",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
