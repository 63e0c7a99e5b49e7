"""The cohort table: one row per patient, typed by explicit SDV metadata, and its KB rules.

A cohort row is a `PatientRecord` laid out so a tabular synthesizer can learn it and cannot
express what the KB forbids (HiSGT's lesson: keep the hierarchy in the encoding):

- demographics (`age`, `age_band`, `sex`, `ethnicity`, `insurance`), the condition with its
  ICD-10-CM code and chapter, the chief complaint and the condition's genomic marker;
- `finding_01..NN`: the condition's own findings, slot k being the k-th finding the KB links to
  that condition (so a synthetic row cannot carry a finding its condition lacks); slots past the
  condition's list, and the chief complaint's own slot, are not applicable (null);
- background findings, comorbidities and drug allergies as named booleans (medications follow
  from comorbidities through the KB);
- vital signs in their units (`vital_heart_rate`);
- `test_k_abnormal` and `test_k_value` for the condition's k-th test: whether it is abnormal and
  its value in the test's unit (null for report-only tests such as imaging).

The KB ranges that tie vitals, labs and age to the condition are handed to synthesizers as a
constraint (`synthesis.KBRangeConstraint`), so what they generate decodes inside those ranges.

`CohortSchema` maps records to rows and back and checks rows against the KB (`violations`):
rows that break it are rejected and counted by the generator, never silently kept.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from clinicgym.patients.cases.case import Case, Lineage
from clinicgym.patients.cases.realise import (
    ABNORMAL,
    NORMAL,
    CaseTable,
    Layout,
    Records,
    band_index,
    realise,
    realise_draws,
)
from clinicgym.patients.cases.record import PatientRecord
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.cohorts.feedback import load_feedback
from clinicgym.patients.errors import CohortError
from clinicgym.patients.knowledge.bands import AGE_BANDS, age_band
from clinicgym.patients.knowledge.kb import Condition, KnowledgeBase
from clinicgym.patients.knowledge.uniforms import uniform_rows

COHORT_FORMAT_VERSION = 1
TABLE = "patients"
"""The single table name in the SDV metadata."""
ID_COLUMN = "patient_id"
"""Row id: kept in records.parquet and in case lineage, never shown to a synthesizer."""
SEX_VALUES = ("female", "male")

ICD10CM_CHAPTERS: tuple[tuple[str, str, str], ...] = (
    ("A00", "B99", "Certain infectious and parasitic diseases"),
    ("C00", "D49", "Neoplasms"),
    ("D50", "D89", "Diseases of the blood and immune mechanism"),
    ("E00", "E89", "Endocrine, nutritional and metabolic diseases"),
    ("F01", "F99", "Mental, behavioral and neurodevelopmental disorders"),
    ("G00", "G99", "Diseases of the nervous system"),
    ("H00", "H59", "Diseases of the eye and adnexa"),
    ("H60", "H95", "Diseases of the ear and mastoid process"),
    ("I00", "I99", "Diseases of the circulatory system"),
    ("J00", "J99", "Diseases of the respiratory system"),
    ("K00", "K95", "Diseases of the digestive system"),
    ("L00", "L99", "Diseases of the skin and subcutaneous tissue"),
    ("M00", "M99", "Diseases of the musculoskeletal system and connective tissue"),
    ("N00", "N99", "Diseases of the genitourinary system"),
    ("O00", "O9A", "Pregnancy, childbirth and the puerperium"),
    ("P00", "P96", "Certain conditions originating in the perinatal period"),
    ("Q00", "Q99", "Congenital malformations and chromosomal abnormalities"),
    ("R00", "R99", "Symptoms, signs and abnormal findings, not elsewhere classified"),
    ("S00", "T88", "Injury, poisoning and other consequences of external causes"),
    ("U00", "U85", "Codes for special purposes"),
    ("V00", "Y99", "External causes of morbidity"),
    ("Z00", "Z99", "Factors influencing health status and contact with health services"),
)
"""ICD-10-CM chapter ranges by three-character category (CMS/NCHS ICD-10-CM Tabular List,
FY2025 edition). A code's chapter is fixed by its category, which the cohort table checks."""


