"""Test stewardship: which tests were ordered, whether they were needed, and what they cost.

A test is *necessary* when the case's KB condition lists it among its tests (its result carries
diagnostic weight for the condition) or its result came back abnormal; every other test is
unnecessary. Cost is the KB's indicative cost in US dollars (`LabTest.cost`), counted for every
order the chart could resolve, repeats included. Genetic testing and tests the chart did not
know are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinicgym.envs.action import OrderTest
from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase


@dataclass(frozen=True)
class TestOrder:
    """One resolved test order."""

    __test__ = False  # not a pytest test class

    turn: int
    test: str
    necessary: bool
    cost: float


def orders(episode: Episode, case: Case, kb: KnowledgeBase) -> list[TestOrder]:
    """Every test order the chart resolved to a KB test, in order."""
    cond = kb.conditions.get(case.diagnosis.condition_id or "")
    linked = {t.id for t in cond.tests} if cond else set()
    abnormal = {f.concept for f in case.facts if f.how_revealed == "order" and f.abnormal}
    ordered_turns = {
        e.turn for e in episode.events if e.actor == "clinician" and isinstance(e.action, OrderTest)
    }
    out = []
    for e in episode.events:
        if e.actor != "env" or e.turn not in ordered_turns or not e.result.get("ok"):
            continue
        tid = e.result.get("target")
        test = kb.tests.get(str(tid))
        if test is None:
            continue
        out.append(TestOrder(e.turn, test.id, test.id in linked or test.id in abnormal, test.cost))
    return out


def stewardship(episode: Episode, case: Case, kb: KnowledgeBase) -> dict[str, float | None]:
    """tests_ordered, unnecessary_test_share (None without tests) and test_cost_usd."""
    got = orders(episode, case, kb)
    return {
        "tests_ordered": float(len(got)),
        "unnecessary_test_share": (sum(not o.necessary for o in got) / len(got) if got else None),
        "test_cost_usd": float(sum(o.cost for o in got)),
    }
