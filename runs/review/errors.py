"""Errors raised by the clinician review server, its database and the feedback commands."""

from clinicgym.runs.errors import RunError


class ReviewError(RunError):
    """A review cannot go on: an unreadable annotation file, a run directory given twice, ..."""


class AnnotationError(ReviewError):
    """An annotation is invalid (a bad field, an unknown turn or violation); says which."""


class ReviewDependencyError(ReviewError):
    """The `review` extra is not installed."""
