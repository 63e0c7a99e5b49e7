"""Multi-modal artefacts built from a case's facts: lab tables, generated images, variant tables.

`build_artefacts(case, kb)` is a pure function of the case (its facts, and for imported panels
`case.extra["panels"]`), so a case modified by a scenario can be rebuilt exactly. Lab results
become tables with units, reference ranges and flags; genomic results one variant table (gene,
HGVS or star allele, zygosity, classification); a chest X-ray or head CT report becomes a
procedural image whose findings are parsed from the report (side and zone), so the same finding
can be shown as text, as a picture, or both. Pixels are rendered on demand by `render`, cheaply
(about a millisecond at 256 x 256) and deterministically (same artefact, same array).

Images follow the radiological convention: the patient's right is on the image's left.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from clinicgym.patients.cases.case import Artefact, Case, Fact
from clinicgym.patients.cases.pgx import SOURCE_PREFIX, PgxPanel, default_panel
from clinicgym.patients.errors import CaseError
from clinicgym.patients.knowledge.kb import KnowledgeBase

IMAGE_SIZE = 128
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE)
"""Height and width of every generated image (grey levels 0-255, uint8)."""
IMAGING_GENERATORS = {"chest_xray": "chest_radiograph", "ct_head": "head_ct"}
"""Test id -> the generator that draws it; other imaging studies are reported as text only."""
GENETIC_TESTING = "genetic_testing"
LAB_COLUMNS = ("test", "result", "unit", "reference", "flag")
VARIANT_COLUMNS = ("gene", "variant", "zygosity", "classification", "interpretation", "drugs")

# ---- building -----------------------------------------------------------------------------


def build_artefacts(case: Case, kb: KnowledgeBase | None = None) -> list[Artefact]:
    """Every artefact a case's ordered facts produce, in fact order (variant table last)."""
    out: list[Artefact] = []
    panels: dict[str, list[dict[str, Any]]] = case.extra.get("panels", {}) or {}
    genomics: list[Fact] = []
    for f in case.facts:
        if f.category == "genomics":
            genomics.append(f)
            continue
        if f.how_revealed != "order" or f.category not in ("lab", "imaging"):
            continue
        test = kb.tests.get(f.concept) if kb else None
        title = test.name if test else f.concept.replace("_", " ")
        if f.category == "imaging":
            local = (case.extra.get("images") or {}).get(f.concept)
            art = _local_image(f, title, local) if local else _image_artefact(case, f, title)
            if art is not None:
                out.append(art)
            continue
        rows = panels.get(f.concept) or [_lab_row(f, kb, case)]
        out.append(
            Artefact(
                id=f"a-{f.concept}",
                kind="lab_table",
                concept=f.concept,
                title=title,
                report=f.text,
                table=rows,
                fact_ids=[f.id],
            )
        )
    if genomics:
        out.append(
            Artefact(
                id=f"a-{GENETIC_TESTING}",
                kind="variants",
                concept=GENETIC_TESTING,
                title="Genetic testing (variant report)",
                report="; ".join(f.text for f in genomics),
                table=[_variant_row(f, case, kb) for f in genomics],
                fact_ids=[f.id for f in genomics],
            )
        )
    return out


def with_artefacts(case: Case, kb: KnowledgeBase | None = None) -> Case:
    """The case with its artefacts rebuilt from its facts (the case itself is not changed)."""
    return case.model_copy(update={"artefacts": build_artefacts(case, kb)})


def _lab_row(f: Fact, kb: KnowledgeBase | None, case: Case) -> dict[str, Any]:
    test = kb.tests.get(f.concept) if kb else None
    name = test.name if test else f.concept.replace("_", " ")
    ref = test.reference(case.age, case.sex) if test is not None else None
    if test is not None and ref is not None and isinstance(f.value, int | float):
        lo, hi = ref
        d = test.decimals
        flag = "HIGH" if f.value > hi else "LOW" if f.value < lo else ""
        return {
            "test": name,
            "result": f"{f.value:.{d}f}",
            "unit": test.unit or "",
            "reference": f"{lo:.{d}f}-{hi:.{d}f}",
            "flag": flag,
        }
    result = str(f.value) if f.value is not None else _after_colon(f.text)
    return {
        "test": name,
        "result": result,
        "unit": f.unit or "",
        "reference": "",
        "flag": "ABNORMAL" if f.abnormal else "",
    }


