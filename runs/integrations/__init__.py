"""Integrations with other harnesses (inspect_ai, verifiers): clinicgym's env, patient, monitors
and scorers played under another framework's model and logs. Each module imports its framework
itself and names the pyproject extra when it is missing (docs/integrations.md)."""
