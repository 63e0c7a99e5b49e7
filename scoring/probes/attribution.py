"""Fact attribution: which of the case's facts drove the model's decision.

The players are the case's facts (by default its must-ask and should-ask facts, see
`masking.default_players`); the decision is the diagnosis the model ranks first on the whole
case; the value of a set of facts is how strongly the model backs that diagnosis when only
those facts are available (the others masked: the patient does not know them):

* `value="confidence"`: its stated confidence in that diagnosis (1 if it ranks it first without
  a confidence, 0 if it does not list it);
* `value="frequency"`: the share of `samples` consultations (seeds `seed`, `seed+1`, ...) in
  which it ranks that diagnosis first: the probability by repeated sampling.

Shapley values are estimated by shap's `PermutationExplainer` (antithetic permutations, so an
additive value is recovered exactly by one permutation) with an `Independent` masker whose
background is the all-masked record: each fact's value is its average marginal contribution
over orderings, from nothing known to everything known. Every distinct coalition is played
once (results are cached), `concurrency` consultations at a time.

Alongside, LIME-style local surrogate weights: a ridge regression of the value on the facts'
presence over random coalitions (sizes uniform, then members uniform), weighted by an
exponential kernel of the distance from the full record (LIME's tabular default width,
0.75 x sqrt(players)).

**Explanation alignment** compares the Shapley values with the KB's diagnostic weight of each
fact for the chosen diagnosis: the log-likelihood ratio the KB's likelihoods give it against
the other conditions (equal priors; a finding the KB does not link to a condition has
likelihood 0.01 there, as in the scripted baseline): log(p / p_other) for a present finding or
abnormal test, log((1 - p) / (1 - p_other)) for an absent one; facts the KB does not model
(identifiers, comorbidities, medicines) weigh 0. The alignment score is Spearman's rank
correlation between the two over the players; `kb_mass` is the share of the attribution mass
(|Shapley|) on facts the KB gives any weight.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from clinicgym.errors import require_extra
from clinicgym.patients.cases.case import Case, Diagnosis, Fact
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.scoring.errors import ProbeError
from clinicgym.scoring.probes._play import (
    DEFAULT_MAX_TURNS,
    AgentFactory,
    diagnosis_value,
    play,
    resolve_diagnosis,
    top_diagnosis,
)
from clinicgym.scoring.probes.masking import (
    default_players,
    mask_case,
    masked_concepts,
    masked_patient_factory,
)

ValueMode = Literal["confidence", "frequency"]
LEAK = 0.01
"""Likelihood of a finding under a condition the KB does not link it to."""
DEFAULT_PERMUTATIONS = 4
DEFAULT_LIME_SAMPLES = 64
RIDGE_ALPHA = 1.0
TOP_K = 3


class FactAttribution(BaseModel):
    """One player: the fact, its Shapley value, its surrogate weight and its KB weight."""

    fact_id: str
    concept: str
    category: str
    text: str
    present: bool
    shapley: float
    lime: float | None = None
    kb_weight: float


class Attribution(BaseModel):
    """Fact attribution for one agent on one case."""

    case_id: str
    agent: str
    status: Literal["ok", "error", "no_decision"]
    """'no_decision': the model gave no diagnosis on the full case, so nothing to explain."""
    error: str | None = None
    decision: str | None = None
    """The first-ranked diagnosis on the full case (what is explained)."""
    condition_id: str | None = None
    value: ValueMode = "confidence"
    samples: int = 1
    base_value: float | None = None
    """Value with every player masked."""
    full_value: float | None = None
    """Value with nothing masked."""
    evaluations: int = 0
    """Distinct coalitions played (each `samples` consultations)."""
    errors: int = 0
    """Consultations that failed (agent or env errors); any makes the probe an error."""
    facts: list[FactAttribution] = []
    alignment: float | None = None
    """Spearman correlation between Shapley values and KB weights (None if either is flat)."""
    kb_mass: float | None = None
    """Share of |Shapley| on facts the KB gives any weight."""
    top_agreement: float | None = None
    """Overlap of the top-3 facts by |Shapley| and by |KB weight|."""

    def mass_on(self, fact_ids: Sequence[str]) -> float | None:
        """Share of the attribution mass (sum of |Shapley|) on these facts."""
        total = sum(abs(f.shapley) for f in self.facts)
        if total <= 0:
            return None
        return sum(abs(f.shapley) for f in self.facts if f.fact_id in set(fact_ids)) / total

    def top(self, k: int = TOP_K) -> list[FactAttribution]:
        """The k facts with the largest |Shapley|, largest first (zeros left out)."""
        ranked = sorted(self.facts, key=lambda f: -abs(f.shapley))
        return [f for f in ranked[:k] if abs(f.shapley) > 0]


def _import_shap() -> Any:
    """shap, with numba's JIT off unless numba is already loaded or the user chose: shap's
    kernels compile for ~15 s per process and buy nothing at a few dozen players."""
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
    require_extra("probes", "the fact-attribution probe", "shap")
    import shap

    return shap


# ---- KB weights ----------------------------------------------------------------------------


def kb_weight(fact: Fact, condition_id: str | None, kb: KnowledgeBase) -> float:
    """The KB's diagnostic weight of a fact for a condition: its log-likelihood ratio against
    the other conditions (see the module docstring); 0 for facts the KB does not model."""
    if condition_id is None or condition_id not in kb.conditions or len(kb.conditions) < 2:
        return 0.0
    concept = fact.concept
    if fact.category in ("lab", "imaging") or (
        fact.how_revealed == "order" and concept in kb.tests
    ):
        if concept not in kb.tests:
            return 0.0
        lik = {
            cid: next((t.p for t in c.tests if t.id == concept), None)
            for cid, c in kb.conditions.items()
        }
        present = fact.abnormal
    elif concept in kb.findings:
        lik = {
            cid: next((link.p for link in c.findings if link.id == concept), None)
            for cid, c in kb.conditions.items()
        }
        present = fact.present
    else:
        return 0.0
    if all(v is None for v in lik.values()):
        return 0.0
    p = min(max(lik[condition_id] or LEAK, LEAK), 1 - LEAK)
    others = [min(max(v or LEAK, LEAK), 1 - LEAK) for cid, v in lik.items() if cid != condition_id]
    q = float(np.mean(others))
    return math.log(p / q) if present else math.log((1 - p) / (1 - q))


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho by `scipy.stats.spearmanr` (ties share their mean rank); None with fewer
    than three pairs or a constant side, where rho is undefined."""
    from scipy.stats import spearmanr  # here: importing scipy.stats costs every command startup

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