def _after_colon(text: str) -> str:
    head, sep, tail = text.partition(": ")
    return tail.strip() if sep and len(head) <= 60 else text.strip()


_ZYGOSITY = re.compile(
    r"\b(homozygous|heterozygous|hemizygous|compound heterozygous)\b", re.IGNORECASE
)


def _variant_row(f: Fact, case: Case, kb: KnowledgeBase | None) -> dict[str, Any]:
    gene = f.concept.removeprefix("gene.") if f.concept.startswith("gene.") else f.text.split()[0]
    drugs = _pgx_drugs(kb).get(gene, [])
    src = f.source or ""
    panel: PgxPanel = default_panel()
    if src.startswith(SOURCE_PREFIX):
        key = src.removeprefix(SOURCE_PREFIX)
        hit = panel.result(key)
        if hit is not None:
            _, r = hit
            return {
                "gene": gene,
                "variant": r.genotype,
                "zygosity": r.zygosity,
                "classification": r.classification,
                "interpretation": r.phenotype,
                "drugs": ", ".join(drugs),
            }
        g = panel.gene(gene)
        if g is not None and key == f"{gene}.normal":
            return {
                "gene": gene,
                "variant": g.normal.genotype,
                "zygosity": "",
                "classification": "no actionable variant",
                "interpretation": g.normal.phenotype,
                "drugs": ", ".join(drugs),
            }
    if kb is not None and src.startswith("kb:conditions.") and src.endswith(".genetics"):
        cond = kb.conditions.get(src.removeprefix("kb:conditions.").removesuffix(".genetics"))
        basis = next((g for g in cond.genetics if g.gene == gene), None) if cond else None
        if basis is not None:
            return {
                "gene": gene,
                "variant": basis.variant,
                "zygosity": basis.zygosity.replace("_", " "),
                "classification": "pathogenic",
                "interpretation": basis.inheritance or "",
                "drugs": ", ".join(drugs),
            }
    rest = f.text[len(gene) :].strip(" ,:") if f.text.startswith(gene) else f.text
    zyg = _ZYGOSITY.search(rest)
    variant = _ZYGOSITY.sub("", rest).strip(" ,;") if zyg else rest
    pgx_genes = {g.gene for g in panel.genes} | set(_pgx_drugs(kb))
    return {
        "gene": gene,
        "variant": variant,
        "zygosity": zyg.group(1).lower() if zyg else "not stated",
        "classification": (
            "drug response" if gene in pgx_genes else "reported" if f.present else "not detected"
        ),
        "interpretation": "",
        "drugs": ", ".join(drugs),
    }


_PGX_DRUGS: dict[str, dict[str, list[str]]] = {}


def _pgx_drugs(kb: KnowledgeBase | None) -> dict[str, list[str]]:
    """Gene -> names of the KB drugs whose prescribing depends on it."""
    if kb is None:
        return {}
    hit = _PGX_DRUGS.get(kb.version)
    if hit is None:
        out: dict[str, list[str]] = {}
        for d in sorted(kb.drugs.values(), key=lambda d: d.name):
            for gene in dict.fromkeys(r.gene for r in d.pharmacogenomics):
                out.setdefault(gene, []).append(d.name)
        hit = _PGX_DRUGS[kb.version] = out
    return hit


def _local_image(f: Fact, title: str, path: str) -> Artefact:
    """An imported case's own picture, from a local file the user pointed to."""
    return Artefact(
        id=f"a-{f.concept}",
        kind="image",
        concept=f.concept,
        title=title,
        report=f.text,
        image={"generator": "local_file", "path": path, "size": IMAGE_SIZE},
        fact_ids=[f.id],
    )


def _image_artefact(case: Case, f: Fact, title: str) -> Artefact | None:
    generator = IMAGING_GENERATORS.get(f.concept)
    if generator is None:
        return None
    report = _after_colon(f.text)
    findings, not_drawn = PARSERS[generator](report)
    if f.abnormal and not findings:
        return None  # an abnormal report we cannot draw: text only, never a normal-looking image
    seed = int.from_bytes(hashlib.sha256(f"{case.id}|{f.concept}".encode()).digest()[:4], "big")
    return Artefact(
        id=f"a-{f.concept}",
        kind="image",
        concept=f.concept,
        title=title,
        report=f.text,
        image={
            "generator": generator,
            "size": IMAGE_SIZE,
            "seed": seed,
            "findings": findings,
            "not_drawn": not_drawn,
        },
        fact_ids=[f.id],
    )


