"""SDV cohorts: the cohort table, synthesis, report, targeting and clinicians' feedback."""
