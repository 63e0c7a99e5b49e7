"""Synthesizers for cohort tables, behind one interface, and fair, KB-checked generation.

`CohortSynthesizer` wraps SDV 2.x: GaussianCopula (the default), CTGAN (a GAN) and TVAE (a VAE)
fit the same cohort table with the same clinical constraints:

- `FixedCombinations` over condition, ICD-10-CM code and chapter, genomic marker, chief
  complaint, sex, age band and insurance: only combinations seen in the seed come out, so codes
  stay on their condition, sex-specific conditions keep their sex and age bands their payers;
- `KBRangeConstraint`: age, vital signs and lab values are learned as positions inside the range
  the KB gives for the row's condition and age band (or abnormal flag), so what comes out decodes
  inside those ranges, wherever the synthesizer puts the condition.

`generate` then draws from the fitted model into a `SamplingPlan` (a target mix over protected
attributes, a floor for rare conditions, filters for conditional sampling, targeted cells), checks
every row against the KB (`CohortSchema.violations`) and against the training rows (no exact
copies), and keeps count of everything it rejects.

SDV has no public seed: after `fit` it samples from a fixed random state. `_reseed` is the one
place that sets it (a private SDV method), so the same seed gives the same rows.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from clinicgym.errors import require_extra

try:
    from sdv.cag import FixedCombinations, SingleTableProgrammableConstraint
except ImportError:  # the light core: cohorts need the 'cohorts' extra
    require_extra("cohorts", "SDV cohorts (clinicgym cohort ...)", "sdv")
    raise

from clinicgym.patients.cohorts.cohort import ID_COLUMN, TABLE, CohortSchema, row_ids
from clinicgym.patients.errors import SynthesisError
from clinicgym.patients.knowledge.bands import AGE_BANDS

SynthesizerName = Literal["gaussian_copula", "ctgan", "tvae"]
SYNTHESIZERS: dict[str, str] = {
    "gaussian_copula": "GaussianCopulaSynthesizer",
    "ctgan": "CTGANSynthesizer",
    "tvae": "TVAESynthesizer",
}
"""Our name -> the SDV single-table class."""
NEURAL = ("ctgan", "tvae")
SYNTHESIZER_FILE = "synthesizer.pkl"
METADATA_FILE = "metadata.json"


# --------------------------------------------------------------------------------------------
# Clinical constraints


class KBRangeConstraint(SingleTableProgrammableConstraint):
    """Learn a column as its position in a KB range picked by other columns, and map it back.

    `spec` maps a column to `{"by": [key columns], "ranges": {"k1|k2": [lo, hi]}, "integer":
    bool, "decimals": int}`. Position 0 is `lo`, 1 is `hi`; positions outside 0..1 (real data
    beyond the KB range) survive the round trip. Integer columns (age) are clipped to the range.
    """

    def __init__(self, spec: dict[str, dict[str, Any]]) -> None:
        self.spec = spec

    @staticmethod
    def _pos_column(col: str) -> str:
        return f"{col}#pos"

    def _bounds(self, data: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series]:
        s = self.spec[col]
        key = data[s["by"][0]].astype(str)
        for other in s["by"][1:]:
            key = key + "|" + data[other].astype(str)
        ranges = s["ranges"]
        lo = key.map(lambda k: ranges[k][0] if k in ranges else np.nan).astype(float)
        hi = key.map(lambda k: ranges[k][1] if k in ranges else np.nan).astype(float)
        return lo, hi

    def validate_input_data(self, data: pd.DataFrame) -> None:
        missing = [
            c for col, s in self.spec.items() for c in [col, *s["by"]] if c not in data.columns
        ]
        if missing:
            raise SynthesisError(f"KB range constraint: the table lacks columns {missing}")

    def get_updated_metadata(self, metadata: Any) -> Any:
        from sdv.metadata import Metadata

        d = metadata.to_dict()
        table = d["tables"][TABLE]
        cols: dict[str, Any] = {}
        for name, meta in table["columns"].items():
            if name in self.spec:
                cols[self._pos_column(name)] = {"sdtype": "numerical"}
            else:
                cols[name] = meta
        table["columns"] = cols
        return Metadata.load_from_dict(d)

    def transform(self, data: pd.DataFrame) -> pd.DataFrame:
        data = data.copy()
        for col, s in self.spec.items():
            lo, hi = self._bounds(data, col)
            x = pd.to_numeric(data[col]).astype(float)
            if s.get("integer"):
                pos = (x - lo + 0.5) / (hi - lo + 1)
            else:
                pos = (x - lo) / (hi - lo).where(hi > lo, 1.0)
            data[self._pos_column(col)] = pos
            data = data.drop(columns=[col])
        return data

    def reverse_transform(self, data: pd.DataFrame) -> pd.DataFrame:
        data = data.copy()
        for col, s in self.spec.items():
            lo, hi = self._bounds(data, col)
            pos = pd.to_numeric(data[self._pos_column(col)]).astype(float)
            if s.get("integer"):
                x = np.floor(lo + pos.clip(0, 1) * (hi - lo + 1)).clip(lo, hi)
                data[col] = pd.array(x.round(), dtype="Int64")
            else:
                x = lo + pos * (hi - lo).where(hi > lo, 1.0)
                data[col] = x.round(int(s.get("decimals", 2)))
            data = data.drop(columns=[self._pos_column(col)])
        return data

    def is_valid(self, synthetic_data: pd.DataFrame) -> pd.Series:
        ok = pd.Series(True, index=synthetic_data.index)
        for col, s in self.spec.items():
            if s.get("integer"):
                lo, hi = self._bounds(synthetic_data, col)
                x = pd.to_numeric(synthetic_data[col]).astype(float)
                ok &= ((x >= lo) & (x <= hi)) | x.isna()
        return ok


def kb_range_spec(schema: CohortSchema) -> dict[str, dict[str, Any]]:
    """The KB ranges behind age, vitals and labs, keyed by condition and age band or flag."""
    kb = schema.kb
    by_band = ["condition_id", "age_band"]
    age: dict[str, list[float]] = {}
    vitals: dict[str, dict[str, list[float]]] = {v: {} for v in schema.vitals}
    for c in kb.conditions.values():
        for band, (blo, bhi) in AGE_BANDS.items():
            lo, hi = max(blo, c.age[0]), min(bhi, c.age[1])
            if lo > hi:
                continue
            key = f"{c.id}|{band}"
            age[key] = [lo, hi]
            for vid in schema.vitals:
                rng = c.vitals.get(vid) or kb.vitals[vid].normal[band]  # type: ignore[index]
                vitals[vid][key] = [float(rng[0]), float(rng[1])]
    spec: dict[str, dict[str, Any]] = {
        "age": {"by": by_band, "ranges": age, "integer": True, "decimals": 0}
    }
    for vid in schema.vitals:
        spec[schema.vital_column(vid)] = {
            "by": by_band,
            "ranges": vitals[vid],
            "decimals": kb.vitals[vid].decimals,
        }
    for k, (ab, val) in enumerate(schema.test_columns):
        ranges: dict[str, list[float]] = {}
        for c in kb.conditions.values():
            if k >= len(c.tests):
                continue
            t = kb.tests[c.tests[k].id]
            if t.normal is None:
                continue
            ranges[f"{c.id}|False"] = [float(t.normal[0]), float(t.normal[1])]
            ab_range = c.tests[k].value or t.normal
            ranges[f"{c.id}|True"] = [float(ab_range[0]), float(ab_range[1])]
        spec[val] = {"by": ["condition_id", ab], "ranges": ranges, "decimals": 3}
    return spec


def clinical_constraints(schema: CohortSchema) -> list[Any]:
    """The SDV constraints every cohort synthesizer gets (order matters: ranges need the
    condition and band columns that FixedCombinations merges)."""
    return [KBRangeConstraint(kb_range_spec(schema)), FixedCombinations(schema.demographic_columns)]


# --------------------------------------------------------------------------------------------
# Synthesizers


class SynthesizerConfig(BaseModel):
    """Which synthesizer, with which settings; saved in the cohort manifest."""

    model_config = ConfigDict(extra="forbid")
    name: SynthesizerName = "gaussian_copula"
    epochs: int | None = Field(default=None, ge=1, le=100_000)
    """Training epochs for CTGAN/TVAE (SDV's default is 300)."""
    batch_size: int | None = Field(default=None, ge=10)
    """CTGAN/TVAE batch size; CTGAN needs a multiple of its `pac` (10)."""
    params: dict[str, Any] = {}
    """Other keyword arguments for the SDV class, e.g. {"default_distribution": "norm"}."""
    fit_seed: int = 0

    def sdv_kwargs(self) -> dict[str, Any]:
        kw = dict(self.params)
        if self.name in NEURAL:
            kw.setdefault("enable_gpu", False)
            if self.epochs is not None:
                kw["epochs"] = self.epochs
            if self.batch_size is not None:
                kw["batch_size"] = self.batch_size
        elif self.epochs is not None or self.batch_size is not None:
            raise SynthesisError(
                f"synthesizer '{self.name}': --epochs/--batch-size apply to ctgan and tvae only"
            )
        return kw


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's and torch's global generators for a fit, then put them back."""
    import torch

    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


@contextlib.contextmanager
def _sdv_quiet() -> Iterator[None]:
    """Silence SDV's warnings (about things handled here) and its tqdm bars on stderr."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


class CohortSynthesizer:
    """One SDV synthesizer for a cohort table: fit, seeded sampling, save and load."""

    def __init__(self, schema: CohortSchema, config: SynthesizerConfig | None = None) -> None:
        self.schema = schema
        self.config = config or SynthesizerConfig()
        self.sdv: Any = None
        self.fit_seconds: float | None = None
        self.trained_rows = 0

    def _build(self) -> Any:
        import sdv.single_table as st

        cls = getattr(st, SYNTHESIZERS[self.config.name])
        try:
            synth = cls(self.schema.metadata(), **self.config.sdv_kwargs())
        except TypeError as e:
            raise SynthesisError(f"synthesizer '{self.config.name}': bad parameter ({e})") from None
        synth.add_constraints(clinical_constraints(self.schema))
        return synth

    def fit(self, table: pd.DataFrame) -> CohortSynthesizer:
        """Fit on a cohort table (its id column is dropped); seeded by `config.fit_seed`."""
        data = table.drop(columns=[ID_COLUMN], errors="ignore")
        data = self.schema.typed(data[list(self.schema.columns)])
        if len(data) < 10:
            raise SynthesisError(f"cannot fit on {len(data)} rows; give at least 10")
        synth = self._build()
        start = time.perf_counter()
        with _sdv_quiet(), _global_seed(self.config.fit_seed):
            synth.fit({TABLE: data.reset_index(drop=True)})
        self.fit_seconds = time.perf_counter() - start
        self.sdv = synth
        self.trained_rows = len(data)
        return self

    def _reseed(self, seed: int) -> None:
        """The one place that sets SDV's private sampling state (it has no public seed)."""
        self.sdv.reset_sampling()
        self.sdv._set_random_state(int(seed) % 2**32)

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        """`n` raw rows from the model (KB-unchecked); the same seed gives the same rows."""
        if self.sdv is None:
            raise SynthesisError("the synthesizer is not fitted; call fit() or load() first")
        self._reseed(seed)
        with _sdv_quiet():
            out = self.sdv.sample(n)[TABLE]
        return out[list(self.schema.columns)].reset_index(drop=True)

    # ---- persistence ----------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write synthesizer.pkl (SDV's cloudpickle) and metadata.json into `directory`."""
        self.sdv.save(str(directory / SYNTHESIZER_FILE))
        self.schema.metadata().save_to_json(str(directory / METADATA_FILE))

    @classmethod
    def load(
        cls, directory: Path, schema: CohortSchema, config: SynthesizerConfig
    ) -> CohortSynthesizer:
        """Load a saved synthesizer. This unpickles a file: only load your own cohorts."""
        import json

        path = directory / SYNTHESIZER_FILE
        if not path.exists():
            raise SynthesisError(f"{directory}: no {SYNTHESIZER_FILE}; was it generated here?")
        saved = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        if saved.get("tables") != schema.metadata_dict()["tables"]:
            raise SynthesisError(
                f"{directory / METADATA_FILE}: the saved table layout differs from the current "
                "KB's; regenerate the cohort with this KB"
            )
        from sdv.utils import load_synthesizer

        with _sdv_quiet():
            synth = load_synthesizer(str(path))
        if type(synth).__name__ != SYNTHESIZERS[config.name]:
            raise SynthesisError(
                f"{path}: holds a {type(synth).__name__}, but the manifest says {config.name}"
            )
        out = cls(schema, config)
        out.sdv = synth
        return out


# --------------------------------------------------------------------------------------------
# Sampling plans: balance, rare-condition floor, filters, targeted cells


BALANCE_ATTRIBUTES = ("sex", "age_band", "ethnicity", "insurance")
"""Protected attributes a target mix may be set over."""


class PlanCell(BaseModel):
    """A group of rows to generate: every row matches `where`; `count` of them."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, Any]
    count: int = Field(ge=0)
    reason: Literal["all", "balance", "rare_floor", "target"] = "all"


class SamplingPlan(BaseModel):
    """How many rows of which kind: the cells are filled most specific first."""

    model_config = ConfigDict(extra="forbid")
    n: int
    filters: dict[str, list[Any]] = {}
    """Conditional sampling: every row must have one of these values in each column."""
    balance: dict[str, dict[str, float]] = {}
    """Target shares per protected attribute (their product is the joint target)."""
    rare_floor: float | None = None
    target_shares: dict[str, float] = {}
    """Targeted generation: condition -> share (from a run's failures)."""
    cells: list[PlanCell]

    def targets(self) -> dict[str, dict[str, float]]:
        """Per balanced attribute, the target share of each value."""
        return self.balance


def parse_balance(text: str) -> dict[str, dict[str, float] | None]:
    """'sex,age_band' or 'sex=female:0.6/male:0.4,age_band' -> attribute -> shares (None:
    equal shares over the values seen in the seed)."""
    out: dict[str, dict[str, float] | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        attr, _, shares = part.partition("=")
        attr = attr.strip()
        if attr not in BALANCE_ATTRIBUTES:
            raise SynthesisError(
                f"--balance: unknown attribute '{attr}'; allowed: {', '.join(BALANCE_ATTRIBUTES)}"
            )
        if not shares:
            out[attr] = None
            continue
        parsed: dict[str, float] = {}
        for item in shares.split("/"):
            value, sep, share = item.rpartition(":")
            try:
                if not sep:
                    raise ValueError
                parsed[value.strip()] = float(share)
            except ValueError:
                raise SynthesisError(
                    f"--balance: '{item}' in '{part}' is not VALUE:SHARE (e.g. female:0.5)"
                ) from None
        total = sum(parsed.values())
        if any(v < 0 for v in parsed.values()) or not math.isclose(total, 1.0, abs_tol=1e-6):
            raise SynthesisError(
                f"--balance: shares for '{attr}' must be >= 0 and sum to 1; got {total:g}"
            )
        out[attr] = parsed
    if not out:
        raise SynthesisError("--balance: name at least one attribute, e.g. 'sex,age_band'")
    return out


def allocate(n: int, shares: Sequence[float]) -> list[int]:
    """Integer counts summing to n, proportional to shares (largest remainder)."""
    total = sum(shares)
    raw = [n * s / total if total > 0 else 0.0 for s in shares]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def rows_matching(df: pd.DataFrame, where: Mapping[str, Any]) -> pd.Series:
    """The rows of `df` whose columns equal (or lie in) the values `where` gives."""
    mask = pd.Series(True, index=df.index)
    for col, value in where.items():
        if isinstance(value, list | tuple | set):
            mask &= df[col].isin(list(value)).fillna(False).astype(bool)
        else:
            mask &= (df[col] == value).fillna(False).astype(bool)
    return mask


def plan_sampling(
    n: int,
    seed_table: pd.DataFrame,
    schema: CohortSchema,
    *,
    balance: Mapping[str, Mapping[str, float] | None] | None = None,
    rare_floor: float | None = None,
    filters: Mapping[str, Sequence[Any]] | None = None,
    target: Mapping[str, Any] | None = None,
) -> SamplingPlan:
    """Turn a target mix into cells, checking it is possible given the KB and the seed.

    `target` (targeted generation) is {"cells": [{"where": {...}, "share": s}, ...]} as made by
    `targeting.TargetMix.plan_cells()`; it cannot be combined with `balance`.
    """
    if n < 1:
        raise SynthesisError(f"--n must be at least 1, got {n}")
    filters = {k: list(v) for k, v in (filters or {}).items()}
    _check_filters(filters, schema)
    pool = seed_table[rows_matching(seed_table, filters)] if filters else seed_table
    if pool.empty:
        what = ", ".join(f"{k} in {v}" for k, v in filters.items())
        raise SynthesisError(f"no seed row has {what}: nothing to learn that subgroup from")
    if target and balance:
        raise SynthesisError("--target and --balance cannot be combined; pick one mix")
    cells: list[PlanCell] = []
    shares_out: dict[str, dict[str, float]] = {}
    target_shares: dict[str, float] = {}
    if target:
        cells, target_shares = _target_cells(n, target, pool, filters)
    elif balance:
        shares_out = _balance_shares(balance, pool, filters)
        cells = _balance_cells(n, shares_out, pool, filters)
    else:
        cells = [PlanCell(where=dict(filters), count=n, reason="all")]
    if rare_floor:
        cells = _apply_floor(cells, pool, rare_floor, n)
    return SamplingPlan(
        n=n,
        filters=filters,
        balance=shares_out,
        rare_floor=rare_floor,
        target_shares=target_shares,
        cells=cells,
    )


def _check_filters(filters: Mapping[str, list[Any]], schema: CohortSchema) -> None:
    """Raise SynthesisError for a --where column the table lacks or a value the KB never has."""
    for col, values in filters.items():
        if col not in schema.columns:
            raise SynthesisError(f"--where: unknown column '{col}'; see the cohort table columns")
        allowed = schema.columns[col].get("range_values")
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise SynthesisError(
                f"--where {col}: unknown value {bad[0]!r}; allowed: {', '.join(map(str, allowed))}"
            )


def _target_cells(
    n: int, target: Mapping[str, Any], pool: pd.DataFrame, filters: dict[str, list[Any]]
) -> tuple[list[PlanCell], dict[str, float]]:
    """The targeted mix's cells (each within the filters) and its share per condition; a cell
    given rows must have seed rows to learn from."""
    cells: list[PlanCell] = []
    target_shares: dict[str, float] = {}
    specs = target["cells"]
    counts = allocate(n, [c["share"] for c in specs])
    for spec, count in zip(specs, counts, strict=True):
        where = {**spec["where"], **{k: v for k, v in filters.items()}}
        if count and not rows_matching(pool, spec["where"]).any():
            raise SynthesisError(f"targeted cell {spec['where']} has no seed rows to learn from")
        cells.append(PlanCell(where=where, count=count, reason="target"))
        cid = spec["where"].get("condition_id")
        if cid:
            target_shares[cid] = target_shares.get(cid, 0.0) + spec["share"]
    return cells, target_shares


def _balance_shares(
    balance: Mapping[str, Mapping[str, float] | None],
    pool: pd.DataFrame,
    filters: dict[str, list[Any]],
) -> dict[str, dict[str, float]]:
    """Each balanced attribute's value -> share: equal over the values the seed holds when no
    shares are given; a value asked for must be in the seed."""
    shares_out: dict[str, dict[str, float]] = {}
    for attr, shares in balance.items():
        seen = sorted(pool[attr].dropna().unique().tolist())
        if shares is None:
            shares_out[attr] = {v: 1 / len(seen) for v in seen}
            continue
        unseen = [v for v, s in shares.items() if s > 0 and v not in seen]
        if unseen:
            raise SynthesisError(
                f"--balance {attr}: value {unseen[0]!r} has no seed rows"
                + (f" with {filters}" if filters else "")
                + f"; seen: {', '.join(map(str, seen))}"
            )
        shares_out[attr] = dict(shares)
    return shares_out


def _balance_cells(
    n: int,
    shares_out: dict[str, dict[str, float]],
    pool: pd.DataFrame,
    filters: dict[str, list[Any]],
) -> list[PlanCell]:
    """One cell per joint subgroup of the balanced attributes, sized by the product of their
    shares; a subgroup given a share must have seed rows."""
    joint: list[tuple[dict[str, Any], float]] = [({}, 1.0)]
    for attr in list(shares_out):
        joint = [
            ({**w, attr: v}, p * s) for w, p in joint for v, s in shares_out[attr].items() if s > 0
        ]
    for w, p in joint:
        if p > 0 and not rows_matching(pool, w).any():
            raise SynthesisError(
                "--balance: the subgroup "
                + ", ".join(f"{k}={v!r}" for k, v in w.items())
                + " has no seed rows"
                + (f" among {filters}" if filters else "")
                + "; the KB or the seed cannot produce it (an impossible target)"
            )
    counts = allocate(n, [p for _, p in joint])
    return [
        PlanCell(where={**w, **filters}, count=c, reason="balance")
        for (w, _), c in zip(joint, counts, strict=True)
    ]


def _apply_floor(cells: list[PlanCell], pool: pd.DataFrame, floor: float, n: int) -> list[PlanCell]:
    """Give every condition at least `floor` of the rows: carve sub-cells out of the cells."""
    if not 0 < floor < 1:
        raise SynthesisError(f"--rare-floor must lie between 0 and 1, got {floor:g}")
    conditions = sorted(pool["condition_id"].unique())
    if floor * len(conditions) > 1 + 1e-9:
        raise SynthesisError(
            f"--rare-floor {floor:g} x {len(conditions)} conditions = "
            f"{floor * len(conditions):.2f} > 1: impossible; the floor can be at most "
            f"{1 / len(conditions):.4f}"
        )
    need = math.ceil(floor * n)
    shares = pool["condition_id"].value_counts(normalize=True)
    out: list[PlanCell] = []
    extra: list[PlanCell] = []
    rare = [c for c in conditions if shares.get(c, 0.0) < floor]
    remaining = {id(c): c.count for c in cells}
    for cond in rare:
        # spread this condition's floor over the cells it can occur in, by the seed's mix
        weights = [
            float((rows_matching(pool, c.where) & (pool["condition_id"] == cond)).sum())
            for c in cells
        ]
        if sum(weights) == 0:
            continue
        for c, k in zip(cells, allocate(need, weights), strict=True):
            k = min(k, remaining[id(c)])
            if k:
                remaining[id(c)] -= k
                extra.append(
                    PlanCell(where={**c.where, "condition_id": cond}, count=k, reason="rare_floor")
                )
    for c in cells:
        out.append(PlanCell(where=c.where, count=remaining[id(c)], reason=c.reason))
    return extra + out


# --------------------------------------------------------------------------------------------
# Generation


@dataclass
class GenerationStats:
    """What generation drew, rejected and kept: every rejected row is counted by reason."""

    requested: int = 0
    drawn: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    """KB rule -> rows rejected for breaking it (first rule broken)."""
    exact_copies: int = 0
    """Rows identical to a training row (dropped: a synthetic cohort must not leak seed rows)."""
    surplus: int = 0
    """Valid rows that fell in no unfilled cell of the plan (sampling into a target mix)."""
    batches: int = 0
    sample_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def kb_consistency_raw(self) -> float:
        """Share of drawn rows the KB accepted, before rejection."""
        bad = sum(self.rejected.values())
        return 1.0 - bad / self.drawn if self.drawn else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "drawn": self.drawn,
            "kept": self.kept,
            "rejected_total": sum(self.rejected.values()),
            "rejected": dict(sorted(self.rejected.items())),
            "exact_copies_dropped": self.exact_copies,
            "surplus": self.surplus,
            "kb_consistency_before_rejection": round(self.kb_consistency_raw, 6),
            "batches": self.batches,
            "sample_seconds": round(self.sample_seconds, 3),
            "check_seconds": round(self.check_seconds, 3),
        }


def row_hashes(df: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """A hash per row over `columns` (values as text), to find exact copies."""
    return pd.util.hash_pandas_object(df[list(columns)].astype(str), index=False)


def _check_reachable(plan: SamplingPlan, train: pd.DataFrame, budget: int) -> None:
    """Fail before drawing when a cell has no seed rows, or is so rare in the seed that filling
    it would take more than the draw budget (the synthesizer reproduces the seed's mix)."""
    for cell in plan.cells:
        if not cell.count or not cell.where:
            continue
        p = float(rows_matching(train, cell.where).mean())
        where = ", ".join(f"{k}={v!r}" for k, v in cell.where.items())
        if p == 0:
            raise SynthesisError(f"no seed row has {where}: the synthesizer cannot produce it")
        if cell.count / p > budget:
            raise SynthesisError(
                f"{where} is {p:.4%} of the seed: {cell.count} rows would take about "
                f"{cell.count / p:,.0f} draws, over the budget of {budget:,}; lower the target "
                "or raise --max-draws"
            )


def _batch_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def generate(
    synth: CohortSynthesizer,
    plan: SamplingPlan,
    *,
    seed: int,
    train: pd.DataFrame | None = None,
    max_draws: int | None = None,
    id_prefix: str = "p",
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, GenerationStats]:
    """Fill the plan's cells from the synthesizer; return the table (shuffled, ids assigned)
    and the counts. Rows breaking the KB or copying a training row are rejected and counted."""
    schema = synth.schema
    columns = list(schema.columns)
    stats = GenerationStats(requested=plan.n)
    budget = max_draws or max(50 * plan.n, 200_000)
    train_hashes: set[int] = set()
    if train is not None and len(train):
        train_hashes = set(row_hashes(schema.normalise(train), columns).tolist())
        _check_reachable(plan, train, budget)
    quota = [c.count for c in plan.cells]
    taken: list[list[pd.DataFrame]] = [[] for _ in plan.cells]
    accept = 0.8
    batch = 0
    while sum(quota) > 0:
        if stats.drawn >= budget:
            raise _budget_spent(plan, quota, stats.drawn)
        size = int(min(max(sum(quota) / max(accept, 0.02) * 1.15, 256), 50_000))
        size = min(size, budget - stats.drawn) or 1
        t0 = time.perf_counter()
        raw = synth.sample(size, _batch_seed(seed, batch)).reset_index(drop=True)
        stats.sample_seconds += time.perf_counter() - t0
        batch += 1
        stats.drawn += len(raw)
        t0 = time.perf_counter()
        valid = _valid_rows(raw, schema, stats, train_hashes)
        useful = _fill_cells(valid, plan, quota, taken, stats)
        stats.check_seconds += time.perf_counter() - t0
        accept = max(useful / max(len(raw), 1), 0.005)
        if on_progress is not None:
            on_progress(plan.n - sum(quota), plan.n)
    table = _shuffled_table(taken, schema, seed, id_prefix)
    stats.batches = batch
    stats.kept = len(table)
    return table, stats


def _budget_spent(plan: SamplingPlan, quota: list[int], drawn: int) -> SynthesisError:
    """The error for a draw budget spent with cells still unfilled, naming the first five."""
    short = [
        f"{c.where or 'all rows'}: {c.count - q} of {c.count}"
        for c, q in zip(plan.cells, quota, strict=True)
        if q > 0
    ]
    return SynthesisError(
        f"drew {drawn:,} rows (the budget) and could not fill "
        + "; ".join(short[:5])
        + ". The synthesizer rarely produces these subgroups; lower their targets, "
        "use a larger seed, or raise --max-draws"
    )


def _valid_rows(
    raw: pd.DataFrame, schema: CohortSchema, stats: GenerationStats, train_hashes: set[int]
) -> pd.DataFrame:
    """The drawn rows the KB accepts that copy no training row; rejections counted in `stats`."""
    raw = schema.normalise(raw)
    reasons = schema.violations(raw)
    stats.rejected.update(reasons.dropna().tolist())
    valid = raw[reasons.isna()]
    if train_hashes and len(valid):
        copy = row_hashes(valid, list(schema.columns)).isin(train_hashes).to_numpy()
        stats.exact_copies += int(copy.sum())
        valid = valid[~copy]
    return valid


def _fill_cells(
    valid: pd.DataFrame,
    plan: SamplingPlan,
    quota: list[int],
    taken: list[list[pd.DataFrame]],
    stats: GenerationStats,
) -> int:
    """Hand valid rows to the unfilled cells in plan order, each row to one cell at most;
    lower `quota`, count the rows no cell wanted as surplus, return how many were used."""
    free = pd.Series(True, index=valid.index)
    useful = 0
    for i, cell in enumerate(plan.cells):
        if quota[i] <= 0:
            continue
        mask = free & rows_matching(valid, cell.where)
        rows = valid[mask].head(quota[i])
        if len(rows):
            taken[i].append(rows)
            quota[i] -= len(rows)
            free[rows.index] = False
            useful += len(rows)
    stats.surplus += int(free.sum())
    return useful


def _shuffled_table(
    taken: list[list[pd.DataFrame]], schema: CohortSchema, seed: int, id_prefix: str
) -> pd.DataFrame:
    """The kept rows in a seeded random order, typed, with ids `<id_prefix>000000`, ..."""
    columns = list(schema.columns)
    parts = [df for cell_parts in taken for df in cell_parts]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    order = np.random.default_rng(seed).permutation(len(table))
    table = table.iloc[order].reset_index(drop=True)
    table = schema.typed(table[columns])
    table.insert(0, ID_COLUMN, row_ids(id_prefix, len(table)))
    return table


def subgroup_shares(df: pd.DataFrame, attrs: Sequence[str]) -> dict[str, float]:
    """Share of rows in each joint subgroup of `attrs`, keyed 'a=x|b=y'."""
    if df.empty:
        return {}
    keys = (
        df[list(attrs)]
        .astype(str)
        .apply(lambda r: "|".join(f"{a}={v}" for a, v in zip(attrs, r, strict=True)), axis=1)
    )
    return {k: float(v) for k, v in keys.value_counts(normalize=True).sort_index().items()}
