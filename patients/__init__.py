"""Patients: the clinical knowledge base, case sampling, and the grounded patient agents."""
