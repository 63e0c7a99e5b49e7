"""A cohort generation job: every option of `clinicgym cohort generate`, typed and checked.

`CohortJob` holds what to generate (seed, synthesizer, mix, output) and checks every argument
when it is built, before anything is read or fitted: the output folder, the synthesizer's name
and settings, the holdout share, the `balance` and `where` syntax, `where` columns and values
and `conditions` against the KB. `generate_cohort(job)` then reads the seed (the KB sampler, an
imported source through `patients.importers.seeds`, or a cohort whose fitted synthesizer is
reused), splits off the holdout, plans the mix (errors in the plan come before the fit too),
fits, samples KB-checked rows and writes the cohort directory, returning a `CohortResult`.

Targeting takes a failures table that the caller builds (`clinicgym.runs.targeting` reads a run
store; `patients` never reads runs). Progress is a callback `(stage, done, total)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from clinicgym.patients.errors import CohortError
from clinicgym.patients.importers.seeds import SeedSource

if TYPE_CHECKING:
    import pandas as pd

    from clinicgym.patients.cohorts.cohort import CohortManifest, CohortSchema, SourceInfo
    from clinicgym.patients.cohorts.synthesis import CohortSynthesizer, SynthesizerConfig
    from clinicgym.patients.cohorts.targeting import TargetMix
    from clinicgym.patients.knowledge.kb import KnowledgeBase

ProgressFn = Callable[[str, int, "int | None"], None]
"""`progress(stage, done, total)`; `total` is None while a stage's size is unknown."""