# ---- report parsing -----------------------------------------------------------------------

_NEGATED = re.compile(r"^\s*(?:no|without|negative for|nil|not)\b", re.IGNORECASE)
_ITEMS = re.compile(r",\s*|\s+and\s+|\s+with\s+", re.IGNORECASE)
_NORMAL_WORDS = re.compile(
    r"\b(normal|unremarkable|clear|no acute|within normal limits)\b", re.IGNORECASE
)
_LOBES = {
    "rul": ("right", "upper"),
    "rml": ("right", "middle"),
    "rll": ("right", "lower"),
    "lul": ("left", "upper"),
    "lll": ("left", "lower"),
}


def _clauses(report: str) -> list[tuple[str, bool]]:
    """(clause, negated) pairs. Sentences split at '.' and ';' (not decimal points), then at
    ', no', 'with no' and 'without'; a negation covers its clause's whole list ('no A, B or C')."""
    out = []
    for sentence in re.split(r"(?<!\d)[.;](?!\d)\s*", report):
        for part in re.split(
            r",\s*(?=no\b)|\s+(?=with\s+no\b)|\s+(?=without\b)", sentence, flags=re.I
        ):
            part = re.sub(r"^with\s+no\b", "no", part.strip(), flags=re.I)
            if part:
                out.append((part, bool(_NEGATED.match(part))))
    return out


def _side(text: str, plural: bool = False) -> str | None:
    t = text.lower()
    if re.search(r"\b(bilateral|both|bibasal|bilaterally)\b", t):
        return "both"
    right = bool(re.search(r"\bright\b", t))
    left = bool(re.search(r"\bleft\b", t))
    if right and left:
        return "both"
    if right:
        return "right"
    if left:
        return "left"
    for abbr, (side, _) in _LOBES.items():
        if re.search(rf"\b{abbr}\b", t):
            return side
    return "both" if plural else None


def _zone(text: str, default: str | None = None) -> str | None:
    t = text.lower()
    for abbr, (_, zone) in _LOBES.items():
        if re.search(rf"\b{abbr}\b", t):
            return zone
    if re.search(r"\b(upper|apex|apices|apical)\b|upper-lobe|upper-zone", t):
        return "upper"
    if re.search(r"\b(middle|mid|lingula|lingular)\b", t):
        return "middle"
    if re.search(r"\b(lower|base|bases|basal|bibasal)\b|lower-lobe|lower-zone", t):
        return "lower"
    if re.search(r"\b(perihilar|hilar|hila|hilum)\b", t):
        return "hilar"
    return default


_CHEST_TERMS: list[tuple[str, re.Pattern[str]]] = [
    ("pneumothorax", re.compile(r"pneumothora", re.I)),
    ("effusion", re.compile(r"effusion", re.I)),
    (
        "cardiomegaly",
        re.compile(r"cardiomegaly|enlarged (heart|cardiac)|cardiac enlargement", re.I),
    ),
    ("widened_mediastinum", re.compile(r"wide(ned|ning)? (of the )?mediastin", re.I)),
    ("hyperinflation", re.compile(r"hyperinflat|hyperexpan|flattened diaphragm", re.I)),
    ("hilar_nodes", re.compile(r"hilar (lymph|aden)|lymphadenopathy", re.I)),
    ("interstitial", re.compile(r"interstitial|reticul|ground.glass|fibrosis", re.I)),
    ("patchy", re.compile(r"patchy", re.I)),
    ("nodule", re.compile(r"\b(nodule|mass|lesion)\b", re.I)),
    (
        "consolidation",
        re.compile(r"consolidat|opacit|opacific|infiltrat|airspace|pneumonia", re.I),
    ),
]


