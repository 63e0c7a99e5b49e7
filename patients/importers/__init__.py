"""Importers of external patient records and case formats, one module per format (plain CSV,
Synthea CSV export and FHIR R4 bundles for cohort seeds, with FHIR export; see each module)."""
