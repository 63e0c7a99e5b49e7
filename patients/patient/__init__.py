"""The patient itself: the grounded patient, matching, recall, wording, guard and replay."""
