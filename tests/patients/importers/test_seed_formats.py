"""Cohort seed formats in one registry (patients/importers/seeds.py): one source at a time, an
unknown kind named with the known ones, a format added by one reader and one registry entry
(a toy format here), skipped conditions returned as data, and the code map's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicgym.patients.errors import ImporterError
from clinicgym.patients.importers import seeds
from clinicgym.patients.importers.completion import ImportedRow
from clinicgym.patients.importers.seeds import SeedFormat, SeedSource, import_seed, read_code_map

DATA = Path(__file__).parents[1] / "data"


def test_two_sources_at_once_are_refused():
    given = {"csv": DATA / "cohort.csv", "synthea": None, "fhir": [DATA / "x.json"]}
    with pytest.raises(ImporterError, match="give one seed source: --from, --from-synthea or"):
        SeedSource.from_options(given)


def test_no_source_is_none_and_one_is_typed():
    assert SeedSource.from_options({"csv": None, "synthea": None, "fhir": []}) is None
    src = SeedSource.from_options({"fhir": [DATA / "a.json", DATA / "b.json"]}, code_map=None)
    assert src is not None and src.kind == "fhir" and len(src.paths) == 2


def test_an_unknown_seed_kind_names_the_known_ones():
    with pytest.raises(ImporterError, match="unknown seed format 'xml'; use one of csv, synthea"):
        SeedSource(kind="xml", paths=(DATA / "cohort.csv",))
    with pytest.raises(ImporterError, match="unknown seed format 'xml'"):
        SeedSource.from_options({"xml": DATA / "cohort.csv"})


def test_a_single_path_format_refuses_several():
    with pytest.raises(ImporterError, match="--from: give one path, got 2"):
        SeedSource(kind="csv", paths=(DATA / "a.csv", DATA / "b.csv"))


def _toy_reader(paths, kb, *, code_map, options):
    """A toy format: one `AGE SEX CONDITION` line per row, whitespace-separated."""
    rows = []
    for n, line in enumerate(Path(paths[0]).read_text().splitlines(), start=1):
        age, sex, condition = line.split()
        if condition == "scurvy":
            continue
        rows.append(
            ImportedRow(where=f"{paths[0]} line {n}", age=int(age), sex=sex, condition=condition)
        )
    return rows, {"unmapped_conditions": {"scurvy": 2}}


def test_a_format_is_one_reader_and_one_registry_entry(small_kb, tmp_path, monkeypatch):
    monkeypatch.setitem(seeds.SEED_FORMATS, "toy", SeedFormat("toy", "--from-toy", _toy_reader))
    path = tmp_path / "seed.toy"
    path.write_text("34 female J18.9\n50 male scurvy\n61 male G43.0\n70 female scurvy\n")
    source = SeedSource.from_options({"toy": path})
    imported = import_seed(source, small_kb, seed=1)
    assert imported.table["condition_id"].tolist() == [
        "community_acquired_pneumonia",
        "migraine_without_aura",
    ]
    assert imported.source["kind"] == "toy" and imported.source["rows"] == 2
    assert imported.source["path"] == str(path) and imported.source["sha256"] is None
    assert imported.source["completed_from_kb"]["ethnicity"] == 2
    # what was skipped is data for the caller, not a print
    assert imported.skipped_conditions == {"scurvy": 2}
    assert imported.notes() == ["skipped conditions outside the KB: 2 (top: scurvy)"]


def test_csv_seed_records_its_sha256(small_kb):
    source = SeedSource(
        kind="csv",
        paths=(DATA / "cohort.csv",),
        mapping=("age=AGE_YEARS", "sex=GENDER", "condition=DX"),
        ignore_extra=True,
    )
    imported = import_seed(source, small_kb, seed=1)
    assert imported.source["kind"] == "csv" and len(imported.source["sha256"]) == 64
    assert imported.source["rows"] == 4 and imported.notes() == []


def test_code_map_errors_name_the_file_and_line(tmp_path):
    assert read_code_map(None) == {}
    good = tmp_path / "map.csv"
    good.write_text("code,condition_id\n44054006,type_2_diabetes\n")
    assert read_code_map(good) == {"44054006": "type_2_diabetes"}
    bad = tmp_path / "bad.csv"
    bad.write_text("code,condition_id\n1,2,3\n")
    with pytest.raises(ImporterError, match=r"bad.csv line 2: expected 'code,condition_id'"):
        read_code_map(bad)
    with pytest.raises(ImporterError, match=r"--code-map .*nope.csv: no such file"):
        read_code_map(tmp_path / "nope.csv")
