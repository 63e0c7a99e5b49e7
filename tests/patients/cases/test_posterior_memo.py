"""What realising a case twice reuses (issue 22): a record's difficulty and must-ask facts are
remembered by content, an opening's prior and a patient's askable/orderable masks are kept;
none of it may change what is computed or leak one belief's state into another."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from clinicgym.patients.cases import posterior
from clinicgym.patients.cases.posterior import Belief, difficulty, discriminating, model_for
from clinicgym.patients.cases.presentation import PresentationSampler
from clinicgym.patients.knowledge.kb import default_kb


def _records(n: int) -> list:
    sampler = PresentationSampler(default_kb())
    return [sampler.sample_record(np.random.default_rng([5, i])) for i in range(n)]


def test_remembered_difficulty_and_must_ask_equal_a_fresh_computation() -> None:
    """Asked again, the memo answers; its answers are what a fresh walk gives, and a changed
    record is not answered from its original's entry."""
    kb = default_kb()
    for r in _records(6):
        first = difficulty(kb, r)
        again = difficulty(kb, r)
        assert again == first and again is not first
        assert first.model_dump() == dict(
            zip(
                ("cluster_size", "prior", "steps_to_90", "atypical", "tier"),
                posterior._difficulty(kb, r),
                strict=True,
            )
        )
        assert discriminating(kb, r) == posterior._discriminating(kb, r)
        flipped = r.model_copy(
            update={"findings": {f: not v for f, v in r.findings.items()}, "tests": {}}
        )
        fresh = posterior._difficulty(kb, flipped)
        assert difficulty(kb, flipped).model_dump()["steps_to_90"] == fresh[2]
        assert discriminating(kb, flipped) == posterior._discriminating(kb, flipped)


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat in the number of cases: at most `RECORD_MEMO` records are kept."""
    monkeypatch.setattr(posterior, "RECORD_MEMO", 3)
    monkeypatch.setattr(posterior, "_MEMO", OrderedDict())
    kb = default_kb()
    for r in _records(5):
        difficulty(kb, r)
        assert len(posterior._MEMO) <= 3
    assert len(posterior._MEMO) == 3


def test_kept_priors_and_masks_are_not_shared_state() -> None:
    """A caller changing its prior, or a belief marking a question asked or a test ordered,
    does not change what the next caller or belief starts from."""
    kb = default_kb()
    m = model_for(kb)
    r = _records(1)[0]
    p, _ = m.prior(r.age, r.sex, r.setting, r.chief_complaint)
    p[:] = 0.0
    assert m.prior(r.age, r.sex, r.setting, r.chief_complaint)[0].sum() == pytest.approx(1.0)
    a = Belief.start(m, r.age, r.sex, r.setting, r.chief_complaint)
    b = Belief.start(m, r.age, r.sex, r.setting, r.chief_complaint)
    j = int(np.flatnonzero(a.open)[0])
    t = int(np.flatnonzero(a.orderable)[0])
    a.mark_asked(m.history[j])
    a.mark_ordered(m.tests[t])
    assert b.open[j] and b.orderable[t]
    assert not m.askable(r.age, r.sex).flags.writeable