class KBSeed(BaseModel):
    """The KB case sampler as the seed (when no source is imported and nothing is reused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: int = 5000
    weighting: str = "balanced"
    """'balanced' conditions or 'population' prevalence."""


class CohortJob(BaseModel):
    """Every option of `clinicgym cohort generate`; checked on construction (see the module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    out: Path
    synthesizer: str = "gaussian_copula"
    n: int = 1000
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    source: SeedSource | None = None
    """An imported seed; None: the KB sampler (`kb_seed`)."""
    kb_seed: KBSeed = KBSeed()
    holdout: float = 0.2
    balance: dict[str, dict[str, float] | None] | None = None
    """Attribute -> shares (None: equal); a string is parsed as `--balance` is."""
    rare_floor: float | None = None
    where: dict[str, list[str]] = {}
    """Column -> values; a list of 'COLUMN=VALUE' strings is parsed as `--where` is."""
    conditions: list[str] = []
    target_strength: float = 0.7
    reuse: Path | None = None
    """A cohort directory whose fitted synthesizer (unpickled: your own only) and split to reuse."""
    kb_dir: Path | None = None
    max_draws: int | None = None
    overwrite: bool = False
    _kb: Any = PrivateAttr(default=None)

    @field_validator("balance", mode="before")
    @classmethod
    def _parse_balance(cls, value: Any) -> Any:
        if isinstance(value, str):
            from clinicgym.patients.cohorts.synthesis import parse_balance

            return parse_balance(value)
        return value

    @field_validator("where", mode="before")
    @classmethod
    def _parse_where(cls, value: Any) -> Any:
        if value is None or isinstance(value, Mapping):
            return value or {}
        parsed: dict[str, list[str]] = {}
        for item in value:
            col, sep, val = str(item).partition("=")
            if not sep:
                raise CohortError(f"--where '{item}': expected COLUMN=VALUE, e.g. sex=female")
            parsed.setdefault(col.strip(), []).append(val.strip())
        return parsed

    @field_validator("conditions", mode="before")
    @classmethod
    def _no_conditions(cls, value: Any) -> Any:
        return [] if value is None else value

    @model_validator(mode="after")
    def _check(self) -> CohortJob:
        from clinicgym.patients.cohorts.synthesis import SYNTHESIZERS

        if self.out.exists() and not self.overwrite:
            raise CohortError(
                f"{self.out} already exists; choose another --out or pass --overwrite"
            )
        if self.synthesizer not in SYNTHESIZERS:
            raise CohortError(
                f"--synthesizer '{self.synthesizer}': allowed: {', '.join(SYNTHESIZERS)}"
            )
        if self.reuse is None:
            if not 0 < self.holdout < 0.9:
                raise CohortError(f"--holdout must lie between 0 and 0.9, got {self.holdout:g}")
            try:
                config = self.synthesizer_config()
            except ValidationError as e:
                err = e.errors()[0]
                option = "--" + str(err["loc"][0]).replace("_", "-")
                raise CohortError(f"{option} {err['input']}: {err['msg']}") from None
            config.sdv_kwargs()  # --epochs on a copula fails here, not after the seed is read
        self.filters()
        return self

    def knowledge_base(self) -> KnowledgeBase:
        """The job's KB (`kb_dir`, or the bundled one), loaded once."""
        if self._kb is None:
            from clinicgym.patients.knowledge.kb import default_kb, load_kb

            self._kb = load_kb(self.kb_dir) if self.kb_dir else default_kb()
        return self._kb

    def synthesizer_config(self) -> SynthesizerConfig:
        from clinicgym.patients.cohorts.synthesis import SynthesizerConfig

        return SynthesizerConfig(
            name=self.synthesizer,
            epochs=self.epochs,
            batch_size=self.batch_size,
            fit_seed=self.seed,
        )

    def filters(self, schema: CohortSchema | None = None) -> dict[str, list[Any]]:
        """`where` values typed by the cohort table's columns, and `conditions`, checked
        against the KB: the filters of the sampling plan."""
        from clinicgym.patients.cohorts.cohort import CohortSchema

        kb = self.knowledge_base()
        schema = schema or CohortSchema.for_kb(kb)
        out = {col: [typed_value(schema, col, v) for v in vals] for col, vals in self.where.items()}
        if self.conditions:
            unknown = [c for c in self.conditions if c not in kb.conditions]
            if unknown:
                raise CohortError(
                    f"--condition: unknown KB condition id '{unknown[0]}'; see `clinicgym kb list`"
                )
            out["condition_id"] = list(self.conditions)
        return out


def typed_value(schema: CohortSchema, col: str, value: str) -> Any:
    """A `--where` value as the column's type (boolean, number or text)."""
    meta = schema.columns.get(col)
    if meta is None:
        raise CohortError(f"--where: unknown column '{col}'")
    if meta["sdtype"] == "boolean":
        if value.lower() not in ("true", "false"):
            raise CohortError(f"--where {col}: {value!r} is not true/false")
        return value.lower() == "true"
    if meta["sdtype"] == "numerical":
        try:
            return float(value)
        except ValueError:
            raise CohortError(f"--where {col}: {value!r} is not a number") from None
    return value


def kb_seed_table(kb: KnowledgeBase, rows: int, seed: int, weighting: str) -> tuple[Any, dict]:
    """`rows` records of the KB case sampler as a cohort table, and the manifest's source."""
    import numpy as np

    from clinicgym.patients.cases.sampler import CaseSampler
    from clinicgym.patients.cohorts.cohort import CohortSchema, row_ids

    sampler = CaseSampler(kb, weighting=weighting)  # type: ignore[arg-type]
    records = [sampler.sample_record(np.random.default_rng([seed, i])) for i in range(rows)]
    table = CohortSchema.for_kb(kb).table(records, row_ids("s", rows))
    return table, {"kind": "kb", "rows": rows, "kb_seed": seed, "weighting": weighting}


def split_seed(table: Any, holdout: float, seed: int) -> tuple[Any, Any]:
    """(train, holdout) rows of a seed table, the holdout a seeded `holdout` share."""
    import numpy as np

    if not 0 < holdout < 0.9:
        raise CohortError(f"--holdout must lie between 0 and 0.9, got {holdout:g}")
    order = np.random.default_rng([seed, 99]).permutation(len(table))
    k = max(1, round(len(table) * holdout))
    if len(table) - k < 10:
        raise CohortError(f"the seed has {len(table)} rows; too few to hold {k} out and fit")
    hold = table.iloc[np.sort(order[:k])].reset_index(drop=True)
    train = table.iloc[np.sort(order[k:])].reset_index(drop=True)
    return train, hold


# --------------------------------------------------------------------------------------------
# Running a job


@dataclass
class CohortResult:
    """What a job wrote: the directory, its manifest, and notes for the user."""

    out: Path
    manifest: CohortManifest
    notes: list[str] = field(default_factory=list)
    """E.g. conditions of an imported source skipped because the KB lacks them."""

    @property
    def counts(self) -> dict[str, Any]:
        """Drawn, kept, rejected by KB rule, exact copies dropped (`GenerationStats`)."""
        return self.manifest.counts


@dataclass
class _Seed:
    """The seed a job fits on (or a reused cohort's), and what the manifest says of it."""

    train: pd.DataFrame
    hold: pd.DataFrame
    source: SourceInfo
    synth: CohortSynthesizer
    fitted: bool
    lineage: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


def _reused(job: CohortJob, schema: CohortSchema) -> _Seed:
    from clinicgym.patients.cohorts.cohort import Cohort
    from clinicgym.patients.cohorts.synthesis import CohortSynthesizer, SynthesizerConfig

    assert job.reuse is not None
    parent = Cohort.open(job.reuse, job.knowledge_base())
    saved = parent.manifest.synthesizer
    config = SynthesizerConfig(
        **{k: v for k, v in saved.items() if k in SynthesizerConfig.model_fields}
    )
    if job.synthesizer != "gaussian_copula" and job.synthesizer != config.name:
        raise CohortError(
            f"--reuse {job.reuse} holds a {config.name} synthesizer; drop --synthesizer"
        )
    synth = CohortSynthesizer.load(parent.root, schema, config)
    synth.fit_seconds = saved.get("fit_seconds")
    train, hold = parent.seed_tables()
    synth.trained_rows = len(train)
    return _Seed(train, hold, parent.manifest.source, synth, True, {"parent_cohort": parent.id})


def _read_seed(job: CohortJob, schema: CohortSchema, progress: ProgressFn) -> _Seed:
    from clinicgym.patients.cohorts.cohort import SourceInfo
    from clinicgym.patients.cohorts.synthesis import CohortSynthesizer
    from clinicgym.patients.importers.seeds import import_seed

    kb = job.knowledge_base()
    progress("reading the seed", 0, None)
    notes: list[str] = []
    if job.source is not None:
        imported = import_seed(job.source, kb, seed=job.seed)
        table, src, notes = imported.table, imported.source, imported.notes()
    else:
        table, src = kb_seed_table(kb, job.kb_seed.rows, job.seed, job.kb_seed.weighting)
    source = SourceInfo(**src)
    progress("reading the seed", 1, 1)
    train, hold = split_seed(table, job.holdout, job.seed)
    synth = CohortSynthesizer(schema, job.synthesizer_config())
    return _Seed(train, hold, source, synth, False, notes=notes)


def _plan(
    job: CohortJob, seed: _Seed, schema: CohortSchema, failures: Any, target_info: Any
) -> tuple[Any, TargetMix | None]:
    from clinicgym.patients.cohorts.synthesis import plan_sampling

    mix = None
    if failures is not None:
        from clinicgym.patients.cohorts.targeting import target_mix

        mix = target_mix(failures, seed.train, schema, strength=job.target_strength)
        info = dict(target_info or {})
        seed.lineage["target_run"] = info.get("run")
        seed.lineage["target_agent"] = info.get("agent")
        seed.lineage["target_metric"] = info.get("metric")
    plan = plan_sampling(
        job.n,
        seed.train,
        schema,
        balance=job.balance,
        rare_floor=job.rare_floor,
        filters=job.filters(schema),
        target=mix.plan_cells(schema) if mix else None,
    )
    return plan, mix


def generate_cohort(
    job: CohortJob,
    *,
    failures: pd.DataFrame | None = None,
    target_info: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> CohortResult:
    """Run a job: seed, split, plan, fit, KB-checked sampling, then write `job.out` atomically.

    `failures` (one row per episode: condition_id, sex, age_band, failed, present, absent)
    leans the mix towards them (`targeting.target_mix`); `target_info` names the run, agent and
    metric they came from for the lineage."""
    from clinicgym.patients.cohorts.cohort import CohortSchema, write_cohort
    from clinicgym.patients.cohorts.synthesis import generate

    report = progress or _noop
    schema = CohortSchema.for_kb(job.knowledge_base())
    seed = _reused(job, schema) if job.reuse else _read_seed(job, schema, report)
    plan, mix = _plan(job, seed, schema, failures, target_info)
    if not seed.fitted:
        stage = f"fitting {seed.synth.config.name}"
        report(stage, 0, None)
        seed.synth.fit(seed.train)
        report(stage, 1, 1)
    report("sampling (KB-checked)", 0, job.n)
    table, stats = generate(
        seed.synth,
        plan,
        seed=job.seed,
        train=seed.train,
        max_draws=job.max_draws,
        on_progress=lambda done, total: report("sampling (KB-checked)", done, total),
    )
    manifest = _manifest(job, seed, schema, plan, mix, stats.to_dict())
    write_cohort(
        job.out,
        manifest=manifest,
        table=table,
        train=seed.train,
        holdout=seed.hold,
        save_synthesizer=seed.synth.save,
        overwrite=job.overwrite,
    )
    return CohortResult(job.out, manifest, seed.notes)


def _manifest(
    job: CohortJob,
    seed: _Seed,
    schema: CohortSchema,
    plan: Any,
    mix: TargetMix | None,
    counts: dict[str, Any],
) -> CohortManifest:
    import sdv

    from clinicgym import __version__
    from clinicgym.patients.cohorts.cohort import CohortManifest
    from clinicgym.patients.cohorts.synthesis import SYNTHESIZERS

    synth = seed.synth
    return CohortManifest(
        cohort_id=job.out.name,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        clinicgym_version=__version__,
        sdv_version=sdv.__version__,
        kb_version=job.knowledge_base().version,
        kb_dir=str(Path(job.kb_dir).resolve()) if job.kb_dir else None,
        source=seed.source,
        synthesizer={
            **synth.config.model_dump(),
            "sdv_class": SYNTHESIZERS[synth.config.name],
            "fit_seconds": round(synth.fit_seconds or 0.0, 2),
            "trained_rows": synth.trained_rows,
        },
        seed=job.seed,
        split={"train": len(seed.train), "holdout": len(seed.hold)},
        plan=plan.model_dump(mode="json"),
        counts=counts,
        lineage=seed.lineage,
        targeting=mix.model_dump(mode="json") if mix else None,
        columns=schema.describe(),
    )