def parse_chest_report(report: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Drawable chest radiograph findings (kind, side, zone, size) and the positive phrases
    the generator cannot draw. Negated phrases ('no effusion') are skipped; a finding whose
    side (or, for consolidation, zone) the report does not give is not drawn, never guessed."""
    findings: list[dict[str, Any]] = []
    not_drawn: list[str] = []
    for clause, negated in _clauses(report):
        if negated:
            continue
        for item in (i.strip() for i in _ITEMS.split(clause)):
            if not item or (_NORMAL_WORDS.search(item) and not _has_term(item)):
                continue
            hit = next(((k, m) for k, pat in _CHEST_TERMS if (m := pat.search(item))), None)
            if hit is None:
                not_drawn.append(item)
                continue
            kind, m = hit
            word = item[m.start() :].split()[0].lower()
            plural = word.endswith("s") and not word.endswith(("ss", "sis"))
            f: dict[str, Any] = {"kind": kind}
            side = _side(item, plural=plural or kind in ("patchy", "interstitial", "hilar_nodes"))
            if kind in ("pneumothorax", "effusion", "consolidation", "nodule", "patchy"):
                if side is None:
                    not_drawn.append(item)
                    continue
                f["side"] = side
            elif kind in ("interstitial", "hilar_nodes"):
                f["side"] = side or "both"
            if kind in ("consolidation", "nodule", "patchy", "interstitial"):
                zone = _zone(item)
                if zone is None and kind in ("consolidation", "nodule"):
                    not_drawn.append(item)
                    continue
                if zone is not None:
                    f["zone"] = zone
            if kind == "pneumothorax":
                cm = re.search(r"(\d+(?:\.\d+)?)\s*cm", clause)
                large = bool(re.search(r"\b(large|tension|complete)\b", clause, re.I))
                f["size"] = "large" if large or (cm and float(cm.group(1)) >= 2) else "small"
            if kind == "effusion":
                f["size"] = "large" if re.search(r"\b(large|moderate)\b", item, re.I) else "small"
            if f not in findings:
                findings.append(f)
    return findings, not_drawn


def _has_term(text: str) -> bool:
    return any(pat.search(text) for _, pat in _CHEST_TERMS + _HEAD_TERMS)


_HEAD_TERMS: list[tuple[str, re.Pattern[str]]] = [
    ("sah", re.compile(r"subarachnoid|basal cistern|sylvian", re.I)),
    ("subdural", re.compile(r"subdural", re.I)),
    ("extradural", re.compile(r"extradural|epidural", re.I)),
    (
        "ich",
        re.compile(
            r"intracerebral|intraparenchymal|parenchymal (haem|hem)|haematoma|hematoma", re.I
        ),
    ),
    (
        "infarct",
        re.compile(
            r"infarct|isch(a)?emi|grey.white|gray.white|hypodens|hypoattenuat|insular ribbon",
            re.I,
        ),
    ),
]
_ICH_SITES = ("basal ganglia", "thalamus", "frontal", "parietal", "temporal", "occipital")


def parse_head_ct_report(report: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Drawable head CT findings (bleeds and infarcts with side and site) and the positive
    phrases the generator cannot draw. Negated phrases ('no haemorrhage') are skipped."""
    findings: list[dict[str, Any]] = []
    not_drawn: list[str] = []
    for clause, negated in _clauses(report):
        if negated:
            continue
        kind = next((k for k, pat in _HEAD_TERMS if pat.search(clause)), None)
        if kind is None:
            if not (_NORMAL_WORDS.search(clause) and not _has_term(clause)):
                not_drawn.append(clause)
            continue
        f: dict[str, Any] = {"kind": kind}
        side = _side(clause)
        if kind == "sah":
            f["sylvian"] = bool(re.search(r"sylvian", clause, re.I))
            f["side"] = side or "both"
        elif side is None:
            not_drawn.append(clause)
            continue
        else:
            f["side"] = side
        if kind == "ich":
            f["site"] = next((s for s in _ICH_SITES if s in clause.lower()), "basal ganglia")
        if kind == "infarct":
            t = clause.lower()
            f["territory"] = (
                "aca"
                if "anterior cerebral" in t or re.search(r"\baca\b", t)
                else ("pca" if "posterior cerebral" in t or re.search(r"\bpca\b", t) else "mca")
            )
            f["subtle"] = bool(re.search(r"subtle|early|loss of gr[ea]y", t))
        findings.append(f)
    return findings, not_drawn


PARSERS: dict[str, Callable[[str], tuple[list[dict[str, Any]], list[str]]]] = {
    "chest_radiograph": parse_chest_report,
    "head_ct": parse_head_ct_report,
}

# ---- rendering ----------------------------------------------------------------------------


@cache
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1): y as a column (n, 1), x as a row (1, n), so that
    expressions broadcast to (n, n) only where they combine both."""
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    y, x = c[:, None].copy(), c[None, :].copy()
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


@cache
def _texture_bank(n: int, cells: int) -> tuple[np.ndarray, ...]:
    """Four band-limited noise fields in [-1, 1] (a random `cells` x `cells` grid, bilinearly
    upsampled), made once per process from fixed seeds: images pick and shift one, which is
    far cheaper than drawing fresh noise for every picture."""
    out = []
    pos = np.linspace(0, cells, n, dtype=np.float32)
    i = np.minimum(pos.astype(int), cells - 1)
    t = pos - i
    for k in range(4):
        g = np.random.default_rng([cells, k]).uniform(-1, 1, (cells + 1, cells + 1))
        g = g.astype(np.float32)
        rows = g[i] * (1 - t)[:, None] + g[i + 1] * t[:, None]
        field = rows[:, i] * (1 - t)[None, :] + rows[:, i + 1] * t[None, :]
        field.flags.writeable = False
        out.append(field)
    return tuple(out)


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Band-limited noise in [-1, 1]: a bank field chosen and circularly shifted by `rng`."""
    k, dy, dx = (int(v) for v in rng.integers(0, [4, n, n]))
    return np.roll(_texture_bank(n, cells)[k], (dy, dx), axis=(0, 1))