# ---- LIME-style surrogate ------------------------------------------------------------------


def lime_weights(z: np.ndarray, y: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Weighted ridge coefficients of y on binary coalitions z (rows), LIME's exponential
    kernel on the Euclidean distance from the full coalition (width 0.75 x sqrt(n)).

    Hand-written, not the lime package or captum's Lime: LimeTabularExplainer draws its own
    perturbations from training statistics and calls a synchronous predict function, where
    here each coalition is a cached, concurrently played consultation; lime's `LimeBase` would
    fit these same rows with sklearn's Ridge, but brings lime (unreleased since 2020) and
    scikit-image into the probes extra for these eight lines; captum's Lime needs torch."""
    n = z.shape[1]
    width = 0.75 * math.sqrt(n)
    d2 = ((1.0 - z) ** 2).sum(axis=1)
    w = np.sqrt(np.exp(-d2 / width**2))
    xm = np.average(z, axis=0, weights=w)
    ym = np.average(y, weights=w)
    zc, yc = z - xm, y - ym
    a = zc.T @ (w[:, None] * zc) + alpha * np.eye(n)
    return np.linalg.solve(a, zc.T @ (w * yc))


def lime_coalitions(n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """The full coalition, the empty one, then random ones (size uniform, members uniform)."""
    rows = [np.ones(n), np.zeros(n)]
    for _ in range(max(samples - 2, 0)):
        k = int(rng.integers(1, n + 1))
        z = np.zeros(n)
        z[rng.choice(n, size=k, replace=False)] = 1.0
        rows.append(z)
    return np.array(rows)


# ---- the probe -----------------------------------------------------------------------------


class _Values:
    """v(coalition) for one agent and case: played once per distinct coalition, cached."""

    def __init__(
        self,
        factory: AgentFactory,
        case: Case,
        kb: KnowledgeBase,
        players: list[str],
        target: Diagnosis,
        *,
        mode: ValueMode,
        samples: int,
        seed: int,
        max_turns: int,
        concurrency: int,
    ) -> None:
        self.factory, self.case, self.kb = factory, case, kb
        self.players, self.target = players, target
        self.mode, self.samples, self.seed, self.max_turns = mode, samples, seed, max_turns
        self.cache: dict[tuple[int, ...], float] = {}
        self.errors: list[str] = []
        self.sem = asyncio.Semaphore(concurrency)
        self.matcher = matcher_for(kb)

    async def _one(self, key: tuple[int, ...]) -> float:
        masked = [p for p, keep in zip(self.players, key, strict=True) if not keep]
        case = mask_case(self.case, masked, self.kb)
        patient = masked_patient_factory(self.matcher, masked_concepts(self.case, masked))
        got = []
        for j in range(self.samples):
            async with self.sem:
                played = await play(
                    self.factory,
                    case,
                    self.kb,
                    seed=self.seed + j,
                    max_turns=self.max_turns,
                    patient_factory=patient,
                    label=f"attribution {self.case.id} mask={''.join(map(str, key))}",
                )
            if played.episode is None:
                self.errors.append(played.error or "unknown error")
                return math.nan
            mode = "top1" if self.mode == "frequency" else "confidence"
            got.append(diagnosis_value(played.episode, self.target, mode))
        return float(np.mean(got))

    async def many(self, rows: np.ndarray) -> np.ndarray:
        keys = [tuple(round(float(v)) for v in row) for row in rows]
        todo = [k for k in dict.fromkeys(keys) if k not in self.cache]
        for k, v in zip(todo, await asyncio.gather(*(self._one(k) for k in todo)), strict=True):
            self.cache[k] = v
        return np.array([self.cache[k] for k in keys])


def _checked_players(
    case: Case,
    players: Sequence[str] | None,
    value: ValueMode,
    samples: int,
    permutations: int,
) -> list[str]:
    """The players to attribute over; refuses bad settings before any consultation is played."""
    if value not in ("confidence", "frequency"):
        raise ProbeError(f"attribution: value {value!r} is not one of confidence, frequency")
    if samples < 1 or permutations < 1:
        raise ProbeError(
            f"attribution: samples ({samples}) and permutations ({permutations}) must be >= 1"
        )
    ids = {f.id for f in case.facts}
    players = list(players) if players is not None else default_players(case)
    unknown = [p for p in players if p not in ids]
    if unknown:
        raise ProbeError(f"attribution on {case.id}: unknown fact ids {unknown}")
    return players


async def _shapley(values: _Values, n: int, *, permutations: int, seed: int) -> np.ndarray:
    """Shapley values by shap's permutation explainer, in a thread (shap cannot await plays)."""
    loop = asyncio.get_running_loop()

    def model(rows: np.ndarray) -> np.ndarray:
        return asyncio.run_coroutine_threadsafe(values.many(rows), loop).result()

    def explain() -> np.ndarray:
        shap = _import_shap()
        masker = shap.maskers.Independent(np.zeros((1, n)), max_samples=1)
        explainer = shap.PermutationExplainer(model, masker, seed=seed)
        result = explainer(np.ones((1, n)), max_evals=permutations * (2 * n + 1), silent=True)
        return np.asarray(result.values[0], dtype=float)

    return await asyncio.to_thread(explain)


def _fact_attributions(
    values: _Values, shapley: np.ndarray, lime: np.ndarray
) -> list[FactAttribution]:
    """One row per player: the fact beside its Shapley value, surrogate weight and KB weight."""
    by_id = {f.id: f for f in values.case.facts}
    return [
        FactAttribution(
            fact_id=p,
            concept=by_id[p].concept,
            category=by_id[p].category,
            text=by_id[p].text,
            present=by_id[p].present,
            shapley=float(shapley[i]),
            lime=float(lime[i]),
            kb_weight=kb_weight(by_id[p], values.target.condition_id, values.kb),
        )
        for i, p in enumerate(values.players)
    ]


def _set_alignment(out: Attribution) -> None:
    """Fill in how the attribution agrees with the KB: rank correlation, KB mass, top-3 overlap."""
    facts = out.facts
    out.alignment = _spearman([f.shapley for f in facts], [f.kb_weight for f in facts])
    total = sum(abs(f.shapley) for f in facts)
    out.kb_mass = (
        sum(abs(f.shapley) for f in facts if f.kb_weight != 0) / total if total > 0 else None
    )
    top_s = {f.fact_id for f in out.top()}
    top_kb = {
        f.fact_id for f in sorted(facts, key=lambda f: -abs(f.kb_weight))[:TOP_K] if f.kb_weight
    }
    out.top_agreement = len(top_s & top_kb) / TOP_K if top_s and top_kb else None


async def _explain(
    values: _Values,
    head: dict[str, Any],
    decided: dict[str, Any],
    *,
    permutations: int,
    lime_samples: int,
    seed: int,
) -> Attribution:
    """Attribute the decision in `values` over its players: Shapley, surrogate and KB alignment."""
    n = len(values.players)
    shapley = await _shapley(values, n, permutations=permutations, seed=seed)
    z = lime_coalitions(n, lime_samples, np.random.default_rng(seed))
    y = await values.many(z)
    if values.errors:
        return Attribution(
            **head,
            **decided,
            status="error",
            error=values.errors[0],
            errors=len(values.errors),
            evaluations=len(values.cache),
        )
    facts = _fact_attributions(values, shapley, lime_weights(z, y))
    out = Attribution(
        **head,
        **decided,
        status="ok",
        base_value=values.cache[tuple([0] * n)],
        full_value=values.cache[tuple([1] * n)],
        evaluations=len(values.cache),
        facts=facts,
    )
    _set_alignment(out)
    return out


async def attribute(
    factory: AgentFactory,
    case: Case,
    kb: KnowledgeBase,
    *,
    agent: str = "agent",
    players: Sequence[str] | None = None,
    value: ValueMode = "confidence",
    samples: int = 1,
    permutations: int = DEFAULT_PERMUTATIONS,
    lime_samples: int = DEFAULT_LIME_SAMPLES,
    seed: int = 0,
    max_turns: int = DEFAULT_MAX_TURNS,
    concurrency: int = 4,
) -> Attribution:
    """Shapley values, LIME-style weights and KB alignment of the case's facts for the
    diagnosis the agent ranks first on the whole case (see the module docstring)."""
    players = _checked_players(case, players, value, samples, permutations)
    head = {"case_id": case.id, "agent": agent, "value": value, "samples": samples}
    full = await play(factory, case, kb, seed=seed, max_turns=max_turns, label=f"{case.id} full")
    if full.episode is None:
        return Attribution(**head, status="error", error=full.error, errors=1)
    name = top_diagnosis(full.episode)
    if name is None:
        return Attribution(**head, status="no_decision")
    target = resolve_diagnosis(name, case, kb)
    values = _Values(
        factory,
        case,
        kb,
        players,
        target,
        mode=value,
        samples=samples,
        seed=seed,
        max_turns=max_turns,
        concurrency=concurrency,
    )
    decided = {"decision": name, "condition_id": target.condition_id}
    if not players:
        return Attribution(**head, **decided, status="ok")
    return await _explain(
        values, head, decided, permutations=permutations, lime_samples=lime_samples, seed=seed
    )
