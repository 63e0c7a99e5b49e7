"""The generator's model of a case, inverted: P(condition | what has been observed so far).

Presentation-first generation (patients/presentation.py) draws a presentation and a setting, a
member condition by prevalence for the patient's age and sex, then each finding and test result
independently given the condition (with atypical presentations and distractors at the rates in
`generation.yaml`). This module holds exactly that model as likelihood tables, so the KB-aware
baselines (`scripted`, `opening`) reason with the generator's own probabilities and the case's
difficulty ("how much must be observed to reach a 90% posterior") is measured with them too.

`Belief` is one episode's posterior; `Belief.best` is the greedy information-gain policy that
both the scripted agent and the difficulty measure follow, so there is one policy, not two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np

from clinicgym.patients.case import Difficulty
from clinicgym.patients.kb import AGE_BANDS, KnowledgeBase, Presentation, age_band

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


class KBModel:
    """Likelihood tables over the whole KB, built once per KB and shared by every belief."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        gen = kb.generation
        self.atypical = (gen.atypical_share, gen.atypical_factor) if gen else (0.0, 1.0)
        self.distractor = gen.distractor_p if gen else FALLBACK_LEAK
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
        c_n, f_n = len(self.conditions), len(self.features)
        self.linked = np.zeros((c_n, f_n), dtype=bool)
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
                self.lik[ci, j] = min(max(link.p * (1 - a + a * k), FALLBACK_LEAK), 0.999)
            for t in cond.tests:
                self.test_lik[ci, self.test_index[t.id]] = min(max(t.p, FALLBACK_LEAK), 0.999)
        self.systems: dict[str, list[int]] = {}
        for fid in self.exam:
            system = kb.findings[fid].system
            if system is not None:
                self.systems.setdefault(system, []).append(self.feature_index[fid])

    # ---- priors ---------------------------------------------------------------------------

    def prior(
        self, age: int, sex: str, setting: str | None = None, complaint: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(condition | age, sex, setting, complaint) and the likelihood table that goes with
        it. Presentation-first cases: a mixture over the presentations with this complaint and
        setting, exactly as the generator draws them. Otherwise: every condition equally likely,
        then demographics from its prevalence table (the balanced KB sampler)."""
        pres = self._presentations(complaint, setting, age)
        if not pres:
            return self._balanced_prior(age, sex), self.lik
        n_pres = len(self.kb.presentations)
        p = np.zeros(len(self.conditions))
        lik = None
        for pr, s in pres:
            weights = member_weights(self.kb, pr, s)
            total = sum(weights.values())
            n_settings = len(pr.settings)
            for cid, w in weights.items():
                c = self.kb.conditions[cid]
                p[self.cond_index[cid]] += (
                    (1 / n_pres)
                    * (1 / n_settings)
                    * (w / total)
                    * p_age(c.prevalence.age_bands, c.age, pr.age, age)
                    * p_sex(c.sex, c.prevalence.sex, sex)
                )
            lik = self.cluster_lik(pr.id, s) if lik is None else lik
        if p.sum() == 0:
            return self._balanced_prior(age, sex), self.lik
        assert lik is not None
        return p / p.sum(), lik

    def _presentations(
        self, complaint: str | None, setting: str | None, age: int
    ) -> list[tuple[Presentation, str]]:
        if complaint is None or setting is None:
            return []
        return [
            (p, setting)
            for p in self.kb.presentations.values()
            if p.complaint == complaint and setting in p.settings and p.age[0] <= age <= p.age[1]
        ]

    def _balanced_prior(self, age: int, sex: str) -> np.ndarray:
        p = np.zeros(len(self.conditions))
        for i, cid in enumerate(self.conditions):
            c = self.kb.conditions[cid]
            p[i] = p_age(c.prevalence.age_bands, c.age, (0, 95), age) * p_sex(
                c.sex, c.prevalence.sex, sex
            )
        if p.sum() == 0:
            p[:] = 1.0
        return p / p.sum()

    def cluster_lik(self, presentation: str, setting: str) -> np.ndarray:
        """The likelihood table for cases of one presentation and setting: a finding that any
        member (or a member's differential) causes is a distractor, present at `distractor_p`,
        in members that do not cause it."""
        return _cluster_lik(self, presentation, setting)

    def opening_safe(self, presentation: str, setting: str) -> frozenset[str]:
        """History findings a patient may volunteer in the opening: their likelihood differs by
        at most `opening_lr` across the members, so they cannot point at one member."""
        return _opening_safe(self, presentation, setting)

    def member_rows(self, presentation: str, setting: str) -> list[int]:
        """Row indices of the members seen with this presentation in this setting."""
        pres = self.kb.presentations[presentation]
        return [self.cond_index[m.condition] for m in pres.members_in(setting)]


def member_weights(kb: KnowledgeBase, pres: Presentation, setting: str) -> dict[str, float]:
    """Member condition id -> its weight in `setting` (members that cannot be seen there are
    left out)."""
    return {m.condition: m.weight for m in pres.members_in(setting) if m.condition in kb.conditions}


def p_age(
    bands: dict[str, float], cond_age: tuple[int, int], pres_age: tuple[int, int], age: int
) -> float:
    """P(age | condition) when the band is drawn by prevalence (bands inside both ranges) and
    the age uniformly within the band, the condition's and the presentation's age ranges."""
    lo_all, hi_all = max(cond_age[0], pres_age[0]), min(cond_age[1], pres_age[1])
    if not lo_all <= age <= hi_all:
        return 0.0
    usable = {
        b: w
        for b, w in bands.items()
        if w > 0 and AGE_BANDS[b][0] <= hi_all and AGE_BANDS[b][1] >= lo_all
    }
    band = age_band(age)
    if band not in usable:
        return 0.0
    lo, hi = max(AGE_BANDS[band][0], lo_all), min(AGE_BANDS[band][1], hi_all)
    return usable[band] / sum(usable.values()) / (hi - lo + 1)


def p_sex(cond_sex: str, weights: dict[str, float], sex: str) -> float:
    """P(sex | condition) under the condition's prevalence table."""
    if cond_sex != "any":
        return 1.0 if cond_sex == sex else 0.0
    total = weights.get("female", 0.0) + weights.get("male", 0.0)
    return weights.get(sex, 0.0) / total if total else 0.5


@cache
def _models() -> dict[str, KBModel]:
    return {}


def model_for(kb: KnowledgeBase) -> KBModel:
    """The tables for `kb`, built once per KB version."""
    cache_ = _models()
    m = cache_.get(kb.version)
    if m is None:
        m = cache_[kb.version] = KBModel(kb)
    return m


_CLUSTER_CACHE: dict[tuple[str, str, str], np.ndarray] = {}
_SAFE_CACHE: dict[tuple[str, str, str], frozenset[str]] = {}


def distractor_ids(kb: KnowledgeBase, pres: Presentation, setting: str) -> list[str]:
    """Findings a case of this presentation may show by chance: every finding a member or a
    member's differential causes (the look-alikes' findings, which a clinician asks about)."""
    out: dict[str, None] = {}
    for m in pres.members_in(setting):
        c = kb.conditions.get(m.condition)
        if c is None:
            continue
        for cid in (c.id, *c.differential):
            for link in kb.conditions[cid].findings:
                if link.id != pres.complaint:
                    out[link.id] = None
    return list(out)


def _cluster_lik(m: KBModel, presentation: str, setting: str) -> np.ndarray:
    key = (m.kb.version, presentation, setting)
    lik = _CLUSTER_CACHE.get(key)
    if lik is None:
        pres = m.kb.presentations[presentation]
        lik = np.where(m.linked, m.lik, LEAK)
        cols = [m.feature_index[f] for f in distractor_ids(m.kb, pres, setting)]
        sub = lik[:, cols]
        lik[:, cols] = np.where(m.linked[:, cols], sub, m.distractor)
        # the complaint is present in every case of the presentation: it tells nothing
        lik[:, m.feature_index[pres.complaint]] = 0.999
        _CLUSTER_CACHE[key] = lik
    return lik


def _opening_safe(m: KBModel, presentation: str, setting: str) -> frozenset[str]:
    key = (m.kb.version, presentation, setting)
    safe = _SAFE_CACHE.get(key)
    if safe is None:
        lik = _cluster_lik(m, presentation, setting)
        rows = m.member_rows(presentation, setting)
        cols = range(len(m.history))
        sub = lik[np.ix_(rows, list(cols))]
        ratio = sub.max(axis=0) / np.clip(sub.min(axis=0), 1e-9, None)
        safe = frozenset(m.history[j] for j in cols if ratio[j] <= m.opening_lr)
        _SAFE_CACHE[key] = safe
    return safe


@dataclass
class Belief:
    """One episode's posterior over the KB's conditions, and what has been observed."""

    model: KBModel
    post: np.ndarray
    lik: np.ndarray
    age: int
    sex: str
    setting: str | None
    asked: set[str] = field(default_factory=set)
    examined: set[str] = field(default_factory=set)
    ordered: set[str] = field(default_factory=set)

    @classmethod
    def start(
        cls,
        model: KBModel,
        age: int,
        sex: str,
        setting: str | None = None,
        complaint: str | None = None,
    ) -> Belief:
        """The prior for a patient, before anything but the opening complaint is known."""
        post, lik = model.prior(age, sex, setting, complaint)
        band = age_band(age)
        bg = model.kb.background.findings
        if bg:  # background findings occur at their population rate whatever the condition
            lik = lik.copy()
            for f in bg:
                j = model.feature_index[f.id]
                lik[:, j] = np.where(model.linked[:, j], lik[:, j], f.p.get(band, 0.0))
        b = cls(model, post, lik, age, sex, setting)
        if complaint is not None:
            b.asked.add(complaint)
        return b

    # ---- observations ---------------------------------------------------------------------

    def finding(self, fid: str, present: bool) -> None:
        """A history or exam finding affirmed or denied."""
        j = self.model.feature_index.get(fid)
        if j is None:
            return
        self.asked.add(fid)
        col = self.lik[:, j]
        self._times(col if present else 1 - col)

    def system(self, system: str, present: Iterable[str]) -> None:
        """An examined system: the findings reported are present, the others absent."""
        self.examined.add(system)
        seen = set(present)
        for j in self.model.systems.get(system, []):
            fid = self.model.features[j]
            self.asked.add(fid)
            col = self.lik[:, j]
            self._times(col if fid in seen else 1 - col)

    def test(self, tid: str, abnormal: bool) -> None:
        """A test result."""
        j = self.model.test_index.get(tid)
        if j is None:
            return
        self.ordered.add(tid)
        col = self.model.test_lik[:, j]
        self._times(col if abnormal else 1 - col)

    def _times(self, factor: np.ndarray) -> None:
        p = self.post * factor
        s = p.sum()
        self.post = p / s if s > 0 else np.ones_like(p) / len(p)

    # ---- the policy -----------------------------------------------------------------------

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The `k` most probable conditions with their probabilities."""
        order = np.argsort(-self.post, kind="stable")[:k]
        return [(self.model.conditions[i], float(self.post[i])) for i in order]

    def best(self, turns_left: int | None = None, pending: Iterable[str] = ()) -> Choice | None:
        """The most informative next question, examination or test, or None when nothing left
        is worth `MIN_GAIN`. Tests the setting cannot order, tests that do not apply to the
        patient, and tests whose result would come back after `turns_left` are not candidates."""
        m, kb = self.model, self.model.kb
        live = self.post > 1e-9
        post_rows = np.flatnonzero(live)
        best: Choice | None = None
        hist = [
            j
            for j, f in enumerate(m.history)
            if f not in self.asked and _applies(kb.findings[f].applies, self.age, self.sex)
        ]
        if hist:
            g = self._gain_rows(self.lik[np.ix_(post_rows, hist)], live)
            j = int(g.argmax())
            if g[j] > MIN_GAIN:
                best = Choice("ask", m.history[hist[j]], float(g[j]))
        for system, cols in m.systems.items():
            if system in self.examined:
                continue
            g2 = float(self._gain_rows(self.lik[np.ix_(post_rows, cols)], live).sum())
            g2 *= EXAM_DISCOUNT
            if g2 > MIN_GAIN and (best is None or g2 > best.gain):
                best = Choice("examine", system, g2)
        pending = set(pending)
        tests = [
            j
            for j, t in enumerate(m.tests)
            if t not in self.ordered and t not in pending and self._orderable(t, turns_left)
        ]
        if tests:
            g = self._gain_rows(m.test_lik[np.ix_(post_rows, tests)], live) * TEST_DISCOUNT
            j = int(g.argmax())
            if g[j] > MIN_GAIN and (best is None or g[j] > best.gain):
                best = Choice("order", m.tests[tests[j]], float(g[j]))
        return best

    def _gain_rows(self, lik: np.ndarray, live: np.ndarray) -> np.ndarray:
        p = self.post[live][:, None]
        p = p / p.sum()
        p_yes = (p * lik).sum(axis=0)
        post_yes = p * lik / np.clip(p_yes, 1e-12, None)
        post_no = p * (1 - lik) / np.clip(1 - p_yes, 1e-12, None)
        h_now = _entropy(p)[0]
        return h_now - (p_yes * _entropy(post_yes) + (1 - p_yes) * _entropy(post_no))

    def _orderable(self, tid: str, turns_left: int | None) -> bool:
        t = self.model.kb.tests[tid]
        if self.setting is not None and self.setting not in t.settings:
            return False
        if not _applies(t.applies, self.age, self.sex):
            return False
        delay = t.delay.get(self.setting, 0) if self.setting else 0  # type: ignore[call-overload]
        # the result must come back with a turn to spare for the diagnosis
        return turns_left is None or delay < turns_left - 1


def _applies(applies: object, age: int, sex: str) -> bool:
    return applies is None or applies.admits(age, sex)  # type: ignore[attr-defined]


def difficulty(kb: KnowledgeBase, record: Any) -> Difficulty:
    """A record's difficulty features: the members it could be (cluster size), the prior of
    its condition given the opening (complaint, setting, age, sex), and the observations the
    greedy information-gain policy needs, seeing the record's true answers, to put 90% on the
    true condition. Tests count as observations whatever their delay."""
    m = model_for(kb)
    belief = Belief.start(m, record.age, record.sex, record.setting, record.chief_complaint)
    true = m.cond_index[record.condition_id]
    prior = float(belief.post[true])
    size = int((belief.post > 1e-6).sum())
    steps: int | None = None
    for n in range(MAX_STEPS + 1):
        if belief.post[true] >= STOP_AT:
            steps = n
            break
        choice = belief.best()
        if choice is None:
            break
        if choice.kind == "ask":
            belief.finding(choice.target, record.findings.get(choice.target, False))
        elif choice.kind == "examine":
            present = [
                f
                for f, v in record.findings.items()
                if v
                and kb.findings[f].category == "exam"
                and kb.findings[f].system == choice.target
            ]
            belief.system(choice.target, present)
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
    return Difficulty(
        cluster_size=size,
        prior=round(prior, 4),
        steps_to_90=steps,
        atypical=record.atypical,
        tier=tier,  # type: ignore[arg-type]
    )