@cache
def _grain_bank(n: int) -> np.ndarray:
    """Standard-normal pixel noise (film grain, quantum mottle), made once per process."""
    grain = np.random.default_rng(n).standard_normal((n, n), dtype=np.float32)
    grain.flags.writeable = False
    return grain


def _grain(rng: np.random.Generator, n: int) -> np.ndarray:
    dy, dx = (int(v) for v in rng.integers(0, n, 2))
    return np.roll(_grain_bank(n), (dy, dx), axis=(0, 1))


def _ellipse(
    y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float
) -> np.ndarray:
    """((x - cx) / rx)^2 + ((y - cy) / ry)^2: below 1 inside the ellipse."""
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _blob(y: np.ndarray, x: np.ndarray, cy: float, cx: float, sy: float, sx: float) -> np.ndarray:
    """A Gaussian bump of height 1, separable, so it costs two 1-D exponentials."""
    return np.exp(-(((y - cy) / sy) ** 2) / 2) * np.exp(-(((x - cx) / sx) ** 2) / 2)


_SIDE_X = {"right": 0.315, "left": 0.685}
"""Lung centres in image coordinates: the patient's right lung is on the image's left."""
_ZONE_Y = {"upper": 0.25, "middle": 0.42, "lower": 0.6, "hilar": 0.45}
_F = np.float32


def _sides(side: str) -> tuple[str, ...]:
    return ("right", "left") if side == "both" else (side,)


@dataclass(frozen=True)
class _ChestAnatomy:
    base: np.ndarray
    """Soft tissue, bone, heart and mediastinum, lungs without their markings (float32)."""
    lungs: dict[str, np.ndarray]
    """Side -> lung field mask (float32 0/1), heart excluded."""
    domes: dict[str, np.ndarray]
    """Side -> the hemidiaphragm's height per column, (1, n)."""


