"""The generator's model of a case, inverted: P(condition | what has been observed so far).

Presentation-first generation (patients/cases/presentation.py) draws a presentation and a setting, a
member condition by prevalence for the patient's age and sex, then each finding and test result
independently given the condition (with atypical presentations and distractors at the rates in
`generation.yaml`). This module holds exactly that model as likelihood tables, so the KB-aware
baselines (`scripted`, `opening`) reason with the generator's own probabilities and the case's
difficulty ("how much must be observed to reach a 90% posterior") is measured with them too.

`Belief` is one episode's posterior; `Belief.best` is the greedy information-gain policy that
both the scripted agent and the difficulty measure follow, so there is one policy, not two.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from clinicgym.patients.cases.case import Difficulty
from clinicgym.patients.knowledge.bands import AGE_BANDS, POPULATION_AGE_BANDS, age_band
from clinicgym.patients.knowledge.kb import SYMPTOM_CATEGORIES, KnowledgeBase, Presentation

LEAK = 0.002
"""P(finding | condition) for a finding neither the condition nor its presentation touches."""
FALLBACK_LEAK = 0.01
"""The same for cases from outside presentation-first generation (cohorts, imports)."""
EXAM_DISCOUNT = 0.9
TEST_DISCOUNT = 0.8
MIN_GAIN = 0.005
STOP_AT = 0.9

Kind = Literal["ask", "examine", "order"]
TIERS = {"easy": 3, "medium": 8}
"""Difficulty tiers by the observations the greedy policy needs to reach a 90% posterior on
the true condition: easy <= 3, medium <= 8, hard beyond (or never)."""
MAX_STEPS = 30
"""The difficulty measure gives up after this many observations ('never reached')."""


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1.0)
    return -(q * np.log(q)).sum(axis=0)


@dataclass(frozen=True)
class Choice:
    """The next observation the greedy policy takes: what, which, and its expected gain."""

    kind: Kind
    target: str
    """A finding id (ask), an exam system (examine) or a test id (order)."""
    gain: float
    """In nats, to about 1e-14 (`Belief.best` computes it once per distinct column)."""


class KBModel:
    """Likelihood tables over the whole KB, built once per KB and shared by every belief."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        gen = kb.generation
        self.atypical = (gen.atypical_share, gen.atypical_factor) if gen else (0.0, 1.0)
        self.distractor = gen.distractor_p if gen else FALLBACK_LEAK
        self.mimic = (gen.mimic_share, gen.mimic_factor) if gen else (0.0, 0.0)
        self.opening_lr = gen.opening_lr if gen else 3.0
        self.conditions = sorted(kb.conditions)
        self.cond_index = {c: i for i, c in enumerate(self.conditions)}
        self.history = sorted(f.id for f in kb.findings.values() if f.category != "exam")
        self.exam = sorted(f.id for f in kb.findings.values() if f.category == "exam")
        self.features = self.history + self.exam
        self.feature_index = {f: i for i, f in enumerate(self.features)}
        self.tests = sorted(kb.tests)
        self.test_index = {t: i for i, t in enumerate(self.tests)}
        self.background = {b.id for b in kb.background.findings}
        self.symptom = np.array(
            [
                f in kb.findings and kb.findings[f].category in SYMPTOM_CATEGORIES
                for f in self.features
            ]
        )
        """Columns `Generation.symptom_floor` squeezes in presentation-first cases."""
        c_n, f_n = len(self.conditions), len(self.features)
        self.linked = np.zeros((c_n, f_n), dtype=bool)
        self.p_link = np.zeros((c_n, f_n))
        """P(finding | condition) as the KB gives it (0 where not linked), before atypia."""
        a, k = self.atypical
        self.lik = np.full((c_n, f_n), FALLBACK_LEAK)
        self.test_lik = np.zeros((c_n, len(self.tests)))
        spec = np.array([kb.tests[t].specificity for t in self.tests])
        self.test_lik[:] = np.clip(1 - spec, FALLBACK_LEAK, None)
        for ci, cid in enumerate(self.conditions):
            cond = kb.conditions[cid]
            for link in cond.findings:
                j = self.feature_index[link.id]
                self.linked[ci, j] = True
                self.p_link[ci, j] = link.p
                self.lik[ci, j] = min(max(link.p * (1 - a + a * k), FALLBACK_LEAK), 0.999)
            for t in cond.tests:
                self.test_lik[ci, self.test_index[t.id]] = min(max(t.p, FALLBACK_LEAK), 0.999)
        self.systems: dict[str, list[int]] = {}
        for fid in self.exam:
            system = kb.findings[fid].system
            if system is not None:
                self.systems.setdefault(system, []).append(self.feature_index[fid])
        self.system_names = list(self.systems)
        self.exam_cols = np.array([j for cols in self.systems.values() for j in cols], dtype=int)
        self.exam_system = np.array(
            [k for k, cols in enumerate(self.systems.values()) for _ in cols], dtype=int
        )
        """Exam feature columns grouped by system, and each column's system index."""

    # ---- priors ---------------------------------------------------------------------------

    def prior(
        self, age: int, sex: str, setting: str | None = None, complaint: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(condition | age, sex, setting, complaint) and the likelihood table that goes with
        it. Presentation-first cases: a mixture over the presentations with this complaint and
        setting, exactly as the generator draws them (`demographic_weights`). Otherwise: every
        condition equally likely, then demographics from its prevalence table (the balanced
        KB sampler)."""
        p, lik = self._prior(age, sex, setting, complaint)
        return p.copy(), lik

    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _prior(
        self, age: int, sex: str, setting: str | None, complaint: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`prior`, kept for the last 256 openings: realising a case asks for its opening's
        prior three times (difficulty, must-ask facts, look-alikes)."""
        pres = self._presentations(complaint, setting, age)
        if not pres:
            return self.balanced_prior(age, sex), self.lik
        p = np.zeros(len(self.conditions))
        lik = None
        for pr, s in pres:
            weights = demographic_weights(self.kb, pr, s, age, sex)
            total = sum(weights.values())
            if total <= 0:
                continue
            slot = 1 / len(usable_settings(self.kb, pr))  # presentations are equally likely
            demo = p_demographics(self.kb, pr, s, age, sex, weights)
            for cid, w in weights.items():
                p[self.cond_index[cid]] += slot * demo * w / total
            lik = self.cluster_lik(pr.id, s) if lik is None else lik
        if p.sum() == 0 or lik is None:
            return self.balanced_prior(age, sex), self.lik
        return p / p.sum(), lik

    def _presentations(
        self, complaint: str | None, setting: str | None, age: int
    ) -> list[tuple[Presentation, str]]:
        if complaint is None or setting is None:
            return []
        return [
            (p, setting)
            for p in self.kb.presentations.values()
            if p.complaint == complaint
            and setting in usable_settings(self.kb, p)
            and p.age[0] <= age <= p.age[1]
        ]

    def balanced_prior(self, age: int, sex: str) -> np.ndarray:
        """P(condition | age, sex) under the balanced condition-first sampler: the one
        demographic prior, also the RL reward's (`scoring.reward`)."""
        p = np.zeros(len(self.conditions))
        for i, cid in enumerate(self.conditions):
            c = self.kb.conditions[cid]
            p[i] = p_age(c.prevalence.age_bands, c.age, age) * p_sex(c.sex, c.prevalence.sex, sex)
        if p.sum() == 0:
            p[:] = 1.0
        return p / p.sum()

    @functools.cache  # noqa: B019 - one model per KB version, kept for the process
    def cluster_lik(self, presentation: str, setting: str) -> np.ndarray:
        """The likelihood table for cases of one presentation and setting, as the generator
        draws them: a finding that a member (or a member's differential) causes is present in
        the members that do not cause it at `distractor_p`, raised where a member mimics a
        look-alike (`mimic_share`, `mimic_factor`); the complaint tells nothing."""
        pres = self.kb.presentations[presentation]
        cols, by_chance = self.distractor_cols(presentation, setting)
        lik = self._distracted(np.where(self.linked, self.lik, LEAK), cols)
        rows = self.member_rows(presentation, setting)
        share, factor = self.mimic
        if len(rows) > 1 and share > 0:  # a member mimicking another, chosen at random
            raw = self.p_link[np.ix_(rows, cols)]
            total = raw.sum(axis=0)
            for a, r in enumerate(rows):
                others = (total - raw[a]) / (len(rows) - 1)
                mimic = 1 - (1 - self.distractor) * (1 - share * factor * others)
                lik[r, cols] = np.where(self.linked[r, cols], lik[r, cols], mimic)
        lik = self._squeeze(lik, self.linked | by_chance)
        lik[:, self.feature_index[pres.complaint]] = 0.999
        return lik

    @functools.cache  # noqa: B019
    def distractor_cols(self, presentation: str, setting: str) -> tuple[list[int], np.ndarray]:
        """Feature columns a case of this presentation and setting may show by chance
        (`distractor_ids`), as indices and as a mask over the features; built once."""
        pres = self.kb.presentations[presentation]
        cols = [self.feature_index[f] for f in distractor_ids(self.kb, pres, setting)]
        return cols, np.isin(np.arange(len(self.features)), cols)

    def _distracted(self, table: np.ndarray, cols: list[int]) -> np.ndarray:
        """`table` (changed in place) with its unlinked distractor columns at `distractor_p`."""
        table[:, cols] = np.where(self.linked[:, cols], table[:, cols], self.distractor)
        return table

    def _squeeze(self, lik: np.ndarray, drawn: np.ndarray) -> np.ndarray:
        """Symptom likelihoods as the generator draws them (`Generation.symptom_p`), where the
        finding is drawn at all (`drawn`: linked or a look-alike's); the rest stay at LEAK."""
        gen = self.kb.generation
        if gen is None or gen.symptom_floor <= 0:
            return lik
        return np.where(drawn & self.symptom, gen.symptom_p(lik), lik)

    @functools.cache  # noqa: B019
    def opening_safe(self, presentation: str, setting: str) -> frozenset[str]:
        """History findings a patient may volunteer in the opening: their likelihood differs by
        at most `opening_lr` across the members, so they cannot point at one member."""
        lik = self.cluster_lik(presentation, setting)
        rows = self.member_rows(presentation, setting)
        sub = lik[np.ix_(rows, range(len(self.history)))]
        ratio = sub.max(axis=0) / np.clip(sub.min(axis=0), 1e-9, None)
        return frozenset(
            f for f, r in zip(self.history, ratio, strict=True) if r <= self.opening_lr
        )

    @functools.cache  # noqa: B019
    def cluster_modes(
        self, presentation: str, setting: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The generator's cases of one presentation and setting as hypotheses (condition,
        atypical or not, look-alike mimicked or none), so that a belief can weigh the modes
        jointly instead of as independent per-finding rates: each hypothesis's condition row,
        its probability given the condition, and its likelihood over the features."""
        pres = self.kb.presentations[presentation]
        rows = self.member_rows(presentation, setting)
        cols, in_cols = self.distractor_cols(presentation, setting)
        a, k = self.atypical
        share, factor = self.mimic
        d = self.distractor
        base = self._distracted(
            np.where(self.linked, np.clip(self.p_link, LEAK, 0.999), LEAK), cols
        )
        complaint = self.feature_index[pres.complaint]
        cond_rows: list[int] = []
        weights: list[float] = []
        liks: list[np.ndarray] = []
        for r in rows:
            siblings = [s for s in rows if s != r]
            mimics: list[tuple[int | None, float]] = [(None, 1.0)]
            if siblings and share > 0:
                mimics = [(None, 1 - share)] + [(s, share / len(siblings)) for s in siblings]
            for atypical, p_a in ((False, 1 - a), (True, a)):
                if p_a <= 0:
                    continue
                row = base[r].copy()
                if atypical:
                    scaled = np.clip(self.p_link[r] * k, LEAK, 0.999)
                    row = np.where(self.linked[r], scaled, row)
                for s, p_m in mimics:
                    lik = row.copy()
                    if s is not None:
                        mimic = 1 - (1 - d) * (1 - factor * self.p_link[s, cols])
                        lik[cols] = np.where(self.linked[r, cols], lik[cols], mimic)
                    lik = self._squeeze(lik, self.linked[r] | in_cols)
                    lik[complaint] = 0.999
                    cond_rows.append(r)
                    weights.append(p_a * p_m)
                    liks.append(lik)
        return np.array(cond_rows), np.array(weights), np.array(liks)

    @functools.cache  # noqa: B019
    def askable(self, age: int, sex: str) -> np.ndarray:
        """History findings that apply to a patient of this age and sex (read-only: a belief
        copies it); built once per age and sex, not once per belief."""
        mask = np.array(
            [_applies(self.kb.findings[f].applies, age, sex) for f in self.history], dtype=bool
        )
        mask.flags.writeable = False
        return mask

    @functools.cache  # noqa: B019
    def orderable(self, setting: str | None, age: int, sex: str) -> tuple[np.ndarray, np.ndarray]:
        """Tests this setting can do for a patient of this age and sex, and each test's result
        delay in the setting (read-only: a belief copies the mask); built once per key."""
        tests = [self.kb.tests[t] for t in self.tests]
        ok = np.array(
            [
                (setting is None or setting in t.settings) and _applies(t.applies, age, sex)
                for t in tests
            ],
            dtype=bool,
        )
        delay = np.array(
            [t.delay.get(setting, 0) if setting else 0 for t in tests]  # type: ignore[call-overload]
        )
        ok.flags.writeable = delay.flags.writeable = False
        return ok, delay

    @functools.cache  # noqa: B019
    def background_rates(self, band: str) -> dict[int, float]:
        """Feature column -> population rate of each background finding for an age band: in
        a condition that does not cause it, it occurs at that rate (`Belief.start`)."""
        return {self.feature_index[f.id]: f.p.get(band, 0.0) for f in self.kb.background.findings}

    def member_rows(self, presentation: str, setting: str) -> list[int]:
        """Row indices of the members seen with this presentation in this setting."""
        pres = self.kb.presentations[presentation]
        return [self.cond_index[m.condition] for m in pres.members_in(setting)]


def usable_settings(kb: KnowledgeBase, pres: Presentation) -> list[str]:
    """The settings a case of `pres` can be drawn in: those where at least `min_members`
    members are seen (fewer, and the setting alone would all but name the condition)."""
    least = kb.generation.min_members if kb.generation else 2
    return [s for s in pres.settings if len(pres.members_in(s)) >= least]


def demographic_weights(
    kb: KnowledgeBase, pres: Presentation, setting: str, age: int, sex: str
) -> dict[str, float]:
    """Member condition id -> its chance weight for a patient of this age and sex presenting
    with `pres` in `setting`: (member weight x prevalence for the age band and sex, relative to
    the condition's commonest band and sex) ** `prevalence_temper`. Members the patient cannot
    have (age, sex, prevalence 0) are left out."""
    temper = kb.generation.prevalence_temper if kb.generation else 1.0
    band = age_band(age)
    out: dict[str, float] = {}
    for m in pres.members_in(setting):
        c = kb.conditions.get(m.condition)
        if c is None or not c.age[0] <= age <= c.age[1] or c.sex not in ("any", sex):
            continue
        bands = c.prevalence.age_bands
        rel = bands.get(band, 0.0) / max(bands.values())  # type: ignore[call-overload]
        if c.sex == "any":
            sw = c.prevalence.sex
            rel *= sw.get(sex, 0.0) / max(sw.values())  # type: ignore[call-overload]
        if rel > 0:
            out[c.id] = (m.weight * rel) ** temper
    return out


def age_share(pres: Presentation, age: int) -> float:
    """P(age) for a patient presenting with `pres`: population age-band shares restricted to
    its age range, uniform within a band."""
    lo_p, hi_p = pres.age
    if not lo_p <= age <= hi_p:
        return 0.0
    usable = {
        b: w
        for b, w in POPULATION_AGE_BANDS.items()
        if AGE_BANDS[b][0] <= hi_p and AGE_BANDS[b][1] >= lo_p
    }
    band = age_band(age)
    lo, hi = max(AGE_BANDS[band][0], lo_p), min(AGE_BANDS[band][1], hi_p)
    return usable[band] / sum(usable.values()) / (hi - lo + 1)


def p_demographics(
    kb: KnowledgeBase,
    pres: Presentation,
    setting: str,
    age: int,
    sex: str,
    weights: dict[str, float] | None = None,
) -> float:
    """P(age, sex | presentation, setting) under the generator, which redraws a patient no
    member can be (so the density is renormalised over the patients some member fits).
    `weights`: the patient's `demographic_weights`, when the caller has them already."""
    if weights is None:
        weights = demographic_weights(kb, pres, setting, age, sex)
    if not _enough_fit(kb, weights):
        return 0.0
    return age_share(pres, age) * 0.5 / _fits(kb, pres, setting)


def _fits(kb: KnowledgeBase, pres: Presentation, setting: str) -> float:
    key = (kb.version, pres.id, setting)
    z = _FIT_CACHE.get(key)
    if z is None:
        z = _FIT_CACHE[key] = sum(
            age_share(pres, a) * 0.5
            for a in range(pres.age[0], pres.age[1] + 1)
            for sx in ("female", "male")
            if fitting_members(kb, pres, setting, a, sx)
        )
    return z


def fitting_members(
    kb: KnowledgeBase, pres: Presentation, setting: str, age: int, sex: str
) -> dict[str, float]:
    """`demographic_weights` for a patient the generator may draw for `pres` in `setting`;
    empty unless at least `min_fitting` members fit their age and sex (with fewer, the
    demographics all but name the case, and the generator redraws the patient)."""
    weights = demographic_weights(kb, pres, setting, age, sex)
    return weights if _enough_fit(kb, weights) else {}


def _enough_fit(kb: KnowledgeBase, weights: dict[str, float]) -> bool:
    """Whether at least `min_fitting` members fit the patient (`demographic_weights`)."""
    return len(weights) >= (kb.generation.min_fitting if kb.generation else 1)


_FIT_CACHE: dict[tuple[str, str, str], float] = {}


def p_age(bands: dict[str, float], cond_age: tuple[int, int], age: int) -> float:
    """P(age | condition) under the balanced condition-first sampler: a band by prevalence,
    then an age uniformly within the band and the condition's age range."""
    lo_c, hi_c = cond_age
    if not lo_c <= age <= hi_c:
        return 0.0
    usable = {
        b: w
        for b, w in bands.items()
        if w > 0 and AGE_BANDS[b][0] <= hi_c and AGE_BANDS[b][1] >= lo_c
    }
    band = age_band(age)
    if band not in usable:
        return 0.0
    lo, hi = max(AGE_BANDS[band][0], lo_c), min(AGE_BANDS[band][1], hi_c)
    return usable[band] / sum(usable.values()) / (hi - lo + 1)


def p_sex(cond_sex: str, weights: dict[str, float], sex: str) -> float:
    """P(sex | condition) under the condition's prevalence table; 1 for every condition when
    the record does not say (an imported case's 'unspecified')."""
    if sex not in ("female", "male"):
        return 1.0
    if cond_sex != "any":
        return 1.0 if cond_sex == sex else 0.0
    total = weights.get("female", 0.0) + weights.get("male", 0.0)
    return weights.get(sex, 0.0) / total if total else 0.5


def opening_of(info: dict[str, Any]) -> tuple[int, str, str | None, str | None]:
    """What the env's reset `info` tells an agent: the patient's age, sex and setting, and the
    complaint (the first concept the opening affirmed)."""
    patient = info.get("patient", {})
    answers = info.get("result", {}).get("answers", []) or []
    complaint = next((a["concept"] for a in answers if a.get("status") == "affirmed"), None)
    return (
        int(patient.get("age", 40)),
        str(patient.get("sex", "female")),
        patient.get("setting"),
        complaint,
    )


_MODELS: dict[str, KBModel] = {}


def model_for(kb: KnowledgeBase) -> KBModel:
    """The tables for `kb`, built once per KB version."""
    m = _MODELS.get(kb.version)
    if m is None:
        m = _MODELS[kb.version] = KBModel(kb)
    return m


def distractor_ids(kb: KnowledgeBase, pres: Presentation, setting: str) -> list[str]:
    """Findings a case of this presentation may show by chance: every finding a member or a
    member's differential causes (the look-alikes' findings, which a clinician asks about).
    Worked out once per KB version, presentation and setting (every generated case asks)."""
    key = (kb.version, pres.id, setting)
    ids = _DISTRACTORS.get(key)
    if ids is None:
        out: dict[str, None] = {}
        for m in pres.members_in(setting):
            c = kb.conditions.get(m.condition)
            if c is None:
                continue
            for cid in (c.id, *c.differential):
                for link in kb.conditions[cid].findings:
                    if link.id != pres.complaint:
                        out[link.id] = None
        ids = _DISTRACTORS[key] = tuple(out)
    return list(ids)


_DISTRACTORS: dict[tuple[str, str, str], tuple[str, ...]] = {}


class Belief:
    """One episode's posterior, and what has been observed.

    It is held over hypotheses: for a presentation-first case, (condition, atypical or not,
    look-alike mimicked or none), exactly the generator's modes (`KBModel.cluster_modes`);
    otherwise one hypothesis per KB condition. `posterior()` sums them per condition."""

    def __init__(
        self,
        model: KBModel,
        post: np.ndarray,
        lik: np.ndarray,
        age: int,
        sex: str,
        setting: str | None,
        cond_of: np.ndarray | None = None,
    ) -> None:
        self.model, self.post, self.lik = model, post, lik
        self.cond_of = np.arange(len(model.conditions)) if cond_of is None else cond_of
        """The condition row of each hypothesis."""
        self.test_lik = model.test_lik[self.cond_of]
        self.age, self.sex, self.setting = age, sex, setting
        self.open = model.askable(age, sex).copy()
        """History findings still worth asking: they apply to the patient, not asked yet."""
        self.examined: set[str] = set()
        orderable, self.delay = model.orderable(setting, age, sex)
        self.orderable = orderable.copy()
        """Tests this setting can do for this patient and not yet ordered."""
        self._kept: tuple[bytes, tuple[np.ndarray, np.ndarray]] | None = None
        self._cols: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def start(
        cls,
        model: KBModel,
        age: int,
        sex: str,
        setting: str | None = None,
        complaint: str | None = None,
        *,
        modes: bool = True,
    ) -> Belief:
        """The prior for a patient, before anything but the opening complaint is known.
        `modes=False` keeps one hypothesis per condition with the modes' marginal rates."""
        post, lik = model.prior(age, sex, setting, complaint)
        cond_of = None
        slots = model._presentations(complaint, setting, age)
        if modes and len(slots) == 1:
            rows, weights, liks = model.cluster_modes(slots[0][0].id, slots[0][1])
            hyp = post[rows] * weights
            keep = hyp > 0
            post, lik, cond_of = hyp[keep] / hyp[keep].sum(), liks[keep], rows[keep]
        bg = model.background_rates(age_band(age))
        if bg:  # background findings occur at their population rate whatever the condition
            lik = lik.copy()
            rows_linked = model.linked if cond_of is None else model.linked[cond_of]
            for j, rate in bg.items():
                lik[:, j] = np.where(rows_linked[:, j], lik[:, j], rate)
        b = cls(model, post, lik, age, sex, setting, cond_of)
        if complaint is not None:
            b.mark_asked(complaint)
        return b

    def posterior(self) -> np.ndarray:
        """P(condition | everything observed), over the KB's conditions."""
        return np.bincount(self.cond_of, weights=self.post, minlength=len(self.model.conditions))

    def mark_asked(self, fid: str) -> None:
        """Do not ask about `fid` again (asked, or heard in an answer)."""
        j = self.model.feature_index.get(fid)
        if j is not None and j < len(self.open):
            self.open[j] = False

    def mark_ordered(self, tid: str) -> None:
        """Do not order `tid` again."""
        j = self.model.test_index.get(tid)
        if j is not None:
            self.orderable[j] = False

    # ---- observations ---------------------------------------------------------------------

    def finding(self, fid: str, present: bool) -> None:
        """A history or exam finding affirmed or denied."""
        j = self.model.feature_index.get(fid)
        if j is None:
            return
        self.mark_asked(fid)
        col = self.lik[:, j]
        self._times(col if present else 1 - col)

    def system(self, system: str, present: Iterable[str]) -> None:
        """An examined system: the findings reported are present, the others absent."""
        self.examined.add(system)
        seen = set(present)
        for j in self.model.systems.get(system, []):
            col = self.lik[:, j]
            self._times(col if self.model.features[j] in seen else 1 - col)

    def test(self, tid: str, abnormal: bool) -> None:
        """A test result."""
        j = self.model.test_index.get(tid)
        if j is None:
            return
        self.mark_ordered(tid)
        col = self.test_lik[:, j]
        self._times(col if abnormal else 1 - col)

    def _times(self, factor: np.ndarray) -> None:
        p = self.post * factor
        s = p.sum()
        self.post = p / s if s > 0 else np.ones_like(p) / len(p)

    # ---- the policy -----------------------------------------------------------------------

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The `k` most probable conditions with their probabilities."""
        post = self.posterior()
        order = np.argsort(-post, kind="stable")[:k]
        return [(self.model.conditions[i], float(post[i])) for i in order]

    def best(self, turns_left: int | None = None) -> Choice | None:
        """The most informative next question, examination or test, or None when nothing left
        is worth `MIN_GAIN`. Tests the setting cannot order, tests that do not apply to the
        patient, and tests whose result would come back after `turns_left` are not candidates
        (a result must come back with a turn to spare for the diagnosis).

        Gains are computed once per distinct likelihood column (`_distinct`); only when that
        choice is not clear by `SURE_MARGIN` (a near tie, a gain at `MIN_GAIN`) is every column
        computed as such, so the choice is the one the per-column computation makes."""
        rows = np.flatnonzero(self.post > 1e-12)
        p = self.post[rows] / self.post[rows].sum()
        onehot = self._onehot(rows)
        h_now = _entropy((onehot @ p)[:, None])[0]
        hist = np.flatnonzero(self.open)
        ok = self.orderable
        if turns_left is not None:
            ok = ok & (self.delay < turns_left - 1)
        tests = np.flatnonzero(ok)
        fast = self._gains(p, rows, onehot, h_now, hist, tests, distinct=True)
        choice = self._clear(hist, tests, *fast)
        if choice is not _UNCLEAR:
            return choice
        exact = self._gains(p, rows, onehot, h_now, hist, tests, distinct=False)
        return self._pick(hist, tests, *exact)

    def _onehot(self, rows: np.ndarray) -> np.ndarray:
        """Conditions x the hypotheses in `rows`, 0/1: sums hypotheses into conditions (the
        gain is information about the condition)."""
        return self._rows(rows)[0]

    def _rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_onehot`, and the distinct feature columns then test columns (`_distinct`) over
        `rows`, side by side; kept while the hypotheses left stay the same (most steps)."""
        key = rows.tobytes()
        if self._kept is None or self._kept[0] != key:
            _, groups = np.unique(self.cond_of[rows], return_inverse=True)
            onehot = np.zeros((groups.max() + 1, len(rows)))
            onehot[groups, np.arange(len(rows))] = 1.0
            self._kept = (key, (onehot, self._distinct()[2][rows]))
        return self._kept[1]

    def _gains(
        self,
        p: np.ndarray,
        rows: np.ndarray,
        onehot: np.ndarray,
        h_now: float,
        hist: np.ndarray,
        tests: np.ndarray,
        *,
        distinct: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The gain of asking each of `hist`, examining each system and ordering each of
        `tests` (discounted); `distinct`: computed once per distinct column and spread."""
        m = self.model
        if distinct:
            f_of, t_of, _ = self._distinct()
            g = _gain(p, self._rows(rows)[1], onehot, h_now)
            g_hist, g_exam = g[f_of[hist]], g[f_of[m.exam_cols]]
            g_tests = (g * TEST_DISCOUNT)[t_of[tests]]
        else:
            sub = self.lik[rows]
            g_hist = _gain(p, sub[:, hist], onehot, h_now) if len(hist) else np.zeros(0)
            g_exam = _gain(p, sub[:, m.exam_cols], onehot, h_now)
            g_tests = (
                _gain(p, self.test_lik[np.ix_(rows, tests)], onehot, h_now) * TEST_DISCOUNT
                if len(tests)
                else np.zeros(0)
            )
        by_system = np.bincount(m.exam_system, weights=g_exam, minlength=len(m.system_names))
        return g_hist, by_system, g_tests

    def _pick(
        self,
        hist: np.ndarray,
        tests: np.ndarray,
        g_hist: np.ndarray,
        by_system: np.ndarray,
        g_tests: np.ndarray,
    ) -> Choice | None:
        """The greedy choice from the candidates' gains: the first best question, then a system
        only if strictly better, then a test likewise."""
        m = self.model
        best: Choice | None = None
        if len(hist):
            j = int(g_hist.argmax())
            if g_hist[j] > MIN_GAIN:
                best = Choice("ask", m.history[hist[j]], float(g_hist[j]))
        for k, system in enumerate(m.system_names):
            g2 = float(by_system[k]) * EXAM_DISCOUNT
            if system not in self.examined and g2 > MIN_GAIN and (best is None or g2 > best.gain):
                best = Choice("examine", system, g2)
        if len(tests):
            j = int(g_tests.argmax())
            if g_tests[j] > MIN_GAIN and (best is None or g_tests[j] > best.gain):
                best = Choice("order", m.tests[tests[j]], float(g_tests[j]))
        return best

    def _clear(
        self,
        hist: np.ndarray,
        tests: np.ndarray,
        g_hist: np.ndarray,
        by_system: np.ndarray,
        g_tests: np.ndarray,
    ) -> Choice | object | None:
        """`_pick`'s choice (the first best of the questions, systems and tests in that order)
        if it is clear: no other candidate and not `MIN_GAIN` within `SURE_MARGIN` of its
        gain; else `_UNCLEAR`."""
        m = self.model
        systems = [k for k, s in enumerate(m.system_names) if s not in self.examined]
        gains = np.concatenate([g_hist, by_system[systems] * EXAM_DISCOUNT, g_tests])
        if not len(gains):
            return None
        i = int(gains.argmax())
        top = float(gains[i])
        second = float(np.partition(gains, -2)[-2]) if len(gains) > 1 else -np.inf
        if not (abs(top - MIN_GAIN) > SURE_MARGIN and top - second > SURE_MARGIN):
            return None if top < MIN_GAIN - SURE_MARGIN else _UNCLEAR
        if top < MIN_GAIN:
            return None
        if i < len(hist):
            return Choice("ask", m.history[hist[i]], top)
        if i < len(hist) + len(systems):
            return Choice("examine", m.system_names[systems[i - len(hist)]], top)
        return Choice("order", m.tests[tests[i - len(hist) - len(systems)]], top)

    def _distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct columns (`_columns`) of the feature likelihoods, then of the test
        likelihoods, side by side, and where each feature's and each test's column is among
        them; built on first use."""
        if self._cols is None:
            f_rep, f_of = _columns(self.lik)
            t_rep, t_of = _columns(self.test_lik)
            both = np.hstack([self.lik[:, f_rep], self.test_lik[:, t_rep]])
            self._cols = (f_of, t_of + len(f_rep), both)
        return self._cols


_UNCLEAR = object()
"""`Belief._clear`'s answer when gains computed per distinct column cannot decide."""
SURE_MARGIN = 1e-9
"""How far apart two gains must be for the gains computed per distinct column to decide between
them; rounding differs between the two computations by less than 1e-12."""


def _columns(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A representative column of each set of columns of `table` that are equal in every row,
    and each column's index among the representatives. Columns the same in every row are
    grouped by value (most columns: findings no hypothesis here causes); the others stand
    alone."""
    n = table.shape[1]
    const = (table == table[:1]).all(axis=0)
    varied = np.flatnonzero(~const)
    flat = np.flatnonzero(const)
    _, first, which = np.unique(table[0, flat], return_index=True, return_inverse=True)
    rep = np.concatenate([varied, flat[first]])
    of = np.empty(n, dtype=np.intp)
    of[varied] = np.arange(len(varied))
    of[flat] = len(varied) + which
    return rep, of


def _gain(p: np.ndarray, lik: np.ndarray, groups: np.ndarray, h_now: float) -> np.ndarray:
    """Expected entropy reduction about the condition from binary observations (one per
    column of `lik`), under the distribution `p` over hypotheses (`lik`'s rows), which
    `groups` (conditions x hypotheses, 0/1) sums into conditions; `h_now`: the entropy of
    `groups @ p`, computed once per step by the caller."""
    yes = groups @ (p[:, None] * lik)
    no = groups @ (p[:, None] * (1 - lik))
    p_yes = yes.sum(axis=0)
    post_yes = yes / np.clip(p_yes, 1e-12, None)
    post_no = no / np.clip(1 - p_yes, 1e-12, None)
    return h_now - (p_yes * _entropy(post_yes) + (1 - p_yes) * _entropy(post_no))


def _applies(applies: object, age: int, sex: str) -> bool:
    return applies is None or applies.admits(age, sex)  # type: ignore[attr-defined]


RECORD_MEMO = 32768
"""Records whose difficulty and must-ask facts are kept, by content: a run realises each case
at play and again at finalise, and the second realisation finds them here (a few hundred bytes
a record)."""
_MEMO: OrderedDict[tuple[str, bytes], Any] = OrderedDict()


def _record_key(kb: KnowledgeBase, record: Any) -> bytes:
    """A digest of everything `difficulty` and `discriminating` read from a record: the
    opening, the condition, atypia, every finding's value and every test's result."""
    content = (
        kb.version,
        record.age,
        record.sex,
        record.setting,
        record.chief_complaint,
        record.condition_id,
        bool(getattr(record, "atypical", False)),
        sorted((f, bool(v)) for f, v in record.findings.items()),
        sorted((t, bool(out.abnormal)) for t, out in record.tests.items()),
    )
    return hashlib.blake2b(repr(content).encode(), digest_size=16).digest()


def _remembered(key: bytes, kind: str, compute: Callable[[], Any]) -> Any:
    """`compute()` for the record digested as `key`, or what it gave the last time (of
    `RECORD_MEMO`)."""
    known = _MEMO.get((kind, key))
    if known is None:
        known = _MEMO[(kind, key)] = compute()
        while len(_MEMO) > RECORD_MEMO:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end((kind, key))
    return known


def measured(kb: KnowledgeBase, record: Any) -> tuple[set[str], Difficulty]:
    """A record's must-ask concepts (`discriminating`) and its `difficulty`, remembered under
    one digest of the record (a generated case asks for both)."""
    key = _record_key(kb, record)
    return _must_ask(kb, record, key), _difficulty_of(kb, record, key)


def difficulty(kb: KnowledgeBase, record: Any) -> Difficulty:
    """A record's difficulty features: the members it could be (cluster size), the prior of
    its condition given the opening (complaint, setting, age, sex), and the observations the
    greedy information-gain policy needs, seeing the record's true answers, to put 90% on the
    true condition. Tests count as observations whatever their delay. Remembered for the last
    `RECORD_MEMO` records, so realising a case again does not walk the policy again."""
    return _difficulty_of(kb, record, _record_key(kb, record))


def _difficulty_of(kb: KnowledgeBase, record: Any, key: bytes) -> Difficulty:
    known = _remembered(key, "difficulty", lambda: _difficulty(kb, record))
    size, prior, steps, atypical, tier = known
    return Difficulty(
        cluster_size=size, prior=prior, steps_to_90=steps, atypical=atypical, tier=tier
    )


def _difficulty(kb: KnowledgeBase, record: Any) -> tuple[Any, ...]:
    """`difficulty`'s fields, computed: (cluster size, prior, steps to 90%, atypical, tier)."""
    m = model_for(kb)
    belief = Belief.start(m, record.age, record.sex, record.setting, record.chief_complaint)
    true = m.cond_index[record.condition_id]
    start = belief.posterior()
    prior = float(start[true])
    size = int((start > 1e-6).sum())
    steps: int | None = None
    for n in range(MAX_STEPS + 1):
        if belief.posterior()[true] >= STOP_AT:
            steps = n
            break
        choice = belief.best()
        if choice is None:
            break
        if choice.kind == "ask":
            belief.finding(choice.target, record.findings.get(choice.target, False))
        elif choice.kind == "examine":
            belief.system(choice.target, _examined(kb, record, choice.target))
        else:
            out = record.tests.get(choice.target)
            belief.test(choice.target, bool(out and out.abnormal))
    tier = (
        "easy"
        if steps is not None and steps <= TIERS["easy"]
        else "medium"
        if steps is not None and steps <= TIERS["medium"]
        else "hard"
    )
    return size, round(prior, 4), steps, record.atypical, tier


def _examined(kb: KnowledgeBase, record: Any, system: str) -> list[str]:
    """The exam findings a record holds present in `system`: what examining it shows."""
    return [
        f
        for f, v in record.findings.items()
        if v and kb.findings[f].category == "exam" and kb.findings[f].system == system
    ]


def record_verdict(kb: KnowledgeBase, record: Any) -> str:
    """The condition a record's whole content points to: the posterior after every history
    finding, every examination and every test the setting can do, whatever its delay. Over
    many cases, how often this is the truth is the ceiling of what the records allow, with no
    consultation's limits (turns, result delays, the patient's understanding)."""
    m = model_for(kb)
    belief = Belief.start(m, record.age, record.sex, record.setting, record.chief_complaint)
    for fid in m.history:
        j = m.feature_index[fid]
        if fid != record.chief_complaint and belief.open[j]:
            belief.finding(fid, record.findings.get(fid, False))
    for system in m.systems:
        belief.system(system, _examined(kb, record, system))
    for j in np.flatnonzero(belief.orderable):
        out = record.tests.get(m.tests[j])
        belief.test(m.tests[j], bool(out and out.abnormal))
    return belief.top(1)[0][0]


def discriminating(kb: KnowledgeBase, record: Any) -> set[str]:
    """The concepts of a record (findings and tests) whose recorded value favours its true
    condition over the other members the patient could have by `must_ask_lr` or more: the
    case's must-ask facts (remembered like `difficulty`)."""
    return _must_ask(kb, record, _record_key(kb, record))


def _must_ask(kb: KnowledgeBase, record: Any, key: bytes) -> set[str]:
    return set(_remembered(key, "must", lambda: frozenset(_discriminating(kb, record))))


def _discriminating(kb: KnowledgeBase, record: Any) -> set[str]:
    """`discriminating`, computed."""
    m = model_for(kb)
    threshold = kb.generation.must_ask_lr if kb.generation else 3.0
    age, sex, setting, cc = record.age, record.sex, record.setting, record.chief_complaint
    post, lik = m.prior(age, sex, setting, cc)  # `Belief.start(..., modes=False)`'s
    orderable, delay = m.orderable(setting, age, sex)
    true = m.cond_index[record.condition_id]
    others = post
    others[true] = 0.0
    if others.sum() <= 0:
        return set()
    others /= others.sum()
    findings = [
        (fid, j, bool(seen))
        for fid, seen in record.findings.items()
        if (j := m.feature_index.get(fid)) is not None and fid != cc
    ]
    tests = [  # must-ask is what a consultation can elicit: bedside tests, no lab
        (tid, j, bool(res.abnormal))
        for tid, res in record.tests.items()
        if (j := m.test_index.get(tid)) is not None and tid != cc and orderable[j] and delay[j] == 0
    ]
    out: set[str] = set()
    if findings:
        rows = _columns_of(m, lik, [j for _, j, _ in findings], age)
        out.update(_favouring(rows, findings, others, true, threshold))
    if tests:
        rows = m.test_lik.T[[j for _, j, _ in tests]]
        out.update(_favouring(rows, tests, others, true, threshold))
    return out


def _columns_of(m: KBModel, lik: np.ndarray, cols: list[int], age: int) -> np.ndarray:
    """Columns `cols` of the finding likelihoods a belief starts from (`lik`, with background
    findings at their population rate where the condition does not cause them), as rows."""
    rows = lik.T[cols]
    bg = m.background_rates(age_band(age))
    for k, j in enumerate(cols):
        if j in bg:
            rows[k] = np.where(m.linked[:, j], rows[k], bg[j])
    return rows


def _favouring(
    rows: np.ndarray,
    observed: list[tuple[str, int, bool]],
    others: np.ndarray,
    true: int,
    threshold: float,
) -> list[str]:
    """The observed concepts (concept, column, seen) whose value is at least `threshold` times
    likelier under the true condition than under the others (`others`' weights); `rows`: each
    concept's likelihoods, each row summed along itself as the single column would be."""
    concepts, _, seen = zip(*observed, strict=True)
    rows = np.where(np.array(seen)[:, None], rows, 1 - rows)
    hit = rows[:, true] >= threshold * (others * rows).sum(axis=1)
    return [c for c, h in zip(concepts, hit.tolist(), strict=True) if h]


def look_alikes(kb: KnowledgeBase, record: Any) -> list[str]:
    """The other conditions this patient could have had, given the opening, likeliest first:
    a generated case's differential."""
    m = model_for(kb)
    post, _ = m.prior(record.age, record.sex, record.setting, record.chief_complaint)
    order = np.argsort(-post, kind="stable")
    return [
        m.conditions[i] for i in order if post[i] > 0 and m.conditions[i] != record.condition_id
    ]
