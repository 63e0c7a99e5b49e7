"""Background pharmacogenomic (PGx) results: the panel in `knowledge/pharmacogenomics.yaml`.

Every sampled patient carries one result per panel gene, the gene's normal result or an
actionable one drawn with its population frequency. The results become `genomics` facts revealed
by genetic testing: actionable ones present (so prescribing checks see them), normal ones as
negatives (so the variant table reports the whole panel without flagging anything).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.kb import KNOWLEDGE_DIR, SCHEMA_VERSION
from clinicgym.patients.knowledge.uniforms import Uniforms

PANEL_FILE = KNOWLEDGE_DIR / "pharmacogenomics.yaml"
SOURCE_PREFIX = "pgx:"
"""`Fact.source` of a panel result: 'pgx:<result id>' or 'pgx:<GENE>.normal'."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormalResult(_Model):
    """What the panel reports when no actionable variant is found."""

    genotype: str
    phenotype: str


class PgxResult(_Model):
    """One actionable result of a gene, with its frequency and the source of that frequency."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    genotype: str
    """Star alleles, HGVS or an HLA allele, e.g. '*2/*2', 'c.521T>C (rs4149056)', 'HLA-B*57:01'."""
    zygosity: str
    phenotype: str
    classification: str = "drug response"
    frequency: float = Field(ge=0, le=1)
    source: str = Field(min_length=3)


class PgxGene(_Model):
    """A gene on the panel: its normal result and its mutually exclusive actionable results."""

    gene: str = Field(min_length=2)
    normal: NormalResult
    results: list[PgxResult] = []


class PgxPanel(_Model):
    """The whole panel, validated."""

    schema_version: int
    genes: list[PgxGene] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)

    def result(self, result_id: str) -> tuple[PgxGene, PgxResult] | None:
        """The gene and result for a result id, or None."""
        for g in self.genes:
            for r in g.results:
                if r.id == result_id:
                    return g, r
        return None

    def gene(self, name: str) -> PgxGene | None:
        """A panel gene by name, or None."""
        return next((g for g in self.genes if g.gene == name), None)


def _where(raw: Any, loc: tuple[Any, ...]) -> str:
    """pydantic's ('genes', 2, 'results', 0, 'frequency') -> "gene 'TPMT', result 'tpmt_im',
    field 'frequency'"."""
    parts: list[str] = []
    node, rest = raw, list(loc)
    while rest:
        key = rest.pop(0)
        kind = {"genes": "gene", "results": "result"}.get(str(key))
        if kind and rest and isinstance(rest[0], int) and isinstance(node, dict):
            i = rest.pop(0)
            items = node.get(key)
            item = items[i] if isinstance(items, list) and i < len(items) else None
            name = item.get("gene") or item.get("id") if isinstance(item, dict) else None
            parts.append(f"{kind} '{name}'" if name else f"{kind} #{i + 1}")
            node = item
            continue
        parts.append(f"field '{'.'.join(str(k) for k in [key, *rest])}'")
        break
    return ", ".join(parts) or "top level"


def load_panel(path: Path | str = PANEL_FILE) -> PgxPanel:
    """Load and validate a panel file; raise KBError listing every problem (file, gene, field)."""
    path = Path(path)
    rel = path.name
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KBError(rel, [f"{path}: file is missing"]) from None
    except yaml.YAMLError as e:
        raise KBError(rel, [f"not valid YAML: {e}".replace("\n", " ")]) from None
    problems: list[str] = []
    try:
        panel = PgxPanel.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            msg = err["msg"]
            if "input" in err and not isinstance(err["input"], dict | list):
                msg += f" (got {err['input']!r})"
            problems.append(f"{rel}: {_where(raw, tuple(err['loc']))}: {msg}")
        raise KBError(rel, problems) from None
    if panel.schema_version != SCHEMA_VERSION:
        problems.append(
            f"{rel}: field 'schema_version': {panel.schema_version!r} is not the supported "
            f"version {SCHEMA_VERSION}"
        )
    seen_genes: set[str] = set()
    seen_ids: set[str] = set()
    for g in panel.genes:
        if g.gene in seen_genes:
            problems.append(f"{rel}: gene '{g.gene}' is listed twice")
        seen_genes.add(g.gene)
        total = sum(r.frequency for r in g.results)
        if total > 1:
            problems.append(
                f"{rel}: gene '{g.gene}': result frequencies sum to {total:g}; they exclude each "
                "other, so the sum must be at most 1"
            )
        for r in g.results:
            if r.id in seen_ids:
                problems.append(f"{rel}: gene '{g.gene}', result '{r.id}': id is used twice")
            seen_ids.add(r.id)
    if problems:
        raise KBError(rel, problems)
    return panel


@cache
def default_panel() -> PgxPanel:
    """The bundled panel, loaded once per process."""
    return load_panel()


def draw(
    panel: PgxPanel, rng: np.random.Generator | Uniforms
) -> list[tuple[PgxGene, PgxResult | None]]:
    """One result per gene (None: the normal result), one uniform draw per gene in panel order."""
    out: list[tuple[PgxGene, PgxResult | None]] = []
    for g in panel.genes:
        u = float(rng.random())
        hit: PgxResult | None = None
        acc = 0.0
        for r in g.results:
            acc += r.frequency
            if u < acc:
                hit = r
                break
        out.append((g, hit))
    return out


def result_text(gene: PgxGene, result: PgxResult | None) -> str:
    """How the panel reports one gene, e.g. 'CYP2C19 *2/*2 (poor metaboliser)'."""
    if result is None:
        return f"{gene.gene} {gene.normal.genotype} ({gene.normal.phenotype})"
    return f"{gene.gene} {result.genotype}, {result.zygosity} ({result.phenotype})"


def pgx_facts(
    panel: PgxPanel, rng: np.random.Generator | Uniforms, existing: set[str], start: int
) -> list[dict[str, Any]]:
    """Fact fields for one patient's panel (ids from `start`); genes already in the case
    (`existing` concepts, e.g. from a condition's genetics) are left alone."""
    return pgx_fact_rows(draw(panel, rng), existing, start)


def pgx_fact_rows(
    results: list[tuple[PgxGene, PgxResult | None]], existing: set[str], start: int
) -> list[dict[str, Any]]:
    """Fact fields for results already drawn (`draw`), numbered from `start`."""
    out: list[dict[str, Any]] = []
    for gene, result in results:
        concept = f"gene.{gene.gene}"
        if concept in existing:
            continue
        out.append(
            {
                "id": f"f{start + len(out):02d}",
                "category": "genomics",
                "concept": concept,
                "text": result_text(gene, result),
                "present": result is not None,
                "abnormal": result is not None,
                "modality": "variants",
                "how_revealed": "order",
                "salience": "incidental",
                "source": SOURCE_PREFIX + (result.id if result else f"{gene.gene}.normal"),
            }
        )
    return out