@cache
def _chest_anatomy(n: int, hyper: bool, cardiomegaly: bool, widened: bool) -> _ChestAnatomy:
    """The normal anatomy for one body habitus, built once per process (the costly part)."""
    y, x = _grid(n)
    ax = np.abs(x - 0.5)
    heart_rx = 0.215 if cardiomegaly else 0.155
    med = 0.1 if widened else 0.055
    bx, by = (ax / 0.47) ** 2, ((y - 0.6) / 0.62) ** 2
    img = np.where(bx * bx + by * by < 1, 108 + 10 * y, _F(6)).astype(_F)
    taper = 0.175 * (0.45 + 0.55 * np.clip((y - 0.08) / 0.3, 0, 1))
    top = 0.07 if hyper else 0.1
    bulge = 0.025 if hyper else 0.07
    heart = _ellipse(y, x, 0.64, 0.535, 0.13, heart_rx) < 1
    lungs: dict[str, np.ndarray] = {}
    domes: dict[str, np.ndarray] = {}
    for side, cx in _SIDE_X.items():
        base = (0.86 if hyper else 0.76) - (0.0 if side == "left" else 0.02)
        dome = base - bulge * (1 - np.clip(((x - cx) / 0.175) ** 2, 0, 1))
        medial = (x < 0.5 - med) if side == "right" else (x > 0.5 + med)
        mask = (np.abs(x - cx) < taper) & (y > top) & (y < dome) & medial & ~heart
        lungs[side] = mask.astype(_F)
        domes[side] = dome
    in_lung = (lungs["right"] + lungs["left"]) > 0
    hilum = np.exp(-(((ax - 0.09) / 0.12) ** 2)) * np.exp(-(((y - 0.45) / 0.16) ** 2))
    bend = 0.11 * np.clip((ax - 0.08) / 0.38, 0, None) ** 1.5
    u = (y - bend - 0.11) / 0.072  # nine posterior ribs, 0.072 apart, curving down laterally
    ribs = (np.abs(u - np.round(u)) < 0.009 / 0.072) & (u > -0.5) & (u < 8.5)
    lung_val = _F(30 if hyper else 40) + 26 * hilum + 14 * ribs
    img = np.where(in_lung, lung_val, img)
    img = np.where(heart, np.maximum(img, _F(128)), img)
    img = np.where((ax < med) & (y > 0.04) & (y < 0.6), np.maximum(img, _F(128)), img)
    img = np.where((ax < 0.016) & (y > 0.02) & (y < 0.36), _F(70), img)
    clav_y = 0.115 + 0.06 * ((ax - 0.04) / 0.4) ** 2
    img += _F(35) * ((np.abs(y - clav_y) < 0.012) & (ax > 0.04) & (ax < 0.4))
    img = img.astype(_F)
    img.flags.writeable = False
    return _ChestAnatomy(img, lungs, domes)


def _chest_radiograph(params: dict[str, Any]) -> np.ndarray:
    n = int(params.get("size", IMAGE_SIZE))
    rng = np.random.default_rng(int(params.get("seed", 0)))
    findings = list(params.get("findings", []))
    kinds = {f["kind"] for f in findings}
    anat = _chest_anatomy(
        n, "hyperinflation" in kinds, "cardiomegaly" in kinds, "widened_mediastinum" in kinds
    )
    y, x = _grid(n)
    lungs = anat.lungs["right"] + anat.lungs["left"]
    img = anat.base + _F(10) * _smooth_noise(rng, n, 24) * lungs
    for f in findings:
        kind = f["kind"]
        for side in _sides(f.get("side", "both")):
            lm = anat.lungs[side]
            cx = _SIDE_X[side]
            if kind == "consolidation":
                cy = _ZONE_Y[f.get("zone", "lower")]
                shape = _blob(y, x, cy, cx - 0.01, 0.08, 0.075)
                img += _F(95) * shape * (1 + _F(0.2) * _smooth_noise(rng, n, 40)) * lm
            elif kind == "nodule":
                cy = _ZONE_Y[f.get("zone", "middle")]
                img += _F(70) * (_ellipse(y, x, cy, cx, 0.035, 0.035) < 1) * lm
            elif kind == "patchy":
                zone = f.get("zone")
                for _ in range(5):
                    base_y = _ZONE_Y[zone] if zone else 0.42
                    cy = base_y + rng.uniform(-0.06, 0.06) * (1 if zone else 3)
                    px = cx + rng.uniform(-0.08, 0.08)
                    img += _F(50) * _blob(y, x, cy, px, 0.03, 0.03) * lm
            elif kind == "interstitial":
                zone = f.get("zone")
                weight = np.exp(-(((y - _ZONE_Y[zone]) / 0.14) ** 2)) if zone else _F(1)
                lines = np.abs(_smooth_noise(rng, n, 36)) < 0.1  # a reticular network
                img += (_F(18) * lines + _F(10)) * weight * lm
            elif kind == "hilar_nodes":
                hx = 0.5 + (-0.1 if side == "right" else 0.1)
                for dy, dx in ((-0.03, 0.0), (0.0, -0.015), (0.03, 0.01)):
                    img += _F(60) * _blob(y, x, 0.45 + dy, hx + dx, 0.022, 0.022)
            elif kind == "effusion":
                depth = 0.2 if f.get("size") == "large" else 0.09
                lateral = np.clip((x - cx) * (1 if side == "left" else -1) / 0.175, 0, 1)
                fluid = (lm > 0) & (y > anat.domes[side] - depth - 0.12 * lateral)
                img = np.where(fluid, _F(120), img)
            elif kind == "pneumothorax":
                f_in = 0.62 if f.get("size") == "large" else 0.8
                hx = cx + (0.06 if side == "right" else -0.06)
                r = _ellipse(y, x, 0.48, hx, 0.37 * f_in, 0.175 * f_in)
                img = np.where((lm > 0) & (r > 1), _F(22), img)
                img = np.where((lm > 0) & (np.abs(r - 1) < 0.05), _F(95), img)
    img += _F(2.5) * _grain(rng, n)
    return np.clip(img, 0, 255).astype(np.uint8)


