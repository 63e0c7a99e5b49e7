"""What inspect_ai's `inspect_ai` entry point loads, so `inspect eval clinicgym/consultation`
finds the task (pyproject.toml, [project.entry-points.inspect_ai])."""

from clinicgym.runs.integrations.inspect_task import (
    clinician,
    consultation,
    inquiry_coverage,
    top1_correct,
    top3_correct,
    violations,
)

__all__ = [
    "clinician",
    "consultation",
    "inquiry_coverage",
    "top1_correct",
    "top3_correct",
    "violations",
]