def icd10_chapter(code: str) -> str | None:
    """The ICD-10-CM chapter range ('J00-J99') a code belongs to, or None if it is no code."""
    category = code.strip().upper()[:3]
    for lo, hi, _ in ICD10CM_CHAPTERS:
        if lo <= category <= hi:
            return f"{lo}-{hi}"
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@dataclass(frozen=True)
class VitalBounds:
    """Per age band, the lowest and highest value of one vital sign the KB can produce."""

    id: str
    plausible: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class CohortSchema:
    """The cohort table of one KB: its columns, SDV metadata, record <-> row mapping, KB rules."""

    kb: KnowledgeBase
    finding_slots: int
    test_slots: int
    background: tuple[str, ...]
    comorbidities: tuple[str, ...]
    allergies: tuple[str, ...]
    vitals: tuple[str, ...]
    _bounds: dict[str, VitalBounds] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def for_kb(cls, kb: KnowledgeBase) -> CohortSchema:
        """The schema for a KB: as many slots as its longest condition needs."""
        bounds = {v.id: _vital_bounds(kb, v.id) for v in kb.vitals.values()}
        return cls(
            kb=kb,
            finding_slots=max(len(c.findings) for c in kb.conditions.values()),
            test_slots=max((len(c.tests) for c in kb.conditions.values()), default=0),
            background=tuple(b.id for b in kb.background.findings),
            comorbidities=tuple(c.id for c in kb.background.comorbidities),
            allergies=tuple(a.group for a in kb.background.allergies),
            vitals=tuple(kb.vitals),
            _bounds=bounds,
        )

    # ---- columns ----------------------------------------------------------------------

    def finding_column(self, k: int) -> str:
        return f"finding_{k + 1:02d}"

    def vital_column(self, vid: str) -> str:
        return f"vital_{vid}"

    @cached_property
    def finding_columns(self) -> list[str]:
        return [self.finding_column(k) for k in range(self.finding_slots)]

    @cached_property
    def test_columns(self) -> list[tuple[str, str]]:
        return [(f"test_{k + 1}_abnormal", f"test_{k + 1}_value") for k in range(self.test_slots)]

    @cached_property
    def columns(self) -> dict[str, dict[str, Any]]:
        """Column name -> SDV (V2) column metadata, in table order (the id column excluded).

        Categories the KB defines are declared with `range_values`, so SDV itself rejects an
        unknown condition or sex; numbers carry their ranges and decimal places."""
        kb = self.kb
        conds = sorted(kb.conditions.values(), key=lambda c: c.id)

        def cat(values: Iterable[str] | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {"sdtype": "categorical"}
            if values is not None:
                out["range_values"] = sorted(set(values))
            return out

        def num(lo: float | None = None, hi: float | None = None, dp: int | None = None) -> dict:
            out: dict[str, Any] = {"sdtype": "numerical"}
            if lo is not None:
                out["range_min"], out["range_max"] = lo, hi
            if dp is not None:
                out["decimal_places"] = dp
            return out

        cols: dict[str, dict[str, Any]] = {
            "age": num(0, 120, 0),
            "age_band": cat(AGE_BANDS),
            "sex": cat(SEX_VALUES),
            "ethnicity": cat(),
            "insurance": cat(),
            "condition_id": cat(c.id for c in conds),
            "icd10": cat(c.icd10 for c in conds),
            "icd10_chapter": cat(f"{lo}-{hi}" for lo, hi, _ in ICD10CM_CHAPTERS),
            "chief_complaint": cat(cc for c in conds for cc in c.chief_complaint),
            "genomic_marker": cat(_marker(c) for c in conds),
        }
        for c in self.finding_columns:
            cols[c] = {"sdtype": "boolean"}
        for b in self.background:
            cols[f"bg_{b}"] = {"sdtype": "boolean"}
        for v in self.vitals:
            cols[self.vital_column(v)] = num(dp=kb.vitals[v].decimals)
        for ab, val in self.test_columns:
            cols[ab] = {"sdtype": "boolean"}
            cols[val] = num()
        for c in self.comorbidities:
            cols[f"comorbid_{_slug(c)}"] = {"sdtype": "boolean"}
        for a in self.allergies:
            cols[f"allergy_{_slug(a)}"] = {"sdtype": "boolean"}
        return cols

    @cached_property
    def demographic_columns(self) -> list[str]:
        """The columns fixed together with the condition (FixedCombinations in synthesis)."""
        return [
            "condition_id",
            "icd10",
            "icd10_chapter",
            "genomic_marker",
            "chief_complaint",
            "sex",
            "age_band",
            "insurance",
        ]

    def describe(self) -> dict[str, str]:
        """Column -> what it holds, for the cohort manifest and docs."""
        out = {
            "age": "age in years",
            "age_band": f"KB age band ({', '.join(AGE_BANDS)})",
            "sex": "female or male",
            "ethnicity": "demographic only; never changes a fact",
            "insurance": "payer",
            "condition_id": "KB condition id (the diagnosis)",
            "icd10": "ICD-10-CM code of the condition",
            "icd10_chapter": "ICD-10-CM chapter range of the code",
            "chief_complaint": "KB finding id the patient presents with",
            "genomic_marker": "the condition's causal variant ('GENE variant') or 'none'",
        }
        for k, c in enumerate(self.finding_columns):
            out[c] = (
                f"present? the condition's finding #{k + 1} in KB order; null if the condition "
                "has fewer findings or this is the chief complaint"
            )
        for b in self.background:
            out[f"bg_{b}"] = f"background finding '{b}' present?"
        for v in self.vitals:
            out[self.vital_column(v)] = f"{self.kb.vitals[v].name} ({self.kb.vitals[v].unit})"
        for k, (ab, val) in enumerate(self.test_columns):
            out[ab] = f"the condition's test #{k + 1} (KB order) abnormal? null if it has fewer"
            out[val] = f"test #{k + 1}'s value in its unit; null for report-only tests"
        for c in self.comorbidities:
            out[f"comorbid_{_slug(c)}"] = f"comorbidity '{c}' (its usual medications follow)"
        for a in self.allergies:
            out[f"allergy_{_slug(a)}"] = f"drug allergy '{a}'"
        return out

    def metadata_dict(self) -> dict[str, Any]:
        """The SDV metadata, declared column by column (never detected from data)."""
        return {
            "METADATA_SPEC_VERSION": "V2",
            "tables": {TABLE: {"columns": dict(self.columns)}},
            "relationships": [],
        }

    def metadata(self) -> Any:
        """An `sdv.metadata.Metadata` for the table, validated."""
        from sdv.metadata import Metadata

        md = Metadata.load_from_dict(self.metadata_dict())
        md.validate()
        return md

    @cached_property
    def _sampler(self) -> CaseSampler:
        return CaseSampler(self.kb)

    # ---- records -> rows ----------------------------------------------------------------

    def row(self, record: PatientRecord) -> dict[str, Any]:
        """One record as a table row (without the id)."""
        kb = self.kb
        cond = kb.conditions.get(record.condition_id)
        if cond is None:
            raise CohortError(f"record: unknown condition id '{record.condition_id}'")
        band = age_band(record.age)
        row: dict[str, Any] = {
            "age": int(record.age),
            "age_band": band,
            "sex": record.sex,
            "ethnicity": record.ethnicity,
            "insurance": record.insurance,
            "condition_id": cond.id,
            "icd10": cond.icd10,
            "icd10_chapter": icd10_chapter(cond.icd10),
            "chief_complaint": record.chief_complaint,
            "genomic_marker": _marker(cond),
        }
        for k, col in enumerate(self.finding_columns):
            if k < len(cond.findings) and cond.findings[k].id != record.chief_complaint:
                value = record.findings.get(cond.findings[k].id)
                row[col] = None if value is None else bool(value)
            else:
                row[col] = None
        for b in self.background:
            row[f"bg_{b}"] = bool(record.findings.get(b, False))
        for vid in self.vitals:
            row[self.vital_column(vid)] = record.vitals.get(vid)
        for k, (ab, val) in enumerate(self.test_columns):
            row[ab], row[val] = None, None
            if k < len(cond.tests):
                out = record.tests.get(cond.tests[k].id)
                if out is not None:
                    row[ab], row[val] = bool(out.abnormal), out.value
        for c in self.comorbidities:
            row[f"comorbid_{_slug(c)}"] = c in record.comorbidities
        for a in self.allergies:
            row[f"allergy_{_slug(a)}"] = a in record.allergies
        return row

    def table(
        self, records: Iterable[PatientRecord], ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Records as a typed cohort table, with `patient_id` first."""
        rows = [self.row(r) for r in records]
        df = self.typed(pd.DataFrame(rows, columns=list(self.columns)))
        df.insert(0, ID_COLUMN, list(ids) if ids is not None else _ids("s", len(df)))
        return df

    def typed(self, df: pd.DataFrame) -> pd.DataFrame:
        """Cast columns to the dtypes the metadata declares (booleans nullable, age Int64)."""
        df = df.copy()
        for col, meta in self.columns.items():
            if col not in df:
                continue
            if meta["sdtype"] == "boolean":
                df[col] = df[col].astype("boolean")
            elif meta["sdtype"] == "numerical" and meta.get("decimal_places") == 0:
                df[col] = pd.to_numeric(df[col]).round().astype("Int64")
            elif meta["sdtype"] == "numerical":
                df[col] = pd.to_numeric(df[col]).astype("float64")
            else:
                df[col] = df[col].astype("object").where(df[col].notna(), None)
        return df

    # ---- rows -> records ----------------------------------------------------------------

    def decode(
        self, df: pd.DataFrame, seed: int, start: int = 0, filled: Counter | None = None
    ) -> Records:
        """Rows back to full records, column by column (one numpy pass per condition, so a
        10,000-row cohort decodes in a fraction of SDV's sampling time). Applicable cells the
        synthesizer left empty are drawn from the KB, as the case sampler would, from row
        `start + i`'s own uniforms for `seed`, and counted in `filled` (finding, vital, test)."""
        if df["condition_id"].isna().any():
            raise CohortError("decode: rows without a condition_id")
        kb = self.kb
        filled = filled if filled is not None else Counter()
        d = _Decoding(self, df, seed, start)
        groups = df.groupby("condition_id", sort=True, observed=True).indices
        for cid, rows in groups.items():
            cond = kb.conditions.get(cid)
            if cond is None:
                raise CohortError(f"decode: unknown condition id '{cid}'")
            d.add_findings(cond, rows)
            d.add_vital_ranges(cond, rows)
            d.add_tests(cond, rows)
        d.round_test_values()
        vit = d.drawn_vitals()
        filled.update({k: c for k, c in d.missing.items() if c})
        return Records(
            kb=kb,
            condition=df["condition_id"].tolist(),
            age=d.ages.tolist(),
            sex=d.sexes,
            ethnicity=[str(x) for x in df["ethnicity"].tolist()],
            insurance=[str(x) for x in df["insurance"].tolist()],
            chief_complaint=d.ccs,
            layouts=d.layouts,
            layout=d.layout,
            present=d.present[:, : max((len(sh.ids) for sh in d.layouts), default=0)],
            vitals=vit,
            test_state=d.state,
            test_value=d.value,
            comorbidities=_flags(df, self.comorbidities, [c for _, c in self._comorbid_columns]),
            allergies=_flags(df, self.allergies, [c for _, c in self._allergy_columns]),
            test_text={},
        )

    def record(self, row: dict[str, Any], seed: int, index: int = 0) -> PatientRecord:
        """One row back to a full record, as `decode` gives row `index` of a table."""
        df = self.typed(pd.DataFrame([row], columns=[c for c in row if c in self.columns]))
        return self.decode(df, seed, start=index).record(0)

    @cached_property
    def _widest_layout(self) -> int:
        """The most findings any record can hold: a condition's own, every must-ask finding
        of its look-alikes, and the background findings."""
        out = 0
        for c in self.kb.conditions.values():
            negatives = [
                link.id
                for d in c.differential
                for link in self.kb.conditions[d].findings
                if link.salience == "must_ask"
            ]
            ids = dict.fromkeys([*(f.id for f in c.findings), *negatives, *self.background])
            out = max(out, len(ids))
        return out

    @cached_property
    def _background_index(self) -> dict[str, int]:
        return {b: k for k, b in enumerate(self.background)}

    @cached_property
    def _vital_index(self) -> dict[str, int]:
        return {v: j for j, v in enumerate(self.kb.vitals)}

    @cached_property
    def _test_index(self) -> dict[str, int]:
        return {t: j for j, t in enumerate(self.kb.tests)}

    @cached_property
    def _comorbid_columns(self) -> list[tuple[str, str]]:
        return [(c, f"comorbid_{_slug(c)}") for c in self.comorbidities]

    @cached_property
    def _allergy_columns(self) -> list[tuple[str, str]]:
        return [(a, f"allergy_{_slug(a)}") for a in self.allergies]

    @cached_property
    def _normal_ranges(self) -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
        """Numeric tests: index, and the sampler's draw range for a normal result (the normal
        range less 10% at each end)."""
        tests = [t for t in self.kb.tests.values() if t.normal is not None]
        lo = np.array([t.normal[0] + 0.1 * (t.normal[1] - t.normal[0]) for t in tests])  # type: ignore[index]
        width = np.array([0.8 * (t.normal[1] - t.normal[0]) for t in tests])  # type: ignore[index]
        decimals = np.array([t.decimals for t in tests])
        return {t.id: i for i, t in enumerate(tests)}, lo, width, decimals

    # ---- the KB's rules, on whole tables --------------------------------------------------

    @cached_property
    def _maps(self) -> dict[str, Any]:
        """Look-up tables for the vectorised KB rules (condition -> ..., 'cond|x' -> ...)."""
        conds = self.kb.conditions.values()
        m: dict[str, Any] = {
            "n_findings": {c.id: len(c.findings) for c in conds},
            "cc_slot": {f"{c.id}|{f.id}": k for c in conds for k, f in enumerate(c.findings)},
            "icd10": {c.id: c.icd10 for c in conds},
            "chapter": {c.icd10: icd10_chapter(c.icd10) for c in conds},
            "marker": {c.id: _marker(c) for c in conds},
            "sex": {c.id: c.sex for c in conds},
            "age_lo": {c.id: float(c.age[0]) for c in conds},
            "age_hi": {c.id: float(c.age[1]) for c in conds},
            "cc_ok": {f"{c.id}|{cc}" for c in conds for cc in c.chief_complaint},
            "band_of_age": {a: age_band(a) for a in range(0, 121)},
        }
        for k in range(self.test_slots):
            m[f"has_test_{k}"] = {c.id: k < len(c.tests) for c in conds}
            m[f"numeric_test_{k}"] = {
                c.id: k < len(c.tests) and self.kb.tests[c.tests[k].id].normal is not None
                for c in conds
            }
            bounds: dict[str, tuple[float, float]] = {}
            for c in conds:
                for flag in (True, False):
                    lo_hi = _test_bounds(self.kb, c, k, flag)
                    if not np.isnan(lo_hi[0]):
                        bounds[f"{c.id}|{flag}"] = lo_hi
            m[f"test_bounds_{k}"] = bounds
        return m

    def normalise(self, df: pd.DataFrame) -> pd.DataFrame:
        """Blank the cells that are not applicable to the row's condition (finding slots past its
        list or holding its chief complaint, test slots past its tests, values of report-only
        tests), so real and synthetic tables compare like for like. Returns a copy."""
        df = df.copy()
        m = self._maps
        cid = df["condition_id"].astype(str)
        n_find = cid.map(m["n_findings"]).fillna(0)
        cc_slot = (cid + "|" + df["chief_complaint"].astype(str)).map(m["cc_slot"]).fillna(-1)
        for k, col in enumerate(self.finding_columns):
            df.loc[(n_find <= k) | (cc_slot == k), col] = pd.NA
        for k, (ab, val) in enumerate(self.test_columns):
            df.loc[~cid.map(m[f"has_test_{k}"]).fillna(False).astype(bool), ab] = pd.NA
            df.loc[~cid.map(m[f"numeric_test_{k}"]).fillna(False).astype(bool), val] = np.nan
        return df

    def violations(self, df: pd.DataFrame) -> pd.Series:
        """Per row, the first KB rule it breaks (a reason key) or None if it is consistent."""
        kb = self.kb
        m = self._maps
        reason = pd.Series([None] * len(df), index=df.index, dtype="object")

        def flag(mask: pd.Series, key: str) -> None:
            mask = mask.fillna(True).astype(bool) & reason.isna()
            reason[mask] = key

        cid = df["condition_id"].astype(str)
        flag(~cid.isin(list(kb.conditions)), "unknown_condition")
        for col in ("age", "sex", "age_band", "chief_complaint", "ethnicity", "insurance"):
            flag(df[col].isna(), f"missing_{col}")
        flag(df["icd10"] != cid.map(m["icd10"]), "icd10_mismatch")
        flag(df["icd10_chapter"] != df["icd10"].map(m["chapter"]), "icd10_chapter_mismatch")
        flag(df["genomic_marker"] != cid.map(m["marker"]), "marker_mismatch")
        allowed_sex = cid.map(m["sex"])
        flag((allowed_sex != "any") & (allowed_sex != df["sex"]), "sex_not_allowed_for_condition")
        flag(~df["sex"].isin(SEX_VALUES), "unknown_sex")
        age = pd.to_numeric(df["age"], errors="coerce")
        flag(
            (age < cid.map(m["age_lo"])) | (age > cid.map(m["age_hi"])),
            "age_outside_condition_range",
        )
        flag(df["age_band"] != age.map(m["band_of_age"]), "age_band_mismatch")
        flag(
            ~(cid + "|" + df["chief_complaint"].astype(str)).isin(m["cc_ok"]),
            "chief_complaint_not_of_condition",
        )
        band = df["age_band"].astype(str)
        for cm in kb.background.comorbidities:
            col = f"comorbid_{_slug(cm.id)}"
            if col in df:
                p = band.map(cm.p).fillna(0.0)
                flag(df[col].fillna(False).astype(bool) & (p <= 0), "comorbidity_impossible_at_age")
        for vid in self.vitals:
            pb = self._bounds[vid].plausible
            value = pd.to_numeric(df[self.vital_column(vid)])
            lo_b = band.map({b: v[0] for b, v in pb.items()})
            hi_b = band.map({b: v[1] for b, v in pb.items()})
            flag((value < lo_b - 1e-9) | (value > hi_b + 1e-9), f"implausible_{vid}")
        if "systolic_bp" in self.vitals and "diastolic_bp" in self.vitals:
            flag(
                pd.to_numeric(df["vital_diastolic_bp"]) >= pd.to_numeric(df["vital_systolic_bp"]),
                "diastolic_not_below_systolic",
            )
        for k, (ab, val) in enumerate(self.test_columns):
            key = cid + "|" + df[ab].astype(str)
            bounds = m[f"test_bounds_{k}"]
            lo_t = key.map({x: v[0] for x, v in bounds.items()})
            hi_t = key.map({x: v[1] for x, v in bounds.items()})
            value = pd.to_numeric(df[val])
            flag((value < lo_t - 1e-9) | (value > hi_t + 1e-9), "implausible_lab_value")
        return reason

    def check_columns(self, df: pd.DataFrame, where: str) -> None:
        """Raise CohortError naming every missing, extra or mistyped column of a cohort table."""
        problems: list[str] = []
        expected = list(self.columns)
        missing = [c for c in expected if c not in df.columns]
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        extra = [c for c in df.columns if c not in expected and c != ID_COLUMN]
        if extra:
            problems.append(f"unexpected columns: {', '.join(map(str, extra))}")
        for col, meta in self.columns.items():
            if col not in df:
                continue
            s = df[col].dropna()
            if meta["sdtype"] == "numerical":
                bad = s[pd.to_numeric(s, errors="coerce").isna()]
                if len(bad):
                    problems.append(
                        f"column '{col}': expected a number, found {bad.iloc[0]!r} "
                        f"(row {bad.index[0]})"
                    )
            elif meta["sdtype"] == "boolean":
                bad = s[~s.map(lambda v: isinstance(v, bool | np.bool_))]
                if len(bad):
                    problems.append(
                        f"column '{col}': expected true/false, found {bad.iloc[0]!r} "
                        f"(row {bad.index[0]})"
                    )
        if problems:
            raise CohortError(f"{where}: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------


def _floats(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """The cells of `cols` as an (n, len(cols)) float array, NaN where empty."""
    if not cols:
        return np.empty((len(df), 0))
    return df[cols].to_numpy(dtype=float, na_value=np.nan)


def _flags(df: pd.DataFrame, names: Sequence[str], cols: list[str]) -> list[tuple[str, ...]]:
    """Per row, the `names` whose boolean column (`cols`, same order) is true."""
    on = _floats(df, cols) == 1
    return [tuple(names[j] for j in np.flatnonzero(row)) for row in on]


class _Decoding:
    """One table being decoded by `CohortSchema.decode`: the rows' cells and uniforms in, and
    the record arrays (findings present, layouts, vitals, test states and values) filled in
    condition by condition, with the empty cells drawn counted in `missing`."""

    def __init__(self, schema: CohortSchema, df: pd.DataFrame, seed: int, start: int) -> None:
        kb = self.kb = schema.kb
        self.schema = schema
        n, fs, ts = len(df), schema.finding_slots, schema.test_slots
        self.vitals, self.tests = list(kb.vitals.values()), list(kb.tests.values())
        num_ids = schema._normal_ranges[0]
        nv = len(self.vitals)
        self.u = uniform_rows(seed, 0, start, n, fs + nv + 2 * ts + len(num_ids))
        self.u_vital, self.u_ab, self.u_val = fs, fs + nv, fs + nv + ts
        self.slots = _floats(df, schema.finding_columns)
        self.background = _floats(df, [f"bg_{b}" for b in schema.background]) == 1
        self.vit = _floats(df, [schema.vital_column(v.id) for v in self.vitals])
        self.ab_cells = _floats(df, [ab for ab, _ in schema.test_columns])
        self.val_cells = _floats(df, [val for _, val in schema.test_columns])
        self.ages = df["age"].to_numpy(dtype=np.int64)
        self.sexes, self.ccs = df["sex"].tolist(), df["chief_complaint"].tolist()
        self.state, self.value = self._normal_tests(fs + nv + 2 * ts)
        self.lo, self.hi, self.pad = self._normal_vitals()
        self.present = np.zeros((n, schema._widest_layout), dtype=bool)
        self.layout = np.zeros(n, dtype=np.int32)
        self.layouts: list[Layout] = []
        self.index: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        self.from_background: list[list[tuple[int, int]]] = []  # layout -> (position, bg column)
        self.missing = {"finding": 0, "vital": 0, "test": 0}

    def _normal_tests(self, u_normal: int) -> tuple[np.ndarray, np.ndarray]:
        """Every test normal, numeric ones valued as the sampler draws them: what tests outside
        a row's condition stay."""
        num_ids, num_lo, num_width, _ = self.schema._normal_ranges
        n = len(self.ages)
        state = np.full((n, len(self.tests)), NORMAL, dtype=np.int8)
        value = np.full((n, len(self.tests)), np.nan)
        numeric = [j for j, t in enumerate(self.tests) if t.id in num_ids]
        value[:, numeric] = num_lo + self.u[:, u_normal:] * num_width
        return state, value

    def _normal_vitals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row and vital, the age band's normal range (lo, hi) and a 10% pad a side: where
        a vital the synthesizer left empty is drawn unless the condition sets the range."""
        n = len(self.ages)
        bands = band_index(self.ages)
        lo = np.empty((n, len(self.vitals)))
        hi = np.empty((n, len(self.vitals)))
        pad = np.full((n, len(self.vitals)), 0.1)
        for j, v in enumerate(self.vitals):
            normal = np.array([v.normal[b] for b in AGE_BANDS])  # type: ignore[index]
            lo[:, j], hi[:, j] = normal[bands, 0], normal[bands, 1]
        return lo, hi, pad

    def add_findings(self, cond: Condition, rows: np.ndarray) -> None:
        """The condition's rows: their own findings (cells, or drawn where empty; the chief
        complaint always present), placed in each row's layout with its background findings."""
        nf = len(cond.findings)
        slot_of = {link.id: k for k, link in enumerate(cond.findings)}
        is_cc = np.array([slot_of.get(self.ccs[i], -1) for i in rows])[:, None] == np.arange(nf)
        cells = self.slots[rows, :nf]
        empty = np.isnan(cells) & ~is_cc
        self.missing["finding"] += int(empty.sum())
        p = np.array([link.p for link in cond.findings])
        own = np.where(empty, self.u[rows, :nf] < p, cells == 1) | is_cc
        row_shape = self._row_layouts(cond, rows, slot_of)
        self.layout[rows] = row_shape
        for li in np.unique(row_shape):
            mask = row_shape == li
            sub = rows[mask]
            self.present[sub, :nf] = own[mask]
            for k, b in self.from_background[li]:
                self.present[sub, k] = self.background[sub, b]

    def _row_layouts(
        self, cond: Condition, rows: np.ndarray, slot_of: dict[str, int]
    ) -> np.ndarray:
        """Each row's layout index: pertinent negatives depend on age and sex, so one layout per
        (age, sex) seen, shared by every condition row with the same findings and negatives."""
        shape_of: dict[tuple[int, str], int] = {}
        row_shape = np.empty(len(rows), dtype=np.int32)
        for r, i in enumerate(rows):
            key = (int(self.ages[i]), self.sexes[i])
            if key not in shape_of:
                negatives = self.schema._sampler.pertinent_negatives(cond, *key)
                ids = tuple(dict.fromkeys([*slot_of, *negatives, *self.schema.background]))
                shape_of[key] = self._layout_index(cond, ids, negatives, slot_of)
            row_shape[r] = shape_of[key]
        return row_shape

    def _layout_index(
        self, cond: Condition, ids: tuple[str, ...], negatives: Any, slot_of: dict[str, int]
    ) -> int:
        """The index of the layout of `ids` with these negatives, added on first sight with the
        positions its background findings take from the row's background columns."""
        lkey = (ids, tuple(negatives))
        if lkey not in self.index:
            self.index[lkey] = len(self.layouts)
            self.layouts.append(Layout.of(self.kb, cond, ids))
            denied = set(slot_of) | set(negatives)
            self.from_background.append(
                [
                    (k, self.schema._background_index[fid])
                    for k, fid in enumerate(ids)
                    if fid not in denied
                ]
            )
        return self.index[lkey]

    def add_vital_ranges(self, cond: Condition, rows: np.ndarray) -> None:
        """The condition's vital ranges replace the normal ones for its rows (drawn unpadded)."""
        for vid, (vlo, vhi) in cond.vitals.items():
            j = self.schema._vital_index[vid]
            self.lo[rows, j], self.hi[rows, j], self.pad[rows, j] = vlo, vhi, 0.0

    def add_tests(self, cond: Condition, rows: np.ndarray) -> None:
        """The condition's tests for its rows: abnormal or not and the value, from the cells or
        drawn where empty (abnormal values from the KB's range, normal ones inside the normal
        range padded 10%); report-only tests get no value."""
        for k, spec in enumerate(cond.tests):
            j, t = self.schema._test_index[spec.id], self.kb.tests[spec.id]
            ab = self.ab_cells[rows, k]
            empty_ab = np.isnan(ab)
            abnormal = np.where(empty_ab, self.u[rows, self.u_ab + k] < spec.p, ab == 1)
            self.state[rows, j] = np.where(abnormal, ABNORMAL, NORMAL)
            self.missing["test"] += int(empty_ab.sum())
            if t.normal is None:
                self.value[rows, j] = np.nan
                continue
            v = self.val_cells[rows, k]
            empty_v = np.isnan(v)
            self.missing["test"] += int(empty_v.sum())
            nlo, nhi = t.normal
            npad = 0.1 * (nhi - nlo)
            alo, ahi = spec.value if spec.value else (nlo + npad, nhi - npad)
            flo = np.where(abnormal, alo, nlo + npad)
            fhi = np.where(abnormal, ahi, nhi - npad)
            u = self.u[rows, self.u_val + k]
            self.value[rows, j] = np.where(empty_v, flo + u * (fhi - flo), v)

    def round_test_values(self) -> None:
        """Round every numeric test value to its test's decimals."""
        for j, t in enumerate(self.tests):
            if t.normal is not None:
                self.value[:, j] = np.round(self.value[:, j], t.decimals)

    def drawn_vitals(self) -> np.ndarray:
        """The vitals, empty cells drawn inside each row's (padded) range, rounded per vital."""
        empty = np.isnan(self.vit)
        self.missing["vital"] += int(empty.sum())
        lo, hi, pad = self.lo, self.hi, self.pad
        span = (hi - lo) * (1 - 2 * pad)
        vit = np.where(
            empty, lo + (hi - lo) * pad + self.u[:, self.u_vital : self.u_ab] * span, self.vit
        )
        for j, v in enumerate(self.vitals):
            vit[:, j] = np.round(vit[:, j], v.decimals)
        return vit


def _ids(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(start, start + n)]


def row_ids(prefix: str, n: int, start: int = 0) -> list[str]:
    """Row ids like 's000000' (seed) or 'p000000' (synthetic)."""
    return _ids(prefix, n, start)


def _marker(cond: Condition) -> str:
    if not cond.genetics:
        return "none"
    g = cond.genetics[0]
    return f"{g.gene} {g.variant}"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _index_of(links: Sequence[Any], fid: str) -> int:
    for k, link in enumerate(links):
        if link.id == fid:
            return k
    return -1


def _test_spec(cond: Condition | None, k: int) -> Any:
    if cond is None or k >= len(cond.tests):
        return None
    return cond.tests[k]


def _vital_bounds(kb: KnowledgeBase, vid: str) -> VitalBounds:
    v = kb.vitals[vid]
    plausible = {}
    for band, (lo, hi) in v.normal.items():
        blo, bhi = AGE_BANDS[band]
        p_lo, p_hi = lo, hi
        for c in kb.conditions.values():
            if vid in c.vitals and c.age[0] <= bhi and c.age[1] >= blo:
                p_lo, p_hi = min(p_lo, c.vitals[vid][0]), max(p_hi, c.vitals[vid][1])
        if vid == "diastolic_bp" and "systolic_bp" in kb.vitals:
            p_lo = min(p_lo, _vital_bounds(kb, "systolic_bp").plausible[band][0] - 20)
        plausible[band] = (p_lo, p_hi)
    return VitalBounds(id=vid, plausible=plausible)


def _test_bounds(kb: KnowledgeBase, cond: Condition | None, k: int, abnormal: Any) -> tuple:
    """The range a lab value in slot k may take (the abnormal or normal KB range), or (nan, nan)
    when there is nothing to check."""
    if cond is None or k >= len(cond.tests) or _missing(abnormal):
        return (np.nan, np.nan)
    spec = cond.tests[k]
    test = kb.tests[spec.id]
    lo_hi = spec.value if abnormal and spec.value else test.normal
    if lo_hi is None:
        return (np.nan, np.nan)
    lo, hi = lo_hi
    return (lo, hi)


# --------------------------------------------------------------------------------------------
# The cohort directory


RECORDS_FILE = "records.parquet"
MANIFEST_FILE = "manifest.json"
SEED_DIR = "seed"
"""seed/train.parquet and seed/holdout.parquet: what the synthesizer learned from and the rows
kept back as the privacy baseline. A real seed is real data: do not share this folder."""


class SourceInfo(BaseModel):
    """Where the seed rows came from."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["kb", "csv", "synthea", "fhir", "cohort"]
    path: str | None = None
    sha256: str | None = None
    rows: int
    kb_seed: int | None = None
    """Seed of the KB sampler (kind 'kb')."""
    weighting: str | None = None
    completed_from_kb: dict[str, int] = {}
    """Imported cells the source lacked and the KB filled in, by kind."""
    dropped: dict[str, int] = {}
    """Imported rows left out, by reason (only with --drop-inconsistent)."""


class CohortManifest(BaseModel):
    """manifest.json of a cohort directory: how it was made and what was rejected."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = COHORT_FORMAT_VERSION
    cohort_id: str
    created: str
    clinicgym_version: str
    sdv_version: str
    kb_version: str
    kb_dir: str | None = None
    source: SourceInfo
    synthesizer: dict[str, Any]
    """Name, parameters, fit seed, fit seconds, trained rows."""
    seed: int
    """Sampling seed: the same seed and synthesizer give the same rows."""
    split: dict[str, int]
    plan: dict[str, Any]
    counts: dict[str, Any]
    """Drawn, kept, rejected by KB rule, exact copies dropped (GenerationStats)."""
    lineage: dict[str, Any] = {}
    """parent_cohort (a reused synthesizer), target_run (targeted generation)."""
    targeting: dict[str, Any] | None = None
    columns: dict[str, str] = {}
    files: list[str] = []


class Cohort:
    """A cohort directory: manifest, synthetic records, seed split, synthesizer, reports."""

    def __init__(self, root: Path, manifest: CohortManifest, schema: CohortSchema) -> None:
        self.root = root
        self.manifest = manifest
        self.schema = schema
        self._table: pd.DataFrame | None = None

    @property
    def id(self) -> str:
        return self.manifest.cohort_id

    @classmethod
    def open(cls, root: Path | str, kb: KnowledgeBase | None = None) -> Cohort:
        """Open a cohort directory; its KB (the bundled one or `kb_dir`) must be the version the
        cohort was made with, or case realisation would mix two KBs."""
        root = Path(root)
        path = root / MANIFEST_FILE
        if not path.exists():
            raise CohortError(f"{root}: not a cohort directory (no {MANIFEST_FILE})")
        try:
            manifest = CohortManifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as e:
            first = e.errors()[0]
            raise CohortError(
                f"{path}: not a valid cohort manifest ({e.error_count()} problems; first: field "
                f"'{'.'.join(map(str, first['loc']))}': {first['msg']})"
            ) from None
        if kb is None:
            from clinicgym.patients.knowledge.kb import default_kb, load_kb

            kb = load_kb(manifest.kb_dir) if manifest.kb_dir else default_kb()
        if kb.version != manifest.kb_version:
            raise CohortError(
                f"{root}: made with KB version {manifest.kb_version}, but the KB in use is "
                f"{kb.version}; regenerate the cohort or use the KB it was made with"
            )
        return cls(root, manifest, CohortSchema.for_kb(kb))

    # ---- tables ---------------------------------------------------------------------------

    @property
    def table(self) -> pd.DataFrame:
        """The synthetic records (records.parquet), typed."""
        if self._table is None:
            self._table = self._read(self.root / RECORDS_FILE)
        return self._table

    def seed_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(train, holdout): the seed rows fitted on and those kept back."""
        return (
            self._read(self.root / SEED_DIR / "train.parquet"),
            self._read(self.root / SEED_DIR / "holdout.parquet"),
        )

    def _read(self, path: Path) -> pd.DataFrame:
        if not path.exists():
            raise CohortError(f"{self.root}: missing {path.relative_to(self.root)}")
        df = pd.read_parquet(path)
        self.schema.check_columns(df, str(path))
        return self.schema.typed(df)

    def __len__(self) -> int:
        return len(self.table)

    # ---- realisation ----------------------------------------------------------------------

    def decoded(self, n: int | None = None, filled: Counter | None = None) -> Records:
        """The first `n` rows decoded to records (column by column; see `CohortSchema.decode`)."""
        if n is not None and n > len(self):
            raise CohortError(f"{self.root}: asked for {n} cases but the cohort has {len(self)}")
        df = self.table if n is None else self.table.head(n)
        return self.schema.decode(df, self.manifest.seed, filled=filled)

    def records(
        self, n: int | None = None, filled: Counter | None = None
    ) -> Iterator[tuple[int, str, PatientRecord]]:
        """(index, patient id, record) for the first `n` rows."""
        records = self.decoded(n, filled)
        for i, pid in enumerate(self._patient_ids(len(records))):
            yield i, pid, records.record(i)

    def case_table(self, n: int | None = None, filled: Counter | None = None) -> CaseTable:
        """The first `n` rows realised: PHI, persona and PGx results drawn for each row from
        its own uniforms; each Case (worded facts, artefacts, lineage naming synthesizer,
        version, seed and parent row) is built when read. Clinician feedback is not applied
        here (see `cases`). The same cohort gives the same cases."""
        from clinicgym import __version__

        m = self.manifest
        records = self.decoded(n, filled)
        pids = self._patient_ids(len(records))
        draws = uniform_rows(m.seed, 1, 0, len(records), realise_draws())
        source = f"sdv:{m.synthesizer['name']}"
        version = f"clinicgym {__version__}; sdv {m.sdv_version}"

        def lineage(i: int) -> Lineage:
            return Lineage(
                source=source,
                generator_version=version,
                kb_version=m.kb_version,
                seed=m.seed,
                index=i,
                parent_ids=[f"cohort:{m.cohort_id}/{pids[i]}"],
            )

        return realise(records, [f"{m.cohort_id}-{p}" for p in pids], draws, lineage)

    def cases(self, n: int | None = None, filled: Counter | None = None) -> list[Case]:
        """The first `n` rows as Cases, with the cohort's clinician feedback applied."""
        table = self.case_table(n, filled)
        feedback = self.feedback
        if feedback is None:
            return list(table)
        pids = self._patient_ids(len(table))
        return [feedback.apply(case, pid) for case, pid in zip(table, pids, strict=True)]

    def _patient_ids(self, n: int) -> list[str]:
        return self.table[ID_COLUMN].head(n).astype(str).tolist()

    @cached_property
    def feedback(self) -> Any:
        """Clinician feedback this cohort applies to every case it realises (feedback.json,
        written by `clinicgym feedback apply`; see patients/cohorts/feedback_round.py), or None."""
        return load_feedback(self.root)


def write_cohort(
    root: Path | str,
    *,
    manifest: CohortManifest,
    table: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    save_synthesizer: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a cohort directory atomically: everything goes to a temporary sibling first and is
    renamed into place only when complete, so a failure leaves nothing half-written."""
    root = Path(root)
    if root.exists() and not overwrite:
        raise CohortError(f"{root} already exists; choose another --out or pass --overwrite")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a cohort folder is not
    try:
        (tmp / SEED_DIR).mkdir()
        table.to_parquet(tmp / RECORDS_FILE, index=False)
        train.to_parquet(tmp / SEED_DIR / "train.parquet", index=False)
        holdout.to_parquet(tmp / SEED_DIR / "holdout.parquet", index=False)
        if save_synthesizer is not None:
            save_synthesizer(tmp)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        manifest = manifest.model_copy(update={"files": [*files, MANIFEST_FILE]})
        (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")
        if root.exists():
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def file_sha256(path: Path) -> str:
    """sha256 of a file, for source provenance in the manifest."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
