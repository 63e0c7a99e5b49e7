"""The scripted baseline: systematic history taking with Bayesian updating over the KB.

It keeps a posterior over the KB's conditions, starting from what the balanced case sampler
implies for the patient's age and sex, and updates it with every answer: P(finding | condition)
is the KB's likelihood for linked findings, a small leak otherwise. Each turn it takes the
question, examination or test with the largest expected information gain, and diagnoses the top
three once one condition passes 90% or the turns run out. It refers first when the leading
condition needs escalation. It reads only what the env shows (the structured mirror of each
reply in `info["result"]`), never the case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, RankedDiagnosis, Refer
from clinicgym.patients.kb import AGE_BANDS, KnowledgeBase, age_band

LEAK = 0.01
"""P(finding present | condition that does not list it)."""
STOP_AT = 0.9
EXAM_DISCOUNT = 0.9
TEST_DISCOUNT = 0.8
MIN_GAIN = 0.005


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1.0)
    return -(q * np.log(q)).sum(axis=0)


class _Model:
    """Likelihood tables over the KB, built once per KB and shared by all scripted agents."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.conditions = sorted(kb.conditions)
        self.history = sorted(f.id for f in kb.findings.values() if f.category != "exam")
        self.exam = sorted(f.id for f in kb.findings.values() if f.category == "exam")
        self.tests = sorted(kb.tests)
        self.feature_index = {f: i for i, f in enumerate(self.history + self.exam)}
        self.test_index = {t: i for i, t in enumerate(self.tests)}
        bg = {b.id: b.p for b in kb.background.findings}
        c_n, f_n = len(self.conditions), len(self.feature_index)
        self.lik = np.full((c_n, f_n), LEAK)
        self.test_lik = np.full((c_n, len(self.tests)), LEAK)
        self.bg = bg
        for ci, cid in enumerate(self.conditions):
            cond = kb.conditions[cid]
            for link in cond.findings:
                self.lik[ci, self.feature_index[link.id]] = min(max(link.p, LEAK), 1 - LEAK)
            for t in cond.tests:
                self.test_lik[ci, self.test_index[t.id]] = min(max(t.p, LEAK), 1 - LEAK)
        self.systems: dict[str, list[int]] = {}
        for fid in self.exam:
            system = kb.findings[fid].system
            assert system is not None
            self.systems.setdefault(system, []).append(self.feature_index[fid])

    def prior(self, age: int, sex: str) -> np.ndarray:
        """P(condition | age, sex) under the balanced sampler: uniform over conditions, then
        demographics from each condition's prevalence table."""
        band = age_band(age)
        p = np.zeros(len(self.conditions))
        for i, cid in enumerate(self.conditions):
            c = self.kb.conditions[cid]
            if not (c.age[0] <= age <= c.age[1]) or c.sex not in ("any", sex):
                continue
            w = c.prevalence.age_bands
            lo, hi = max(AGE_BANDS[band][0], c.age[0]), min(AGE_BANDS[band][1], c.age[1])
            p_band = w.get(band, 0.0) / sum(w.values()) / max(hi - lo + 1, 1)
            if c.sex == "any":
                sw = c.prevalence.sex
                p_sex = sw.get(sex, 0.0) / (sw.get("female", 0.0) + sw.get("male", 0.0))
            else:
                p_sex = 1.0
            p[i] = p_band * p_sex
        if p.sum() == 0:
            p[:] = 1.0
        return p / p.sum()


_MODELS: dict[str, _Model] = {}


def _model_for(kb: KnowledgeBase) -> _Model:
    m = _MODELS.get(kb.version)
    if m is None:
        m = _MODELS[kb.version] = _Model(kb)
    return m