_ICH_XY = {
    "basal ganglia": (0.5, 0.13),
    "thalamus": (0.56, 0.07),
    "frontal": (0.3, 0.15),
    "parietal": (0.42, 0.2),
    "temporal": (0.62, 0.24),
    "occipital": (0.75, 0.12),
}
"""Site -> (y, distance of the bleed's centre from the midline)."""
_TERRITORY = {"mca": (-0.55, 0.6), "aca": (-1.45, -0.9), "pca": (0.9, 1.5)}
"""Arterial territory -> the angles (radians from the lateral direction) of its wedge."""


@dataclass(frozen=True)
class _HeadAnatomy:
    base: np.ndarray
    brain: np.ndarray
    """Intracranial mask (bool)."""
    cortex: np.ndarray
    """Cortical ribbon mask (float32 0/1)."""
    skull: np.ndarray
    """Inside the outer table of the skull (bool): everything else is air."""


@cache
def _head_anatomy(n: int, cistern_blood: bool, sylvian_blood: bool) -> _HeadAnatomy:
    """A normal axial slice (skull, brain, ventricles, cisterns, fissures), built once; blood in
    the cisterns or Sylvian fissures replaces their CSF (subarachnoid haemorrhage)."""
    y, x = _grid(n)
    ax = np.abs(x - 0.5)
    outer = _ellipse(y, x, 0.5, 0.5, 0.46, 0.4) < 1
    inner = _ellipse(y, x, 0.5, 0.5, 0.43, 0.37)
    brain = inner < 1
    cortex = brain & (inner > 0.72)
    img = np.where(outer, _F(235), _F(0))
    img = np.where(brain, _F(96) + _F(10) * cortex, img)
    csf, blood = _F(28), _F(175)
    vent_x = 0.045 + 0.03 * ((y - 0.42) / 0.12) ** 2
    ventricles = (np.abs(ax - vent_x) < 0.022) & (np.abs(y - 0.42) < 0.12)
    ventricles |= (ax < 0.008) & (np.abs(y - 0.56) < 0.035)
    img = np.where(ventricles, csf, img)
    cistern = (_ellipse(y, x, 0.66, 0.5, 0.035, 0.07) < 1) | (
        (((ax - 0.05) / 0.025) ** 2 + ((y - 0.7) / 0.045) ** 2) < 1
    )
    img = np.where(cistern & brain, blood if cistern_blood else csf, img)
    t = np.clip((ax - 0.07) / 0.24, 0, 1)
    fissures = (np.abs(y - (0.64 - 0.1 * t)) < 0.009) & (ax > 0.07) & (ax < 0.31) & brain
    img = np.where(fissures, blood if sylvian_blood else csf, img)
    img = np.where((ax < 0.004) & brain & ~cistern, _F(120), img).astype(_F)  # falx
    img.flags.writeable = False
    return _HeadAnatomy(img, brain, cortex.astype(_F), outer)