class ScriptedAgent:
    """Bayesian history taker over the KB; deterministic."""

    def __init__(self, kb: KnowledgeBase, agent_id: str = "scripted") -> None:
        self.agent_id = agent_id
        self.kb = kb
        self.m = _model_for(kb)
        self.post = np.ones(len(self.m.conditions)) / len(self.m.conditions)
        self.asked: set[str] = set()
        self.examined: set[str] = set()
        self.ordered: set[str] = set()
        self.referred = False

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        patient = info.get("patient", {})
        self.post = self.m.prior(int(patient.get("age", 40)), str(patient.get("sex", "female")))
        self.asked, self.examined, self.ordered = set(), set(), set()
        self.referred = False
        self._update(info.get("result", {}))

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        if info.get("turn", 0) > 0:
            self._update(info.get("result", {}))
        turns_left = int(observation.get("turns_left", 1))
        top = int(self.post.argmax())
        lead = self.m.conditions[top]
        if not self.referred and self.post[top] >= 0.5 and self.kb.conditions[lead].escalation:
            self.referred = True
            esc = self.kb.conditions[lead].escalation
            assert esc is not None
            return Refer(to=esc.to, urgency="emergency" if esc.level == "emergency" else "urgent")
        if self.post[top] >= STOP_AT or turns_left <= 1:
            return self._diagnose()
        choice = self._best_action()
        return choice if choice is not None else self._diagnose()

    # ---- inference ----------------------------------------------------------------------

    def _update(self, result: dict[str, Any]) -> None:
        for ans in result.get("answers", []) or []:
            concept, status = ans.get("concept"), ans.get("status")
            if concept in self.m.feature_index and status in ("affirmed", "denied"):
                col = self.m.lik[:, self.m.feature_index[concept]]
                self.asked.add(concept)
                if concept in self.m.bg and col.max() <= LEAK:
                    continue  # background-only finding: says nothing about the condition
                self.post = self.post * (col if status == "affirmed" else 1 - col)
            elif concept in self.m.test_index and status in ("abnormal", "normal"):
                col = self.m.test_lik[:, self.m.test_index[concept]]
                self.ordered.add(concept)
                self.post = self.post * (col if status == "abnormal" else 1 - col)
        target = result.get("target")
        if target and target in self.m.systems and result.get("ok", True):
            self.examined.add(target)
            seen = {a["concept"] for a in result.get("answers", [])}
            for idx in self.m.systems[target]:
                fid = (self.m.history + self.m.exam)[idx]
                if fid not in seen:  # a normal exam: the finding is absent
                    self.post = self.post * (1 - self.m.lik[:, idx])
        s = self.post.sum()
        self.post = self.post / s if s > 0 else np.ones_like(self.post) / len(self.post)

    def _gain(self, lik: np.ndarray) -> np.ndarray:
        """Expected entropy reduction of binary observations, one per column of `lik`."""
        p = self.post[:, None]
        p_yes = (p * lik).sum(axis=0)
        post_yes = p * lik / np.clip(p_yes, 1e-12, None)
        post_no = p * (1 - lik) / np.clip(1 - p_yes, 1e-12, None)
        h_now = _entropy(self.post[:, None])[0]
        return h_now - (p_yes * _entropy(post_yes) + (1 - p_yes) * _entropy(post_no))

    def _best_action(self) -> Any:
        m = self.m
        best: tuple[float, Any] = (MIN_GAIN, None)
        best_fid = None
        hist = [i for i, f in enumerate(m.history) if f not in self.asked]
        if hist:
            g = self._gain(m.lik[:, hist])
            j = int(g.argmax())
            if g[j] > best[0]:
                fid = m.history[hist[j]]
                best = (float(g[j]), Ask(question=self.kb.findings[fid].question or fid))
                best_fid = fid
        for system, cols in m.systems.items():
            if system in self.examined:
                continue
            g = float(self._gain(m.lik[:, cols]).sum()) * EXAM_DISCOUNT
            if g > best[0]:
                best = (g, Examine(system=system))
        tests = [i for i, t in enumerate(m.tests) if t not in self.ordered]
        if tests:
            g = self._gain(m.test_lik[:, tests]) * TEST_DISCOUNT
            j = int(g.argmax())
            if g[j] > best[0]:
                best = (float(g[j]), OrderTest(test=self.kb.tests[m.tests[tests[j]]].name))
        if isinstance(best[1], Ask) and best_fid is not None:
            self.asked.add(best_fid)  # even if the patient hears another concept, move on
        elif isinstance(best[1], Examine):
            self.examined.add(best[1].system)
        elif isinstance(best[1], OrderTest):
            self.ordered.add(m.tests[tests[int(np.argmax(self._gain(m.test_lik[:, tests])))]])
        return best[1]

    def _diagnose(self) -> Diagnose:
        order = np.argsort(-self.post, kind="stable")[:3]
        return Diagnose(
            diagnoses=[
                RankedDiagnosis(
                    name=self.kb.conditions[self.m.conditions[i]].name,
                    confidence=round(float(self.post[i]), 3),
                )
                for i in order
            ]
        )