def _head_ct(params: dict[str, Any]) -> np.ndarray:
    n = int(params.get("size", IMAGE_SIZE))
    rng = np.random.default_rng(int(params.get("seed", 0)))
    findings = list(params.get("findings", []))
    sah = next((f for f in findings if f["kind"] == "sah"), None)
    anat = _head_anatomy(n, sah is not None, bool(sah and sah.get("sylvian", True)))
    y, x = _grid(n)
    brain = anat.brain
    img = anat.base + _F(3) * _smooth_noise(rng, n, 30) * brain
    for f in findings:
        kind = f["kind"]
        for side in _sides(f.get("side", "both")):
            sx = -1 if side == "right" else 1  # the patient's right is on the image's left
            this_side = (x - 0.5) * sx > 0
            if kind == "ich":
                cy, off = _ICH_XY.get(f.get("site", "basal ganglia"), (0.5, 0.13))
                r = _ellipse(y, x, cy, 0.5 + sx * off, 0.055, 0.045)
                img = np.where(brain & (r >= 1) & (r < 2.2), img - _F(18), img)  # oedema
                img = np.where(brain & (r < 1), _F(185), img)
            elif kind == "infarct":
                ang = np.arctan2(y - 0.5, (x - 0.5) * sx)
                lo, hi = _TERRITORY.get(f.get("territory", "mca"), _TERRITORY["mca"])
                dist2 = (y - 0.5) ** 2 + (x - 0.5) ** 2
                wedge = brain & this_side & (ang > lo) & (ang < hi) & (dist2 > 0.0064)
                drop = _F(12) + _F(8) * anat.cortex if f.get("subtle") else _F(28)
                img = np.where(wedge, img - drop, img)  # subtle: grey-white contrast lost
            elif kind == "subdural":
                shifted = _ellipse(y, x, 0.5, 0.5 - sx * 0.025, 0.42, 0.35)
                img = np.where(brain & (shifted > 1) & this_side, _F(170), img)
            elif kind == "extradural":
                lens = brain & (_ellipse(y, x, 0.4, 0.5 + sx * 0.33, 0.12, 0.05) < 1)
                img = np.where(lens, _F(180), img)
    img += _F(3) * _grain(rng, n)
    img = np.where(anat.skull, img, _F(0))
    return np.clip(img, 0, 255).astype(np.uint8)


def _local_file(params: dict[str, Any]) -> np.ndarray:
    """A local image file as a square grey-level picture (an imported case's own image)."""
    from PIL import Image, UnidentifiedImageError

    size = int(params.get("size", IMAGE_SIZE))
    path = Path(str(params.get("path", "")))
    try:
        with Image.open(path) as im:
            grey = im.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(grey, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as e:
        raise CaseError(f"image {path}: cannot be read ({e})") from None


GENERATORS: dict[str, Callable[[dict[str, Any]], np.ndarray]] = {
    "chest_radiograph": _chest_radiograph,
    "head_ct": _head_ct,
    "local_file": _local_file,
}


def render(artefact: Artefact, size: int | None = None) -> np.ndarray:
    """The image of an image artefact: a (size, size) uint8 array, the same on every call
    (`size` overrides the artefact's own, e.g. for a larger picture in the docs)."""
    if artefact.kind != "image" or not artefact.image:
        raise CaseError(f"artefact '{artefact.id}' is a {artefact.kind}, not an image")
    name = artefact.image.get("generator")
    gen = GENERATORS.get(str(name))
    if gen is None:
        raise CaseError(
            f"artefact '{artefact.id}': unknown image generator {name!r}; "
            f"known: {', '.join(GENERATORS)}"
        )
    params = artefact.image if size is None else {**artefact.image, "size": size}
    return gen(params)


# ---- text forms ---------------------------------------------------------------------------


def text_table(artefact: Artefact) -> str:
    """A table artefact as a pipe table a text-only model can read."""
    if not artefact.table:
        return artefact.report
    cols = list(VARIANT_COLUMNS if artefact.kind == "variants" else LAB_COLUMNS)
    cols = [c for c in cols if any(str(r.get(c, "")) for r in artefact.table)] or cols[:2]
    head = "| " + " | ".join(c.capitalize() for c in cols) + " |"
    rule = "|" + "|".join("---" for _ in cols) + "|"
    rows = [
        "| " + " | ".join(str(r.get(c, "")).replace("|", "/") for c in cols) + " |"
        for r in artefact.table
    ]
    return "\n".join([head, rule, *rows])


def save_png(image: np.ndarray, path: Path | str) -> Path:
    """Write a generated image as a greyscale PNG (for docs and reviews; not the hot path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    plt.imsave(path, image, cmap="gray", vmin=0, vmax=255)
    return path
